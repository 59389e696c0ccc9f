//! The host's way in, for every front end (the HTTP login today; any other door later calls
//! the same [`PinGuard::attempt`]): the PIN as a salted, slow hash; wrong-PIN limits per
//! address (IPv6 by /64) and across all addresses (a budget with exponential backoff, so
//! rotating source addresses buys nothing); the count of failed logins the host page shows;
//! and the host sessions (each host login's token: when, from where, last seen, expiry,
//! revocation).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};

use rand::Rng;
use serde_json::{json, Value};

use crate::party::GuestId;
use crate::store::{Db, Store, StoreError};

// ---- the PIN --------------------------------------------------------------------------------

/// Digits of a generated PIN.
pub const GENERATED_DIGITS: usize = 8;
/// Fewest digits of a configured PIN.
pub const MIN_DIGITS: usize = 6;
/// Most characters a PIN attempt may have (longer ones are refused before any hashing).
pub const MAX_ATTEMPT_LEN: usize = 64;

/// Argon2id with 1 MiB and 16 passes: about as slow as 8 MiB and 2 passes (the work is memory
/// times passes), but the allocator keeps the last check's memory for the next one, and 8 MiB
/// of it made a single login attempt cost the process 8 MB of RSS for good (the fan-out bench's
/// 3,000 phones went from 39 to 51 MB). The PIN's strength against a copied database is its
/// length and the file's 0600, not memory-hardness; online guessing is bounded by the budget.
const ARGON_M_KIB: u32 = 1024;
const ARGON_T: u32 = 16;

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON_M_KIB, ARGON_T, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A salted Argon2id hash of `pin` in PHC form (`$argon2id$v=19$…`). Slow on purpose: run it
/// off the async runtime.
pub fn hash_pin(pin: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Commit(format!("cannot hash the PIN: {e}")))
}

/// Whether `pin` is the one hashed in `hash`. The same work for a right and a wrong PIN, and
/// the comparison of the equal-length outputs is constant-time. Slow: off the runtime.
pub fn verify_pin(hash: &str, pin: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => argon2().verify_password(pin.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A new random PIN of [`GENERATED_DIGITS`] digits.
pub fn generate_pin() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_DIGITS)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// The PIN in use, as the store keeps it.
#[derive(Debug, Clone)]
pub struct PinSetup {
    /// The PHC hash to check attempts against.
    pub hash: String,
    /// The PIN, when it was generated just now (the only time it can be shown).
    pub generated: Option<String>,
    /// Host logins made with an earlier PIN were revoked.
    pub revoked: usize,
}

const META_HASH: &str = "host_pin_hash";
/// `configured` or `generated`: whether the stored hash is of a configured PIN.
const META_SOURCE: &str = "host_pin_source";
/// Databases before hashing kept the generated PIN itself here.
const META_PLAIN: &str = "host_pin";

/// Makes sure the store holds the hash of the PIN in use, at start (in the store's thread:
/// hashing is slow). A configured PIN wins; otherwise the generated one stays, or one is
/// generated. A plain `host_pin` of an older database is hashed and removed (the same PIN
/// keeps working). When the PIN is not the one the store knew, every host login is revoked.
pub fn prepare_pin(db: &Db, configured: Option<&str>) -> Result<PinSetup, StoreError> {
    if let Some(plain) = db.meta(META_PLAIN)? {
        db.set_meta(META_HASH, &hash_pin(&plain)?)?;
        db.set_meta(META_SOURCE, "generated")?;
        db.delete_meta(META_PLAIN)?;
        tracing::info!("the stored host PIN is now kept as a salted hash");
    }
    let stored = db.meta(META_HASH)?;
    let source = db.meta(META_SOURCE)?;
    let (hash, generated, changed) = match (configured, stored) {
        (Some(pin), Some(h)) if verify_pin(&h, pin) => (h, None, false),
        (Some(pin), old) => (hash_pin(pin)?, None, old.is_some()),
        (None, Some(h)) if source.as_deref() == Some("generated") => (h, None, false),
        (None, old) => {
            let pin = generate_pin();
            (hash_pin(&pin)?, Some(pin), old.is_some())
        }
    };
    db.set_meta(META_HASH, &hash)?;
    db.set_meta(
        META_SOURCE,
        if configured.is_some() {
            "configured"
        } else {
            "generated"
        },
    )?;
    let revoked = if changed || generated.is_some() {
        db.delete_host_sessions(None)?
    } else {
        0
    };
    Ok(PinSetup {
        hash,
        generated,
        revoked,
    })
}

/// `jukebox reset-pin`: a new generated PIN (returned, to print) in place of the old one, and
/// every host login revoked.
pub fn reset_pin(db: &Db) -> Result<(String, usize), StoreError> {
    let pin = generate_pin();
    db.set_meta(META_HASH, &hash_pin(&pin)?)?;
    db.set_meta(META_SOURCE, "generated")?;
    db.delete_meta(META_PLAIN)?;
    let revoked = db.delete_host_sessions(None)?;
    Ok((pin, revoked))
}

// ---- wrong-PIN limits -----------------------------------------------------------------------

/// The key an address is limited by: its network (`crate::addr::network`: IPv6 by /64, since
/// SLAAC gives anyone as many addresses as they like).
pub fn addr_key(ip: IpAddr) -> IpAddr {
    crate::addr::network(ip)
}

pub use crate::addr::{limiter as addr_limiter, prune_limiter, Limiter as AddrLimiter};

/// Drops the blocks that are over.
pub fn prune_blocked(m: &Mutex<HashMap<IpAddr, Instant>>) {
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    m.retain(|_, until| *until > now);
    m.shrink_to_fit();
}

/// The wrong-PIN limits.
#[derive(Debug, Clone, Copy)]
pub struct PinLimits {
    /// Wrong PINs a minute from one address (IPv6: one /64).
    pub per_addr_per_minute: u32,
    /// Wrong PINs from all addresses together within `window` before every login waits.
    pub budget: u32,
    pub window: Duration,
}

/// The first wait once the budget is spent; it doubles with every further wrong PIN.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Ok,
    Wrong,
    /// Refused without looking at the PIN (or wrong, and now over a limit): try again later.
    Refused {
        retry_after_ms: u64,
    },
}

