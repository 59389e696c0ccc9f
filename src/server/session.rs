//! Sessions: the unit of sequencing and resume (protocol.md §3–4, §10). A session outlives its
//! sockets. Each session is one task that takes the encoded change stream, keeps what its
//! guest may see (subscribed topics, their own personal changes), numbers it with the
//! session's `seq`, keeps the last messages for resume, and hands them to the attached socket
//! through a bounded queue. Replies travel through the same task and wait until the changes
//! they caused have been numbered, so a reply always comes after its own updates. Snapshots
//! are merged into the stream so that no change falls between a snapshot and the next delta,
//! and none is applied twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{broadcast, oneshot};

use super::mailbox::Mailbox;

use crate::hub::{Command, Hub, Reply, Role};
use crate::party::GuestId;
use crate::protocol::{self, Tail, Topic};

/// One encoded change, shared by every session (encoded once).
#[derive(Debug)]
pub struct Wire {
    pub hub_seq: u64,
    /// `None` for events, which go to every socket.
    pub topic: Option<Topic>,
    /// Personal changes name their guest.
    pub to: Option<GuestId>,
    /// `None` for changes the wire does not carry (the seq still goes by).
    pub tail: Option<Tail>,
    /// The encoder lost changes: every session must snapshot again.
    pub gap: bool,
}

/// Limits of a session (protocol.md §3, §10).
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Messages kept for resume (at least 256).
    pub buffer: usize,
    /// Bytes the session's own kept messages (snapshots and replies, which no other session
    /// shares) may take together, their text and about 100 bytes each besides. Shared updates
    /// and events cost each session a pointer and do not count. 256 messages of 256 bytes fit,
    /// so the bound only bites on big messages (search results, large snapshots).
    pub own_bytes: usize,
    /// How long a session that was in use outlives its last socket.
    pub ttl: Duration,
    /// How long a session that was never in use outlives its socket.
    pub unused_ttl: Duration,
    /// A socket attached this long in one go puts its session in use.
    pub in_use_after: Duration,
    /// Messages that may wait for a socket's writer before it counts as too slow.
    pub socket_queue: usize,
    /// Sessions one guest may have; a new one replaces the guest's oldest detached one.
    pub per_guest: usize,
    /// Sessions in all; a new one replaces the oldest detached one of anyone.
    pub max: usize,
    /// Hellos one guest may send in any 10 s (the burst; one more every 10 s / this).
    pub hello_rate: u32,
}

impl SessionLimits {
    /// The configurable limits from the configuration; the rest are the protocol's.
    pub fn from_limits(l: &crate::config::Limits) -> SessionLimits {
        SessionLimits {
            // The protocol's minimum: thousands of phones each keep this many.
            buffer: 256,
            own_bytes: 64 * 1024,
            ttl: Duration::from_secs(15 * 60),
            unused_ttl: Duration::from_secs(l.unused_session_ttl.into()),
            in_use_after: Duration::from_secs(10),
            socket_queue: 512,
            per_guest: l.sessions_per_guest as usize,
            max: l.max_sessions as usize,
            hello_rate: l.hello_rate,
        }
    }
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits::from_limits(&crate::config::Limits::default())
    }
}

/// Why no session could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Every session of this guest has a socket attached.
    Guest,
    /// The jukebox holds its most sessions and every one has a socket attached.
    Total,
}

