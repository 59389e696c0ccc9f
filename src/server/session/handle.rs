//! The handle to a session: what sockets and the registry hold, and the messages it sends
//! whichever task drives the session (its socket's, or its own while it has none). That
//! task owns the session's state; the handle only asks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::super::mailbox::Mailbox;
use super::outbox::Outbox;
use super::task::Bound;
use crate::hub::{Answer, Role, Snapshot};
use crate::party::GuestId;
use crate::protocol::{Tail, Topic};

/// What a socket asks of the session it attaches to.
pub enum Resume {
    /// A new session: snapshots of its topics follow the welcome. `reason` says why the
    /// phone's resume could not be honoured (`welcome.reason`), if it asked for one.
    Fresh { reason: Option<&'static str> },
    /// Resume after `last_seq`.
    From(u64),
}

/// The result of attaching a socket.
pub enum Attached {
    /// Attached: the session, for the socket's task to drive.
    Ok(Bound),
    /// The missed messages are gone: start a new session.
    TooOld,
}

/// A request to answer once something is done: its `rid`, and the hub seq (`after`) whose
/// changes must be numbered first.
pub(super) type Ack = (u64, u64);

/// Messages to a session. Large payloads are boxed to keep the queue's slots small.
pub(super) enum Msg {
    Attach(Box<AttachMsg>),
    Sub(Box<SubMsg>),
    Unsub(Vec<Topic>),
    /// A reply to send once the hub changes up to `after` have been numbered. It is sent
    /// only once the encoder handed on those changes (`Sessions::handed_on`).
    Reply(Box<(u64, Tail)>),
    Snapshot(Box<SnapshotMsg>),
}

/// Topics to add, and the request to answer once their snapshots are sent.
pub(super) type SubMsg = (Vec<Topic>, Option<Ack>);

pub(super) struct AttachMsg {
    pub(super) out: Arc<Outbox>,
    pub(super) resume: Resume,
    pub(super) done: oneshot::Sender<Attached>,
}

pub(super) struct SnapshotMsg {
    pub(super) answer: Answer<Box<Snapshot>>,
    pub(super) topics: Vec<Topic>,
    pub(super) reply: Option<Ack>,
}

/// When a session's last socket left, as eviction reads it without asking the task: 0
/// while a socket is attached or on its way (so no new session evicts it), otherwise
/// [`clock_ms`] of the moment it left. One atomic, not a lock, because every new session
/// scans all of them.
pub(super) struct DetachedSince(AtomicU64);

impl DetachedSince {
    pub(super) fn attaching() -> DetachedSince {
        DetachedSince(AtomicU64::new(0))
    }

    /// `None` marks it attached (or attaching); `Some(at)` detached since `at`.
    pub(super) fn set(&self, at: Option<Instant>) {
        self.0.store(at.map_or(0, clock_ms), Ordering::Relaxed);
    }

    /// When it left, in [`clock_ms`]; `None` while attached.
    pub(super) fn since(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|at| *at != 0)
    }
}

/// Milliseconds on a monotonic clock, never 0 (0 marks an attached session).
fn clock_ms(at: Instant) -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    let t0 = *T0.get_or_init(|| Instant::now() - Duration::from_millis(1));
    at.saturating_duration_since(t0).as_millis().max(1) as u64
}

/// The handle to a session.
pub struct Session {
    pub id: String,
    pub guest: GuestId,
    pub role: Role,
    pub(super) tx: Arc<Mailbox<Msg>>,
    /// Highest `rid` received (duplicate detection, `welcome.last_rid`).
    last_rid: Mutex<u64>,
    /// What eviction reads to find the oldest detached session.
    pub(super) detached: DetachedSince,
}

impl Session {
    /// A handle marked as attaching: its first socket is on the way.
    pub(super) fn new(id: String, guest: GuestId, role: Role) -> Session {
        Session {
            id,
            guest,
            role,
            tx: Arc::new(Mailbox::default()),
            last_rid: Mutex::new(0),
            detached: DetachedSince::attaching(),
        }
    }

    /// Registers a request id: false when it is at or below the highest one seen.
    pub fn accept_rid(&self, rid: u64) -> bool {
        let mut last = self.last_rid.lock().unwrap_or_else(|e| e.into_inner());
        if rid <= *last {
            return false;
        }
        *last = rid;
        true
    }

    pub fn last_rid(&self) -> u64 {
        *self.last_rid.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches the socket of `out` to this session, wherever it is driven now; on `Ok`,
    /// the socket's task drives it from then on.
    pub async fn attach(&self, out: Arc<Outbox>, resume: Resume) -> Attached {
        let (done, rx) = oneshot::channel();
        if self
            .tx
            .push(Msg::Attach(Box::new(AttachMsg { out, resume, done })))
            .is_err()
        {
            return Attached::TooOld;
        }
        // A session that ended drops the answer: it is gone.
        rx.await.unwrap_or(Attached::TooOld)
    }

    pub fn subscribe(&self, topics: Vec<Topic>, reply: Option<(u64, u64)>) {
        let _ = self.tx.push(Msg::Sub(Box::new((topics, reply))));
    }

    pub fn unsubscribe(&self, topics: Vec<Topic>) {
        let _ = self.tx.push(Msg::Unsub(topics));
    }

    /// Sends `tail` as a reply after the hub changes up to `after`.
    pub fn reply(&self, after: u64, tail: Tail) {
        let _ = self.tx.push(Msg::Reply(Box::new((after, tail))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rids_only_go_up() {
        let s = Session::new("s_x_0".into(), GuestId::from(1), Role::Guest);
        assert!(s.accept_rid(1) && s.accept_rid(5));
        assert!(!s.accept_rid(5) && !s.accept_rid(2));
        assert_eq!(s.last_rid(), 5);
    }

    #[test]
    fn detached_since_is_none_only_while_attached() {
        let d = DetachedSince::attaching();
        assert_eq!(d.since(), None);
        // Later than the clock's start, which the first reading fixes.
        let t = Instant::now() + Duration::from_secs(1);
        d.set(Some(t));
        let first = d.since().expect("detached");
        d.set(Some(t + Duration::from_millis(50)));
        assert!(d.since().expect("detached") >= first + 50);
        d.set(None);
        assert_eq!(d.since(), None);
    }
}