#[derive(Default)]
struct Global {
    /// Wrong PINs within the window, oldest first (bounded: see `fail`).
    failures: VecDeque<Instant>,
    /// Wrong PINs since the budget was spent; the wait is `BACKOFF_BASE * 2^(strikes-1)`.
    strikes: u32,
    locked_until: Option<Instant>,
}

/// Failed logins per second over the last hour: for the host page's warning.
#[derive(Default)]
struct Tally {
    /// (second, wrong PINs, refused attempts), oldest first, at most one an hour's seconds.
    secs: VecDeque<(u64, u32, u32)>,
}

impl Tally {
    fn note(&mut self, now: u64, wrong: u32, refused: u32) {
        match self.secs.back_mut() {
            Some(b) if b.0 == now => {
                b.1 = b.1.saturating_add(wrong);
                b.2 = b.2.saturating_add(refused);
            }
            _ => self.secs.push_back((now, wrong, refused)),
        }
        while self.secs.front().is_some_and(|b| b.0 + 3600 <= now) {
            self.secs.pop_front();
        }
    }
    fn sum(&self, now: u64, within: u64) -> (u64, u64) {
        self.secs
            .iter()
            .filter(|b| b.0 + within > now)
            .fold((0, 0), |(w, r), b| (w + b.1 as u64, r + b.2 as u64))
    }
}

/// Failed host logins lately, as the host page shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedLogins {
    pub wrong_last_minute: u64,
    pub wrong_last_hour: u64,
    pub refused_last_minute: u64,
    pub refused_last_hour: u64,
    /// How long every login is still refused (0: not locked).
    pub locked_ms: u64,
}