/// A close: code, reason, and whether the client should reconnect.
pub type CloseReq = (u16, &'static str, bool);

/// What a socket sends: the frames its session hands it, in order, and a close the session
/// may ask for out of band (the queue may be full of what a slow phone has not read).
#[derive(Default)]
pub struct Outbox {
    pub frames: Mailbox<Utf8Bytes>,
    kick: Mutex<Option<CloseReq>>,
}

impl Outbox {
    /// Asks the socket to close at once, without sending what is still queued.
    pub fn kick(&self, close: CloseReq) {
        *self.kick.lock().unwrap_or_else(|e| e.into_inner()) = Some(close);
        self.frames.wake();
    }

    pub fn kicked(&self) -> Option<CloseReq> {
        *self.kick.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Facts the welcome message carries.
pub struct ServerInfo {
    pub build: String,
    pub epoch: String,
    pub heartbeat_ms: u64,
}

pub enum Resume {
    /// A new session: snapshots of these topics follow the welcome.
    Fresh { reason: Option<&'static str> },
    /// Resume after `last_seq`.
    From(u64),
}

/// The result of attaching a socket.
pub enum Attached {
    Ok,
    /// The missed messages are gone: start a new session.
    TooOld,
}

/// Messages to a session task. Large payloads are boxed to keep the queue's slots small.
enum Msg {
    Attach(Box<AttachMsg>),
    Detach {
        socket: u64,
    },
    Sub(Box<SubMsg>),
    Unsub(Vec<Topic>),
    /// A reply to send once the hub changes up to `after` have been numbered.
    Reply(Box<(u64, Tail)>),
    Snapshot(Box<SnapshotMsg>),
}

/// Topics to add, and the request (rid, after) to answer once their snapshots are sent.
type SubMsg = (Vec<Topic>, Option<(u64, u64)>);

struct AttachMsg {
    socket: u64,
    out: Arc<Outbox>,
    resume: Resume,
    last_rid: u64,
    done: oneshot::Sender<Attached>,
}

struct SnapshotMsg {
    answer: crate::hub::Answer,
    topics: Vec<Topic>,
    reply: Option<(u64, u64)>,
}

/// The handle to a session task.
pub struct Session {
    pub id: String,
    pub guest: GuestId,
    pub role: Role,
    tx: Arc<Mailbox<Msg>>,
    /// Highest `rid` received (duplicate detection, `welcome.last_rid`).
    last_rid: Mutex<u64>,
    /// When its last socket left ([`clock_ms`]), or 0 while one is attached or attaching:
    /// what eviction reads to find the oldest detached session.
    detached: AtomicU64,
}

impl Session {
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

    pub async fn attach(&self, socket: u64, out: Arc<Outbox>, resume: Resume) -> Attached {
        let (done, rx) = oneshot::channel();
        if self
            .tx
            .push(Msg::Attach(Box::new(AttachMsg {
                socket,
                out,
                resume,
                last_rid: self.last_rid(),
                done,
            })))
            .is_err()
        {
            return Attached::TooOld;
        }
        rx.await.unwrap_or(Attached::TooOld)
    }

    fn set_detached(&self, at: Option<Instant>) {
        self.detached
            .store(at.map_or(0, clock_ms), Ordering::Relaxed);
    }

    pub fn detach(&self, socket: u64) {
        let _ = self.tx.push(Msg::Detach { socket });
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

/// Milliseconds on a monotonic clock, never 0 (0 marks an attached session).
fn clock_ms(at: Instant) -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    let t0 = *T0.get_or_init(|| Instant::now() - Duration::from_millis(1));
    at.saturating_duration_since(t0).as_millis().max(1) as u64
}

/// The sessions, by the random part of their id, and how many each guest has.
#[derive(Default)]
struct Registry {
    by_id: HashMap<u64, Arc<Session>>,
    per_guest: HashMap<GuestId, u32>,
}

impl Registry {
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

    /// The key of the session that left first, of `guest` or of anyone.
    fn oldest_detached(&self, guest: Option<GuestId>) -> Option<u64> {
        self.by_id
            .iter()
            .filter(|(_, s)| guest.is_none_or(|g| s.guest == g))
            .map(|(key, s)| (s.detached.load(Ordering::Relaxed), *key))
            .filter(|(at, _)| *at != 0)
            .min_by_key(|(at, _)| *at)
            .map(|(_, key)| key)
    }
}

/// All live sessions.
pub struct Sessions {
    map: Mutex<Registry>,
    /// The encoder's output: every hub change, encoded once, for every session task.
    wire: broadcast::Sender<Arc<Wire>>,
    /// What every welcome says about this server.
    pub info: Arc<ServerInfo>,
    /// Shared by every session task (one pointer each).
    pub limits: Arc<SessionLimits>,
    hub: Hub,
    hellos: DefaultKeyedRateLimiter<GuestId>,
    /// Hellos checked, to prune the limiter's table now and then.
    hellos_seen: AtomicU64,
}

impl Sessions {
    /// Starts the encoder that turns hub changes into shared wire messages.
    pub fn start(hub: Hub, info: ServerInfo, limits: SessionLimits) -> Arc<Sessions> {
        let (wire, _) = broadcast::channel(crate::hub::CHANGE_BUFFER);
        let rate = NonZeroU32::new(limits.hello_rate.max(1)).expect("non-zero");
        let hellos = RateLimiter::keyed(
            Quota::with_period(Duration::from_secs(10) / rate.get())
                .expect("a positive period")
                .allow_burst(rate),
        );
        let sessions = Arc::new(Sessions {
            map: Mutex::new(Registry::default()),
            wire: wire.clone(),
            info: Arc::new(info),
            limits: Arc::new(limits),
            hub: hub.clone(),
            hellos,
            hellos_seen: AtomicU64::new(0),
        });
        let mut changes = hub.subscribe();
        let hub = hub.clone();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(p) => {
                        let _ = wire.send(Arc::new(Wire {
                            hub_seq: p.seq,
                            topic: protocol::change_topic(&p.change),
                            to: p.change.only_for(),
                            tail: protocol::encode_change(&p.change),
                            gap: false,
                        }));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("the change encoder fell {n} changes behind");
                        let _ = wire.send(Arc::new(Wire {
                            hub_seq: hub.last_seq(),
                            topic: None,
                            to: None,
                            tail: None,
                            gap: true,
                        }));
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        sessions
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a hello of `guest`: `Err(ms)` when it comes too soon after too many others.
    pub fn hello_allowed(&self, guest: GuestId) -> Result<(), u64> {
        if self.hellos_seen.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            // Guests back to a full allowance need no entry.
            self.hellos.retain_recent();
            self.hellos.shrink_to_fit();
        }
        self.hellos.check_key(&guest).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            wait.as_millis().max(1) as u64
        })
    }

    /// The map key of a session id of this run (`s_<epoch>_<16 hex digits>`).
    fn key(&self, id: &str) -> Option<u64> {
        let hex = id
            .strip_prefix("s_")?
            .strip_prefix(self.info.epoch.as_str())?
            .strip_prefix('_')?;
        if hex.len() != 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let key = self.key(id)?;
        self.registry().by_id.get(&key).cloned()
    }

    /// The session `id` of `guest`, marked as attaching so that no new session evicts it
    /// while its socket is on the way.
    pub fn claim(&self, id: &str, guest: GuestId) -> Option<Arc<Session>> {
        let key = self.key(id)?;
        let reg = self.registry();
        let s = reg.by_id.get(&key).filter(|s| s.guest == guest)?;
        s.set_detached(None);
        Some(s.clone())
    }

    pub fn len(&self) -> usize {
        self.registry().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a session for `guest` subscribed to `topics`, marked as attaching. When the
    /// guest, or the jukebox, already holds its most sessions, the oldest detached one (of
    /// the guest, then of anyone) makes room; when every one has a socket, none is made.
    pub fn create(
        self: &Arc<Self>,
        guest: GuestId,
        role: Role,
        topics: Vec<Topic>,
    ) -> Result<Arc<Session>, Full> {
        let tx = Arc::new(Mailbox::default());
        let mut reg = self.registry();
        let key = loop {
            let key = rand::random::<u64>();
            if !reg.by_id.contains_key(&key) {
                break key;
            }
        };
        // The epoch is part of the id, so a resume after a restart can say why it failed.
        let id = format!("s_{}_{key:016x}", self.info.epoch);
        let session = Arc::new(Session {
            id,
            guest,
            role,
            tx: tx.clone(),
            last_rid: Mutex::new(0),
            detached: AtomicU64::new(0),
        });
        let mut evicted = Vec::new();
        let mine = reg.per_guest.get(&guest).copied().unwrap_or(0) as usize;
        if mine >= self.limits.per_guest.max(1) {
            let old = reg.oldest_detached(Some(guest)).ok_or(Full::Guest)?;
            evicted.extend(reg.remove(old));
        }
        if reg.by_id.len() >= self.limits.max.max(1) {
            let old = reg.oldest_detached(None).ok_or(Full::Total)?;
            evicted.extend(reg.remove(old));
        }
        reg.by_id.insert(key, session.clone());
        *reg.per_guest.entry(guest).or_insert(0) += 1;
        drop(reg);
        for old in evicted {
            tracing::debug!("session {} makes room for a new one", old.id);
            // Its task ends (and kicks a socket that raced to attach).
            old.tx.close();
        }
        let task = Task {
            guest,
            role,
            topics: topics.into_iter().fold(TopicSet::default(), |mut set, t| {
                set.insert(t);
                set
            }),
            seq: 0,
            buffer: VecDeque::new(),
            own_bytes: 0,
            in_use: false,
            hub_cursor: self.hub.last_seq(),
            pending_replies: BTreeMap::new(),
            reply_order: 0,
            snapshotting: 0,
            covered: [0; Topic::ALL.len()],
            held: Vec::new(),
            socket: None,
            detached_at: Some(Instant::now()),
            handle: session.clone(),
            hub: self.hub.clone(),
            info: self.info.clone(),
            limits: self.limits.clone(),
        };
        let rx_wire = self.wire.subscribe();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            task.run(rx_wire).await;
            if let Some(s) = me.upgrade() {
                s.registry().remove(key);
            }
        });
        Ok(session)
    }
}

struct Attachment {
    socket: u64,
    out: Arc<Outbox>,
    since: Instant,
}

/// A message kept for resume: shared ones are encoded once for every session; the session's
/// own (snapshots, replies) are wrapped the same way so each entry is one pointer.
type Kept = Arc<Wire>;

fn own(tail: Tail) -> Kept {
    Arc::new(Wire {
        hub_seq: 0,
        topic: None,
        to: None,
        tail: Some(tail),
        gap: false,
    })
}

/// What a kept message costs the session alone: nothing for a shared one (its pointer is
/// counted in the buffer), its text and its allocation for the session's own.
fn own_cost(k: &Kept) -> usize {
    if k.hub_seq != 0 {
        return 0;
    }
    let text = k
        .tail
        .as_ref()
        .map_or(0, |t| t.rest.capacity() + t.cmd.len());
    text + std::mem::size_of::<Wire>() + 2 * std::mem::size_of::<usize>()
}

fn render(k: &Kept, seq: u64) -> String {
    k.tail.as_ref().map_or_else(String::new, |t| t.render(seq))
}

/// A set of topics as bits: one byte per session instead of a tree node.
#[derive(Clone, Copy, Default)]
struct TopicSet(u8);

impl TopicSet {
    fn bit(t: Topic) -> u8 {
        1 << (t as u8)
    }
    fn contains(self, t: Topic) -> bool {
        self.0 & Self::bit(t) != 0
    }
    /// True when `t` was not in the set.
    fn insert(&mut self, t: Topic) -> bool {
        let new = !self.contains(t);
        self.0 |= Self::bit(t);
        new
    }
    fn remove(&mut self, t: Topic) {
        self.0 &= !Self::bit(t);
    }
    fn to_vec(self) -> Vec<Topic> {
        Topic::ALL
            .into_iter()
            .filter(|t| self.contains(*t))
            .collect()
    }
}

struct Task {
    guest: GuestId,
    role: Role,
    topics: TopicSet,
    seq: u64,
    /// The last messages, for resume; `buffer[i]` has seq `seq + 1 - buffer.len() + i` (they
    /// are contiguous, so the numbers need not be stored).
    buffer: VecDeque<Kept>,
    /// What the session's own messages in `buffer` cost ([`own_cost`]).
    own_bytes: usize,
    /// Resumed, asked something, or attached for a while: it lives the full ttl when its
    /// phone leaves; a session never in use lives `unused_ttl`.
    in_use: bool,
    /// The last hub seq this session has dealt with.
    hub_cursor: u64,
    /// Replies waiting for their changes: (after, order) → tail.
    pending_replies: BTreeMap<(u64, u64), Tail>,
    reply_order: u64,
    /// Snapshots in flight; while any is, new changes are held back.
    snapshotting: u32,
    /// For each topic, the hub seq its last snapshot reflects: older changes are in it.
    covered: [u64; Topic::ALL.len()],
    held: Vec<Arc<Wire>>,
    socket: Option<Attachment>,
    detached_at: Option<Instant>,
    /// Its own handle: the inbox, and where eviction reads when the phone left.
    handle: Arc<Session>,
    hub: Hub,
    info: Arc<ServerInfo>,
    limits: Arc<SessionLimits>,
}

impl Task {
    async fn run(mut self, mut wire: broadcast::Receiver<Arc<Wire>>) {
        let inbox = self.handle.tx.clone();
        self.serve(&inbox, &mut wire).await;
        // Nothing waits forever on a session that is gone (an attach's answer is dropped).
        inbox.close();
        // Evicted just as a socket attached: that socket says bye rather than live on a
        // session that no longer answers. Its phone reconnects and starts a new one.
        if let Some(att) = self.socket.take() {
            att.out
                .kick((4008, "the session ended; start a new one", true));
        }
    }

    /// How long the session outlives its socket.
    fn ttl(&self) -> Duration {
        if self.in_use {
            self.limits.ttl
        } else {
            self.limits.unused_ttl.min(self.limits.ttl)
        }
    }

    /// The socket left (or was closed): the session waits for a resume.
    fn detached(&mut self) {
        if let Some(att) = self.socket.take() {
            if att.since.elapsed() >= self.limits.in_use_after {
                self.in_use = true;
            }
        }
        let now = Instant::now();
        self.detached_at = Some(now);
        self.handle.set_detached(Some(now));
    }

    async fn serve(&mut self, inbox: &Mailbox<Msg>, wire: &mut broadcast::Receiver<Arc<Wire>>) {
        // A timer only while no socket is attached: thousands of attached sessions need none.
        let mut expiry: Option<(Instant, std::pin::Pin<Box<tokio::time::Sleep>>)> = None;
        loop {
            match (self.detached_at, &expiry) {
                (Some(at), Some((set, _))) if at == *set => {}
                (Some(at), _) => {
                    let deadline = tokio::time::Instant::from_std(at + self.ttl());
                    expiry = Some((at, Box::pin(tokio::time::sleep_until(deadline))));
                }
                (None, _) => expiry = None,
            }
            tokio::select! {
                biased;
                msg = inbox.recv() => match msg {
                    Some(m) => self.on_msg(m),
                    None => return,
                },
                w = wire.recv() => match w {
                    Ok(w) if w.gap => self.resnapshot(),
                    Ok(w) => self.on_wire(w),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resnapshot(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = async { expiry.as_mut().expect("checked").1.as_mut().await }, if expiry.is_some() => {
                    if self.detached_at.is_some_and(|t| t.elapsed() >= self.ttl()) {
                        return;
                    }
                }
            }
        }
    }

    /// Changes were lost on the way: we cannot know which, so every topic is sent again.
    fn resnapshot(&mut self) {
        tracing::info!(
            "session {}: changes were lost on the way; sending snapshots again",
            self.handle.id
        );
        let topics: Vec<Topic> = self.topics.to_vec();
        self.hub_cursor = self.hub_cursor.max(self.hub.last_seq());
        self.request_snapshot(topics, None);
    }

    fn wants(&self, w: &Wire) -> bool {
        if w.to.is_some_and(|g| g != self.guest) {
            return false;
        }
        match w.topic {
            None => true,
            Some(Topic::Admin) => self.role == Role::Host && self.topics.contains(Topic::Admin),
            Some(t) => self.topics.contains(t),
        }
    }

    fn on_wire(&mut self, w: Arc<Wire>) {
        if self.snapshotting > 0 {
            self.held.push(w);
            return;
        }
        self.apply_wire(w);
        self.flush_replies();
    }

    fn apply_wire(&mut self, w: Arc<Wire>) {
        if w.hub_seq <= self.hub_cursor {
            return;
        }
        self.hub_cursor = w.hub_seq;
        // Already part of a snapshot this session sent?
        if let Some(t) = w.topic {
            if w.hub_seq <= self.covered[t as usize] {
                return;
            }
        }
        if w.tail.is_some() && self.wants(&w) {
            self.emit(w);
        }
    }

    fn emit(&mut self, item: Kept) {
        self.seq += 1;
        let seq = self.seq;
        // Make room first: the buffer then never grows past its limit (a deque that reached
        // limit + 1 would double its allocation, in every session).
        while self.buffer.len() >= self.limits.buffer.max(1) {
            self.drop_oldest();
        }
        self.own_bytes += own_cost(&item);
        self.buffer.push_back(item.clone());
        // Big own messages (search results, snapshots) push out the oldest ones: a resume
        // that needs those is answered too_old, and the phone gets fresh snapshots.
        while self.own_bytes > self.limits.own_bytes && !self.buffer.is_empty() {
            self.drop_oldest();
        }
        self.send(seq, &item);
    }

    fn drop_oldest(&mut self) {
        if let Some(k) = self.buffer.pop_front() {
            self.own_bytes -= own_cost(&k);
        }
    }

    fn send(&mut self, seq: u64, item: &Kept) {
        let Some(att) = &self.socket else { return };
        let frame = Utf8Bytes::from(render(item, seq));
        if att
            .out
            .frames
            .push_bounded(frame, self.limits.socket_queue)
            .is_err()
        {
            // Too slow to keep up (or gone): it resumes from the buffer when it comes back.
            tracing::info!(
                "session {}: the phone is too slow; closing its socket (4008)",
                self.handle.id
            );
            if let Some(att) = &self.socket {
                att.out.kick((4008, "too slow to keep up", true));
            }
            self.detached();
        }
    }

    fn flush_replies(&mut self) {
        if self.snapshotting > 0 {
            return;
        }
        while let Some((&(after, order), _)) = self.pending_replies.iter().next() {
            if after > self.hub_cursor {
                break;
            }
            let tail = self
                .pending_replies
                .remove(&(after, order))
                .expect("present");
            self.emit(own(tail));
        }
    }

    fn request_snapshot(&mut self, topics: Vec<Topic>, reply: Option<(u64, u64)>) {
        self.snapshotting += 1;
        let (hub, tx, guest) = (self.hub.clone(), self.handle.tx.clone(), self.guest);
        let admin = self.role == Role::Host && topics.contains(&Topic::Admin);
        tokio::spawn(async move {
            let answer = hub
                .call(Command::Snapshot {
                    guest: Some(guest),
                    admin,
                })
                .await;
            let _ = tx.push(Msg::Snapshot(Box::new(SnapshotMsg {
                answer,
                topics,
                reply,
            })));
        });
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Attach(a) => {
                let AttachMsg {
                    socket,
                    out,
                    resume,
                    last_rid,
                    done,
                } = *a;
                let (resumed, reason, replay_from) = match resume {
                    Resume::From(last) => {
                        let oldest = self.seq + 1 - self.buffer.len() as u64;
                        if last > self.seq || last + 1 < oldest {
                            // The claim marked it attaching; it is as detached as before.
                            if self.socket.is_none() {
                                self.handle.set_detached(self.detached_at);
                            }
                            let _ = done.send(Attached::TooOld);
                            return;
                        }
                        self.in_use = true;
                        (true, None, Some(last))
                    }
                    Resume::Fresh { reason } => (false, reason, None),
                };
                if let Some(old) = self.socket.take() {
                    // A newer socket takes over this session.
                    old.out
                        .kick((4008, "the session continued on another connection", false));
                }
                let welcome = protocol::welcome(&protocol::Welcome {
                    build: &self.info.build,
                    epoch: &self.info.epoch,
                    session: &self.handle.id,
                    resumed,
                    reason,
                    last_rid,
                    role: self.role,
                    heartbeat_ms: self.info.heartbeat_ms,
                });
                let _ = out.frames.push(Utf8Bytes::from(welcome));
                self.socket = Some(Attachment {
                    socket,
                    out,
                    since: Instant::now(),
                });
                self.detached_at = None;
                self.handle.set_detached(None);
                let _ = done.send(Attached::Ok);
                match replay_from {
                    Some(last) => {
                        let oldest = self.seq + 1 - self.buffer.len() as u64;
                        let missed: Vec<(u64, Kept)> = self
                            .buffer
                            .iter()
                            .enumerate()
                            .map(|(i, k)| (oldest + i as u64, k.clone()))
                            .filter(|(s, _)| *s > last)
                            .collect();
                        for (seq, item) in missed {
                            self.send(seq, &item);
                        }
                    }
                    None => {
                        let topics: Vec<Topic> = self.topics.to_vec();
                        if !topics.is_empty() {
                            self.request_snapshot(topics, None);
                        }
                    }
                }
            }
            Msg::Detach { socket } => {
                if self.socket.as_ref().is_some_and(|a| a.socket == socket) {
                    self.detached();
                }
            }
            Msg::Sub(sub) => {
                self.in_use = true;
                let (topics, reply) = *sub;
                let new: Vec<Topic> = topics
                    .into_iter()
                    .filter(|t| *t != Topic::Admin || self.role == Role::Host)
                    .filter(|t| self.topics.insert(*t))
                    .collect();
                if new.is_empty() {
                    if let Some((rid, after)) = reply {
                        self.queue_reply(after, protocol::reply_ok(rid, serde_json::json!({})));
                    }
                } else {
                    self.request_snapshot(new, reply);
                }
            }
            Msg::Unsub(topics) => {
                self.in_use = true;
                for t in topics {
                    self.topics.remove(t);
                }
            }
            Msg::Reply(r) => {
                self.in_use = true;
                let (after, tail) = *r;
                self.queue_reply(after, tail);
            }
            Msg::Snapshot(snap) => {
                let SnapshotMsg {
                    answer,
                    topics,
                    reply,
                } = *snap;
                self.snapshotting = self.snapshotting.saturating_sub(1);
                match answer.result {
                    Ok(Reply::Snapshot(s)) => {
                        // Changes up to the snapshot's point are in it; the ones we
                        // already sent for other topics stay sent.
                        for t in &topics {
                            if self.topics.contains(*t) {
                                self.emit(own(protocol::encode_snapshot(*t, &s)));
                                self.covered[*t as usize] = answer.after_seq;
                            }
                        }
                    }
                    other => {
                        tracing::warn!("snapshot for a session failed: {:?}", other.err());
                    }
                }
                if let Some((rid, _)) = reply {
                    self.emit(own(protocol::reply_ok(rid, serde_json::json!({}))));
                }
                if self.snapshotting == 0 {
                    for w in std::mem::take(&mut self.held) {
                        self.apply_wire(w);
                    }
                }
                self.flush_replies();
            }
        }
    }

    fn queue_reply(&mut self, after: u64, tail: Tail) {
        self.reply_order += 1;
        self.pending_replies.insert((after, self.reply_order), tail);
        self.flush_replies();
    }
}
