//! All live sessions: finding one by id, making one, and which one makes room when a guest
//! or the jukebox holds its most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::encoder::{self, Lanes};
use super::handle::Session;
use super::hello::HelloLimiter;
use super::limits::SessionLimits;
use super::task::{Bound, Lane, Listed, Task};
use super::ServerInfo;
use crate::hub::{Hub, Role};
use crate::party::GuestId;
use crate::protocol::Topic;

/// Why no session could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Every session of this guest has a socket attached.
    Guest,
    /// The jukebox holds its most sessions and every one has a socket attached.
    Total,
}

/// The id of session `key` in the run `epoch`: `s_<epoch>_<16 hex digits>`. The epoch is
/// part of the id, so a resume after a restart can say why it failed.
fn session_id(epoch: &str, key: u64) -> String {
    format!("s_{epoch}_{key:016x}")
}

/// The key of a session id of the run `epoch`; `None` for any other text.
fn session_key(epoch: &str, id: &str) -> Option<u64> {
    let hex = id
        .strip_prefix("s_")?
        .strip_prefix(epoch)?
        .strip_prefix('_')?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The sessions, by the random part of their id, and how many each guest has (always the
/// count of `by_id`'s sessions of that guest; only `insert` and `remove` change either).
#[derive(Default)]
struct Registry {
    by_id: HashMap<u64, Arc<Session>>,
    per_guest: HashMap<GuestId, u32>,
}

impl Registry {
    fn insert(&mut self, key: u64, s: Arc<Session>) {
        *self.per_guest.entry(s.guest).or_insert(0) += 1;
        self.by_id.insert(key, s);
    }

    fn remove(&mut self, key: u64) -> Option<Arc<Session>> {
        let s = self.by_id.remove(&key)?;
        if let Some(n) = self.per_guest.get_mut(&s.guest) {
            *n -= 1;
            if *n == 0 {
                self.per_guest.remove(&s.guest);
            }
        }
        Some(s)
    }

    fn of_guest(&self, guest: GuestId) -> usize {
        self.per_guest.get(&guest).copied().unwrap_or(0) as usize
    }

    /// A key no session has.
    fn free_key(&self) -> u64 {
        loop {
            let key = rand::random::<u64>();
            if !self.by_id.contains_key(&key) {
                return key;
            }
        }
    }

    /// The key of the session that left first, of `guest` or of anyone.
    fn oldest_detached(&self, guest: Option<GuestId>) -> Option<u64> {
        self.by_id
            .iter()
            .filter(|(_, s)| guest.is_none_or(|g| s.guest == g))
            .filter_map(|(key, s)| Some((s.detached.since()?, *key)))
            .min_by_key(|(at, _)| *at)
            .map(|(_, key)| key)
    }
}

/// All live sessions.
pub struct Sessions {
    map: Mutex<Registry>,
    /// The encoder's output: every hub change, encoded once, by who may see it.
    lanes: Arc<Lanes>,
    /// What every welcome says about this server.
    pub info: Arc<ServerInfo>,
    /// Shared by every session task (one pointer each).
    pub limits: Arc<SessionLimits>,
    hub: Hub,
    hellos: HelloLimiter,
}

impl Sessions {
    /// Starts the encoder that turns hub changes into shared wire messages.
    pub fn start(hub: Hub, info: ServerInfo, limits: SessionLimits) -> Arc<Sessions> {
        let lanes = Arc::new(Lanes::new(&hub));
        let sessions = Arc::new(Sessions {
            map: Mutex::new(Registry::default()),
            lanes: lanes.clone(),
            info: Arc::new(info),
            hellos: HelloLimiter::new(limits.hello_rate),
            limits: Arc::new(limits),
            hub: hub.clone(),
        });
        encoder::spawn(hub, lanes);
        sessions
    }

    /// Waits until every change up to the hub seq `seq` is in its sessions' lanes: a reply
    /// to a request that made changes is handed to its session only then (the session
    /// drains its lanes before it sends the reply, so the reply comes after them).
    pub async fn handed_on(&self, seq: u64) {
        self.lanes.handed_on(seq).await;
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a hello of `guest`: `Err(ms)` when it comes too soon after too many others.
    pub fn hello_allowed(&self, guest: GuestId) -> Result<(), u64> {
        self.hellos.check(guest)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let key = session_key(&self.info.epoch, id)?;
        self.registry().by_id.get(&key).cloned()
    }

    /// The session `id` of `guest`, marked as attaching so that no new session evicts it
    /// while its socket is on the way.
    pub fn claim(&self, id: &str, guest: GuestId) -> Option<Arc<Session>> {
        let key = session_key(&self.info.epoch, id)?;
        let reg = self.registry();
        let s = reg.by_id.get(&key).filter(|s| s.guest == guest)?;
        s.detached.set(None);
        Some(s.clone())
    }

    pub fn len(&self) -> usize {
        self.registry().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a session for `guest` subscribed to `topics`, marked as attaching, for the
    /// caller's socket to drive ([`Bound::start`]). When the guest, or the jukebox, already
    /// holds its most sessions, the oldest detached one (of the guest, then of anyone) makes
    /// room; when every one has a socket, none is made.
    pub fn create(
        self: &Arc<Self>,
        guest: GuestId,
        role: Role,
        topics: Vec<Topic>,
    ) -> Result<Bound, Full> {
        let mut reg = self.registry();
        let key = reg.free_key();
        let session = Arc::new(Session::new(session_id(&self.info.epoch, key), guest, role));
        let mut evicted = Vec::new();
        if reg.of_guest(guest) >= self.limits.per_guest.max(1) {
            let old = reg.oldest_detached(Some(guest)).ok_or(Full::Guest)?;
            evicted.extend(reg.remove(old));
        }
        if reg.by_id.len() >= self.limits.max.max(1) {
            let old = reg.oldest_detached(None).ok_or(Full::Total)?;
            evicted.extend(reg.remove(old));
        }
        reg.insert(key, session.clone());
        drop(reg);
        for old in evicted {
            tracing::debug!("session {} makes room for a new one", old.id);
            // It ends (and kicks a socket that raced to attach).
            old.tx.close();
        }
        let lane = Lane {
            shared: self.lanes.shared.subscribe(),
            hosts: (role == Role::Host).then(|| self.lanes.hosts.subscribe()),
        };
        Ok(Bound::new(Box::new(Task::new(
            session,
            topics.into_iter().collect(),
            self.hub.clone(),
            self.info.clone(),
            self.limits.clone(),
            self.lanes.clone(),
            lane,
            Listed {
                registry: Arc::downgrade(self),
                key,
            },
        ))))
    }

    /// Forgets the session `key` once it has ended, unless it was evicted and its key is
    /// already another's.
    pub(super) fn forget(&self, key: u64, session: &Arc<Session>) {
        let mut reg = self.registry();
        if reg.by_id.get(&key).is_some_and(|s| Arc::ptr_eq(s, session)) {
            reg.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_session_id_names_its_run() {
        let id = session_id("e1", 0xabc);
        assert_eq!(id, "s_e1_0000000000000abc");
        assert_eq!(session_key("e1", &id), Some(0xabc));
        assert_eq!(session_key("e2", &id), None, "another run's session");
        assert_eq!(session_key("e1", "s_e1_abc"), None, "too short");
        assert_eq!(session_key("e1", "s_e1_000000000000zzzz"), None);
        assert_eq!(session_key("e1", "x_e1_0000000000000abc"), None);
    }

    #[test]
    fn the_oldest_detached_session_makes_room_and_counts_stay_true() {
        let mut reg = Registry::default();
        let (a, b) = (GuestId::from(1), GuestId::from(2));
        let t = Instant::now();
        for (key, guest, left) in [(1, a, Some(2)), (2, a, None), (3, b, Some(1))] {
            let s = Arc::new(Session::new(format!("s{key}"), guest, Role::Guest));
            s.detached
                .set(left.map(|ms| t + Duration::from_millis(ms * 10)));
            reg.insert(key, s);
        }
        assert_eq!((reg.of_guest(a), reg.of_guest(b)), (2, 1));
        assert_eq!(reg.oldest_detached(None), Some(3));
        assert_eq!(reg.oldest_detached(Some(a)), Some(1));
        reg.remove(1);
        assert_eq!(
            reg.oldest_detached(Some(a)),
            None,
            "the other one is attached"
        );
        reg.remove(3);
        assert_eq!(reg.of_guest(b), 0);
        assert!(!reg.per_guest.contains_key(&b));
    }
}