/// Checks PIN attempts from any front end.
pub struct PinGuard {
    hash: String,
    limits: PinLimits,
    per_addr: AddrLimiter,
    /// Addresses refused until then.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    global: Mutex<Global>,
    tally: Mutex<Tally>,
    /// One check at a time: each sees the outcome of the one before, and a burst of attempts
    /// cannot all be hashed at once (memory, CPU) before the budget notices.
    checking: tokio::sync::Semaphore,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

impl PinGuard {
    pub fn new(hash: String, limits: PinLimits) -> PinGuard {
        PinGuard {
            hash,
            per_addr: addr_limiter(limits.per_addr_per_minute, limits.per_addr_per_minute),
            limits,
            blocked: Mutex::new(HashMap::new()),
            global: Mutex::new(Global::default()),
            tally: Mutex::new(Tally::default()),
            checking: tokio::sync::Semaphore::new(1),
            started: Instant::now(),
        }
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// One login attempt with `pin` from `ip`. While the budget is spent (or this address is
    /// over its limit) every attempt is refused, the right PIN included, before any hashing.
    pub async fn attempt(&self, ip: IpAddr, pin: &str) -> Attempt {
        let key = addr_key(ip);
        if let Some(wait) = self.refused(key) {
            return self.refuse(wait);
        }
        let Ok(_permit) = self.checking.acquire().await else {
            return self.refuse(BACKOFF_BASE);
        };
        // Another check may have spent the budget meanwhile.
        if let Some(wait) = self.refused(key) {
            return self.refuse(wait);
        }
        let (hash, attempt) = (self.hash.clone(), pin.to_owned());
        let ok = tokio::task::spawn_blocking(move || verify_pin(&hash, &attempt))
            .await
            .unwrap_or(false);
        if ok {
            return Attempt::Ok;
        }
        lock(&self.tally).note(self.second(), 1, 0);
        match self.fail(key) {
            Some(wait) => Attempt::Refused {
                retry_after_ms: ms(wait),
            },
            None => Attempt::Wrong,
        }
    }

    fn refuse(&self, wait: Duration) -> Attempt {
        lock(&self.tally).note(self.second(), 0, 1);
        Attempt::Refused {
            retry_after_ms: ms(wait),
        }
    }

    /// How long `key` must still wait, if it must.
    fn refused(&self, key: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let global = lock(&self.global)
            .locked_until
            .and_then(|u| u.checked_duration_since(now))
            .filter(|d| !d.is_zero());
        let own = lock(&self.blocked)
            .get(&key)
            .and_then(|u| u.checked_duration_since(now))
            .filter(|d| !d.is_zero());
        global.max(own)
    }

    /// Counts a wrong PIN from `key`; returns the wait it starts, if any.
    fn fail(&self, key: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let global = {
            let mut g = lock(&self.global);
            let window = self.limits.window;
            while g
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                g.failures.pop_front();
            }
            g.failures.push_back(now);
            // Only the count up to the budget matters: keep no more than that.
            let keep = self.limits.budget.max(1) as usize;
            while g.failures.len() > keep {
                g.failures.pop_front();
            }
            if g.failures.len() >= keep {
                g.strikes = g.strikes.saturating_add(1);
                let wait = BACKOFF_BASE
                    .saturating_mul(1u32 << (g.strikes - 1).min(20))
                    .min(BACKOFF_CAP);
                g.locked_until = Some(now + wait);
                tracing::warn!(
                    "{} wrong host PINs within {:?}: every host login waits {:?}",
                    keep,
                    window,
                    wait
                );
                Some(wait)
            } else {
                // The window drained below the budget: the backoff starts over.
                g.strikes = 0;
                None
            }
        };
        let own = self.per_addr.check_key(&key).err().map(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            lock(&self.blocked).insert(key, now + wait);
            wait
        });
        global.max(own)
    }

    pub fn failed_logins(&self) -> FailedLogins {
        let now = self.second();
        let t = lock(&self.tally);
        let (wm, rm) = t.sum(now, 60);
        let (wh, rh) = t.sum(now, 3600);
        let locked_ms = lock(&self.global)
            .locked_until
            .and_then(|u| u.checked_duration_since(Instant::now()))
            .map_or(0, |d| d.as_millis() as u64);
        FailedLogins {
            wrong_last_minute: wm,
            wrong_last_hour: wh,
            refused_last_minute: rm,
            refused_last_hour: rh,
            locked_ms,
        }
    }

    /// Forgets what no longer limits anyone (run periodically).
    pub fn prune(&self) {
        prune_limiter(&self.per_addr);
        prune_blocked(&self.blocked);
    }

    /// Entries held per address (for tests of the pruning).
    pub fn tracked_addresses(&self) -> (usize, usize) {
        (self.per_addr.len(), lock(&self.blocked).len())
    }
}

// ---- host sessions --------------------------------------------------------------------------

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One host login (its token is the host guest's token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSession {
    pub guest_id: GuestId,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub last_seen_ms: i64,
    /// The address it logged in from.
    pub addr: String,
}

