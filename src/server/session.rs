//! Sessions: the unit of sequencing and resume (protocol.md §3–4, §10). A session outlives its
//! sockets. Each session is one task that takes the encoded change stream, keeps what its
//! guest may see (subscribed topics, their own personal changes), numbers it with the
//! session's `seq`, keeps the last messages for resume, and hands them to the attached socket
//! through a bounded queue. Replies travel through the same task and wait until the changes
//! they caused have been numbered, so a reply always comes after its own updates. Snapshots
//! are merged into the stream so that no change falls between a snapshot and the next delta,
//! and none is applied twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
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
    /// How long a session outlives its last socket.
    pub ttl: Duration,
    /// Messages that may wait for a socket's writer before it counts as too slow.
    pub socket_queue: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            // The protocol's minimum: thousands of phones each keep this many.
            buffer: 256,
            ttl: Duration::from_secs(15 * 60),
            socket_queue: 512,
        }
    }
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

/// All live sessions.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    wire: broadcast::Sender<Arc<Wire>>,
    /// The hub seq of the last change encoded (replies to reads wait for nothing newer).
    pub info: Arc<ServerInfo>,
    pub limits: SessionLimits,
    hub: Hub,
}

impl Sessions {
    /// Starts the encoder that turns hub changes into shared wire messages.
    pub fn start(hub: Hub, info: ServerInfo, limits: SessionLimits) -> Arc<Sessions> {
        let (wire, _) = broadcast::channel(crate::hub::CHANGE_BUFFER);
        let sessions = Arc::new(Sessions {
            map: Mutex::new(HashMap::new()),
            wire: wire.clone(),
            info: Arc::new(info),
            limits,
            hub: hub.clone(),
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

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a session for `guest` subscribed to `topics`.
    pub fn create(
        self: &Arc<Self>,
        guest: GuestId,
        role: Role,
        topics: Vec<Topic>,
    ) -> Arc<Session> {
        // The epoch is part of the id, so a resume after a restart can say why it failed.
        let id = format!("s_{}_{:016x}", self.info.epoch, rand::random::<u64>());
        let tx = Arc::new(Mailbox::default());
        let session = Arc::new(Session {
            id: id.clone(),
            guest,
            role,
            tx: tx.clone(),
            last_rid: Mutex::new(0),
        });
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), session.clone());
        let task = Task {
            id,
            guest,
            role,
            topics: topics.into_iter().fold(TopicSet::default(), |mut set, t| {
                set.insert(t);
                set
            }),
            seq: 0,
            buffer: VecDeque::new(),
            hub_cursor: self.hub.last_seq(),
            pending_replies: BTreeMap::new(),
            reply_order: 0,
            snapshotting: 0,
            covered: [0; Topic::ALL.len()],
            held: Vec::new(),
            socket: None,
            detached_at: Some(Instant::now()),
            tx,
            hub: self.hub.clone(),
            info: self.info.clone(),
            limits: self.limits.clone(),
        };
        let rx_wire = self.wire.subscribe();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let id = task.id.clone();
            task.run(rx_wire).await;
            if let Some(s) = me.upgrade() {
                s.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
        });
        session
    }
}

struct Attachment {
    socket: u64,
    out: Arc<Outbox>,
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
    id: String,
    guest: GuestId,
    role: Role,
    topics: TopicSet,
    seq: u64,
    /// The last messages, for resume; `buffer[i]` has seq `seq + 1 - buffer.len() + i` (they
    /// are contiguous, so the numbers need not be stored).
    buffer: VecDeque<Kept>,
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
    tx: Arc<Mailbox<Msg>>,
    hub: Hub,
    info: Arc<ServerInfo>,
    limits: SessionLimits,
}

impl Task {
    async fn run(mut self, mut wire: broadcast::Receiver<Arc<Wire>>) {
        let inbox = self.tx.clone();
        self.serve(&inbox, &mut wire).await;
        // Nothing waits forever on a session that is gone (an attach's answer is dropped).
        inbox.close();
    }

    async fn serve(&mut self, inbox: &Mailbox<Msg>, wire: &mut broadcast::Receiver<Arc<Wire>>) {
        // A timer only while no socket is attached: thousands of attached sessions need none.
        let mut expiry: Option<(Instant, std::pin::Pin<Box<tokio::time::Sleep>>)> = None;
        loop {
            match (self.detached_at, &expiry) {
                (Some(at), Some((set, _))) if at == *set => {}
                (Some(at), _) => {
                    let deadline = tokio::time::Instant::from_std(at + self.limits.ttl);
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
                    if self.detached_at.is_some_and(|t| t.elapsed() >= self.limits.ttl) {
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
            self.id
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
            self.buffer.pop_front();
        }
        self.buffer.push_back(item.clone());
        self.send(seq, &item);
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
                self.id
            );
            let att = self.socket.take().expect("attached");
            att.out.kick((4008, "too slow to keep up", true));
            self.detached_at = Some(Instant::now());
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
        let (hub, tx, guest) = (self.hub.clone(), self.tx.clone(), self.guest);
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
                            let _ = done.send(Attached::TooOld);
                            return;
                        }
                        (true, None, Some(last))
                    }
                    Resume::Fresh { reason } => (false, reason, None),
                };
                if let Some(old) = self.socket.take() {
                    // A newer socket takes over this session.
                    old.out
                        .kick((4008, "the session continued on another connection", false));
                }
                let welcome = protocol::welcome(
                    &self.info.build,
                    &self.info.epoch,
                    &self.id,
                    resumed,
                    reason,
                    last_rid,
                    self.role,
                    self.info.heartbeat_ms,
                );
                let _ = out.frames.push(Utf8Bytes::from(welcome));
                self.socket = Some(Attachment { socket, out });
                self.detached_at = None;
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
                    self.socket = None;
                    self.detached_at = Some(Instant::now());
                }
            }
            Msg::Sub(sub) => {
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
                for t in topics {
                    self.topics.remove(t);
                }
            }
            Msg::Reply(r) => {
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