/// The host logins that are valid: a host token works only while its session is here.
pub struct HostSessions {
    store: Store,
    ttl: Duration,
    map: Mutex<HashMap<GuestId, HostSession>>,
    /// Sessions whose `last_seen_ms` is not stored yet.
    dirty: Mutex<HashSet<GuestId>>,
    /// Bumped whenever sessions end, so that the open sockets of a revoked host close.
    ended: tokio::sync::watch::Sender<u64>,
}

impl HostSessions {
    pub async fn load(store: Store, ttl: Duration) -> Result<HostSessions, StoreError> {
        let now = now_ms();
        let rows = store
            .write(move |db| {
                db.delete_expired_host_sessions(now)?;
                db.host_sessions()
            })
            .await?;
        Ok(HostSessions {
            store,
            ttl,
            map: Mutex::new(rows.into_iter().map(|s| (s.guest_id, s)).collect()),
            dirty: Mutex::new(HashSet::new()),
            ended: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Records a new host login (durably, before its token is handed out).
    pub async fn add(&self, guest: GuestId, from: IpAddr) -> Result<HostSession, StoreError> {
        let now = now_ms();
        let s = HostSession {
            guest_id: guest,
            created_ms: now,
            expires_ms: now.saturating_add(self.ttl.as_millis() as i64),
            last_seen_ms: now,
            addr: from.to_string(),
        };
        let row = s.clone();
        self.store
            .write(move |db| db.insert_host_session(&row))
            .await?;
        lock(&self.map).insert(guest, s.clone());
        Ok(s)
    }

    /// Whether `guest`'s host token is still good (notes that it was seen).
    pub fn check(&self, guest: GuestId) -> bool {
        let now = now_ms();
        let mut m = lock(&self.map);
        match m.get_mut(&guest) {
            Some(s) if s.expires_ms > now => {
                s.last_seen_ms = now;
                lock(&self.dirty).insert(guest);
                true
            }
            _ => false,
        }
    }

    /// Whether it is valid, without noting anything.
    pub fn valid(&self, guest: GuestId) -> bool {
        lock(&self.map)
            .get(&guest)
            .is_some_and(|s| s.expires_ms > now_ms())
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<HostSession> {
        let mut v: Vec<HostSession> = lock(&self.map).values().cloned().collect();
        v.sort_by_key(|s| (s.created_ms, s.guest_id));
        v
    }

    /// Ends the given sessions, or all with `None`; returns how many there were. Their tokens
    /// stop working at once, and their open sockets are closed.
    pub async fn revoke(&self, which: Option<Vec<GuestId>>) -> Result<usize, StoreError> {
        let ids: Vec<GuestId> = {
            let mut m = lock(&self.map);
            let ids: Vec<GuestId> = match &which {
                None => m.keys().copied().collect(),
                Some(ids) => ids.iter().copied().filter(|g| m.contains_key(g)).collect(),
            };
            for g in &ids {
                m.remove(g);
            }
            ids
        };
        self.ended.send_modify(|n| *n += 1);
        let stored = ids.clone();
        self.store
            .write(move |db| match which {
                None => db.delete_host_sessions(None),
                Some(_) => db.delete_host_sessions(Some(&stored)),
            })
            .await?;
        Ok(ids.len())
    }

    /// Changes whenever sessions end; check [`HostSessions::valid`] then.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ended.subscribe()
    }

    /// Ends expired sessions and stores when the others were last seen (run periodically).
    pub async fn tick(&self) {
        let now = now_ms();
        let expired: Vec<GuestId> = lock(&self.map)
            .values()
            .filter(|s| s.expires_ms <= now)
            .map(|s| s.guest_id)
            .collect();
        if !expired.is_empty() {
            if let Err(e) = self.revoke(Some(expired)).await {
                tracing::warn!("cannot end expired host sessions: {e}");
            }
        }
        let seen: Vec<(GuestId, i64)> = {
            let ids: Vec<GuestId> = lock(&self.dirty).drain().collect();
            let m = lock(&self.map);
            ids.iter()
                .filter_map(|g| m.get(g).map(|s| (*g, s.last_seen_ms)))
                .collect()
        };
        if !seen.is_empty() {
            if let Err(e) = self
                .store
                .write(move |db| db.touch_host_sessions(&seen))
                .await
            {
                tracing::warn!("cannot store when host sessions were last seen: {e}");
            }
        }
    }
}

/// The host's way in: the PIN and the sessions it opened.
pub struct Login {
    pub pin: PinGuard,
    pub sessions: HostSessions,
}

/// The data of `host_sessions` (and of `GET /api/host/sessions`): the host logins, `current`
/// marking the asker's, and the failed logins of the last minute and hour.
pub fn sessions_data(list: &[HostSession], current: GuestId, failed: FailedLogins) -> Value {
    json!({
        "sessions": list.iter().map(|s| json!({
            "guest_id": s.guest_id,
            "created_ms": s.created_ms,
            "expires_ms": s.expires_ms,
            "last_seen_ms": s.last_seen_ms,
            "from": s.addr,
            "current": s.guest_id == current,
        })).collect::<Vec<_>>(),
        "failed_logins": {
            "wrong_last_minute": failed.wrong_last_minute,
            "wrong_last_hour": failed.wrong_last_hour,
            "refused_last_minute": failed.refused_last_minute,
            "refused_last_hour": failed.refused_last_hour,
            "locked_ms": failed.locked_ms,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash_pin("12345678").unwrap();
        let b = hash_pin("12345678").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_pin(&a, "12345678"));
        assert!(!verify_pin(&a, "12345679"));
        assert!(!verify_pin(&a, ""));
        assert!(!verify_pin("not a hash", "12345678"));
        let p = generate_pin();
        assert_eq!(p.len(), GENERATED_DIGITS);
        assert!(p.bytes().all(|b| b.is_ascii_digit()));
    }

    /// The old comparison (`ct_eq` on the raw bytes) returned at once for a PIN of another
    /// length. Now every attempt costs one full hash: right, wrong, short or long alike.
    #[test]
    fn right_and_wrong_pins_cost_the_same() {
        let hash = hash_pin("24681357").unwrap();
        let time = |pin: &str| {
            let mut v: Vec<Duration> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    let _ = verify_pin(&hash, pin);
                    t.elapsed()
                })
                .collect();
            v.sort();
            v[2]
        };
        let right = time("24681357");
        eprintln!("one PIN check takes {right:?} here");
        for pin in ["24681350", "1", "", "2468135724681357246813572468"] {
            let t = time(pin);
            let ratio = t.as_secs_f64() / right.as_secs_f64();
            // Wide bounds: the machine may be busy; a shortcut would be thousands of times faster.
            assert!((0.2..5.0).contains(&ratio), "{pin:?}: {t:?} vs {right:?}");
        }
    }

    #[test]
    fn limiter_tables_are_pruned() {
        // 1 ms replenish: every key is back to fresh almost at once.
        let l = addr_limiter(60_000, 1);
        for i in 0..5000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = l.check_key(&ip);
        }
        assert_eq!(l.len(), 5000);
        std::thread::sleep(Duration::from_millis(20));
        prune_limiter(&l);
        assert_eq!(l.len(), 0, "fresh keys are dropped");

        let blocked = Mutex::new(HashMap::new());
        let past = Instant::now();
        let future = Instant::now() + Duration::from_secs(60);
        for i in 0..5000u32 {
            let until = if i == 0 { future } else { past };
            lock(&blocked).insert(IpAddr::from(i.to_be_bytes()), until);
        }
        prune_blocked(&blocked);
        assert_eq!(
            lock(&blocked).len(),
            1,
            "only the block still running stays"
        );
    }

    #[tokio::test]
    async fn the_guard_forgets_addresses_that_no_limit_holds() {
        let guard = PinGuard::new(
            hash_pin("24681357").unwrap(),
            PinLimits {
                per_addr_per_minute: 60_000,
                budget: 10_000,
                window: Duration::from_secs(60),
            },
        );
        for i in 0..40u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            assert_eq!(guard.attempt(ip, "1").await, Attempt::Wrong);
        }
        assert_eq!(guard.tracked_addresses().0, 40);
        tokio::time::sleep(Duration::from_millis(20)).await;
        guard.prune();
        assert_eq!(guard.tracked_addresses(), (0, 0));
        assert_eq!(guard.failed_logins().wrong_last_minute, 40);
    }

    #[test]
    fn the_tally_is_bounded_and_windowed() {
        let mut t = Tally::default();
        for s in 0..10_000u64 {
            t.note(s, 1, 2);
        }
        assert!(t.secs.len() <= 3600);
        assert_eq!(t.sum(9_999, 60), (60, 120));
        assert_eq!(t.sum(9_999, 3600), (3600, 7200));
    }
}
