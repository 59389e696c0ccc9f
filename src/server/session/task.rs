//! One session's state and how it is driven: it takes the encoded change stream, keeps what
//! its guest may see, numbers it, keeps it for resume, and hands it to the attached socket.
//!
//! While a socket is attached, the socket's own task drives the session ([`Bound`]): one task
//! per phone, so a change wakes one task and not two (the session's, then the socket's),
//! and an attached phone costs no task of its own. While none is, the session waits on a
//! task of its own ([`Task::alone`]) for its phone to come back, or for its time to run out.
//! Whoever drives it, the state moves with the attach: the driver that takes an attach
//! hands the whole state to the attaching socket, so it is never in two places.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{broadcast, oneshot};

use super::buffer::{Kept, ResumeBuffer};
use super::encoder::{Lanes, Wire};
use super::handle::{Ack, AttachMsg, Attached, Msg, Resume, Session, SnapshotMsg};
use super::limits::SessionLimits;
use super::outbox::{Outbox, SESSION_ENDED, TAKEN_OVER, TOO_SLOW};
use super::registry::Sessions;
use super::sequencing::{PendingReplies, Snapshots};
use super::topics::TopicSet;
use super::ServerInfo;
use crate::hub::{Hub, Role};
use crate::party::GuestId;
use crate::protocol::{self, Tail, Topic};

/// The socket a session hands its messages to.
struct Attachment {
    out: Arc<Outbox>,
    since: Instant,
}

/// A session's state, owned by whichever task drives it: nothing else locks or reads it, so
/// thousands of sessions cost no contention; the handle and the registry only send it
/// messages.
pub(super) struct Task {
    /// The handle's guest and role, copied: every change is checked against them, in
    /// every session, and the handle is another allocation away.
    guest: GuestId,
    role: Role,
    topics: TopicSet,
    buffer: ResumeBuffer,
    /// Resumed, asked something, or attached for a while: it lives the full ttl when its
    /// phone leaves; a session never in use lives `unused_ttl`.
    in_use: bool,
    /// The last hub seq this session has dealt with.
    hub_cursor: u64,
    /// The highest `after` of a reply handed to this session: the encoder had handed on
    /// every change up to it, and the session drained its lanes since, so replies up to it
    /// may go (the changes it did not see were not for it).
    handed_on: u64,
    /// The shared lane, and the hosts' lane for a host's session (see `encoder`).
    shared: Option<broadcast::Receiver<Arc<Wire>>>,
    hosts: Option<broadcast::Receiver<Arc<Wire>>>,
    replies: PendingReplies,
    snapshots: Snapshots,
    socket: Option<Attachment>,
    detached_at: Option<Instant>,
    /// Its own handle: the inbox, and where eviction reads when the phone left.
    handle: Arc<Session>,
    hub: Hub,
    info: Arc<ServerInfo>,
    limits: Arc<SessionLimits>,
    /// Where the encoder hands on: how far it has got, and the shared snapshots.
    lanes: Arc<Lanes>,
    /// Where it is listed, and under which key, to leave the list when it ends.
    registry: Weak<Sessions>,
    key: u64,
}

/// What one turn of a session came to.
pub(super) enum Turn {
    /// Dealt with; go on.
    Go,
    /// The session is over: evicted, or the server is stopping.
    End,
    /// A socket attached: the state goes to it.
    Give(oneshot::Sender<Attached>),
}

/// A session's places on the encoder's lanes (see `encoder`): the shared one, and the
/// hosts' for a host's session.
pub(super) struct Lane {
    pub(super) shared: broadcast::Receiver<Arc<Wire>>,
    pub(super) hosts: Option<broadcast::Receiver<Arc<Wire>>>,
}

/// Where a session is listed.
pub(super) struct Listed {
    pub(super) registry: Weak<Sessions>,
    pub(super) key: u64,
}

impl Task {
    /// A session with no socket yet (its handle says it is attaching).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        handle: Arc<Session>,
        topics: TopicSet,
        hub: Hub,
        info: Arc<ServerInfo>,
        limits: Arc<SessionLimits>,
        lanes: Arc<Lanes>,
        lane: Lane,
        listed: Listed,
    ) -> Task {
        Task {
            guest: handle.guest,
            role: handle.role,
            topics,
            buffer: ResumeBuffer::default(),
            in_use: false,
            hub_cursor: hub.last_seq(),
            handed_on: 0,
            shared: Some(lane.shared),
            hosts: lane.hosts,
            replies: PendingReplies::default(),
            snapshots: Snapshots::default(),
            socket: None,
            detached_at: Some(Instant::now()),
            handle,
            hub,
            info,
            limits,
            lanes,
            registry: listed.registry,
            key: listed.key,
        }
    }

    /// The session with no socket: on a task of its own, it goes on numbering and keeping
    /// what its phone misses, until a socket attaches (the state goes to it) or it has been
    /// alone for its whole ttl. Boxed: it is in the future once, not twice.
    pub(super) async fn alone(mut self: Box<Self>) {
        // The timer is keyed by its deadline, which moves when the session comes into use
        // while detached (a reply that arrives after its socket left): a timer kept for the
        // old, shorter deadline would fire at once on every turn of the loop.
        let mut expiry: Option<(Instant, Pin<Box<tokio::time::Sleep>>)> = None;
        loop {
            let deadline = self.detached_at.map(|at| at + self.limits.ttl(self.in_use));
            match (deadline, &expiry) {
                (Some(at), Some((set, _))) if at == *set => {}
                (Some(at), _) => {
                    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(at));
                    expiry = Some((at, Box::pin(sleep)));
                }
                (None, _) => expiry = None,
            }
            let turn = tokio::select! {
                biased;
                t = self.turn() => t,
                _ = async {
                    match expiry.as_mut() {
                        Some((_, sleep)) => sleep.as_mut().await,
                        None => std::future::pending().await,
                    }
                }, if expiry.is_some() => Turn::End,
            };
            match turn {
                Turn::Go => {}
                Turn::End => return self.end(),
                Turn::Give(done) => match done.send(Attached::Ok(Bound::new(self))) {
                    Ok(()) => return,
                    // The socket stopped waiting for it: the session goes on waiting.
                    Err(back) => match back.into_task() {
                        Some(task) => {
                            self = task;
                            self.detached();
                        }
                        None => return,
                    },
                },
            }
        }
    }

    /// The session is over: nothing waits on it any more, a socket it had says bye (its
    /// phone starts a new session), and the registry forgets it.
    fn end(mut self: Box<Self>) {
        self.handle.tx.close();
        if let Some(att) = self.socket.take() {
            att.out.kick(SESSION_ENDED);
        }
        if let Some(sessions) = self.registry.upgrade() {
            sessions.forget(self.key, &self.handle);
        }
    }

    /// Its socket left: the session waits for a resume, on a task of its own.
    fn let_go(mut self: Box<Self>) {
        if self.socket.is_some() {
            self.detached();
        }
        // Not from outside a runtime (a socket dropped as the runtime itself goes): then
        // nothing is left to come back to.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(self.alone());
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
        self.handle.detached.set(Some(now));
    }

    /// Waits for the session's next event and deals with it. Cancel-safe: what it waits on
    /// keeps its place in line, and once woken it does what it must without waiting.
    pub(super) async fn turn(&mut self) -> Turn {
        let (Some(shared), hosts) = (self.shared.as_mut(), self.hosts.as_mut()) else {
            return Turn::End;
        };
        let inbox = &*self.handle.tx;
        let has_hosts = hosts.is_some();
        tokio::select! {
            biased;
            msg = inbox.recv() => match msg {
                Some(m) => return self.on_msg(m),
                None => return Turn::End,
            },
            w = shared.recv() => match w {
                Ok(w) if w.gap => self.resnapshot(),
                Ok(w) => self.take_in(w),
                Err(broadcast::error::RecvError::Lagged(_)) => self.resnapshot(),
                Err(broadcast::error::RecvError::Closed) => return Turn::End,
            },
            w = async {
                match hosts {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            }, if has_hosts => match w {
                Ok(w) => self.take_in(w),
                Err(broadcast::error::RecvError::Lagged(_)) => self.resnapshot(),
                Err(broadcast::error::RecvError::Closed) => self.hosts = None,
            },
        }
        Turn::Go
    }

    /// A change from a lane. A guest's session has one lane, in hub order. A host's has two:
    /// every change below this one's seq was handed on before it, so it is in the lanes by
    /// now, and the changes are taken in by seq.
    fn take_in(&mut self, w: Arc<Wire>) {
        if self.hosts.is_none() {
            self.on_wire(w);
            return;
        }
        self.take_available(Some(w));
    }

    /// Takes in every change already in the lanes (with `first`), in hub order: before a
    /// reply, which must come after the changes up to its `after` (all handed on by then).
    fn take_available(&mut self, first: Option<Arc<Wire>>) {
        let mut batch: Vec<Arc<Wire>> = first.into_iter().collect();
        let mut lost = false;
        for rx in [self.shared.as_mut(), self.hosts.as_mut()]
            .into_iter()
            .flatten()
        {
            for _ in 0..crate::hub::CHANGE_BUFFER {
                match rx.try_recv() {
                    Ok(w) if w.gap => lost = true,
                    Ok(w) => batch.push(w),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => lost = true,
                    Err(_) => break,
                }
            }
        }
        batch.sort_by_key(|w| w.hub_seq);
        for w in batch {
            self.on_wire(w);
        }
        if lost {
            self.resnapshot();
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

    /// Whether this session's guest may see `w`: events go to all, personal changes to
    /// their guest, topic changes to subscribers (admin only to a host).
    fn wants(&self, w: &Wire) -> bool {
        if w.to.is_some_and(|g| g != self.guest) {
            return false;
        }
        match w.topic {
            None => true,
            Some(t) => self.topics.contains(t) && (!t.host_only() || self.role == Role::Host),
        }
    }

    fn on_wire(&mut self, w: Arc<Wire>) {
        if self.snapshots.busy() {
            self.snapshots.hold(w);
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
        if w.topic.is_some_and(|t| self.snapshots.covers(t, w.hub_seq)) {
            return;
        }
        if w.tail.is_some() && self.wants(&w) {
            self.emit(Kept::shared(w));
        }
    }

    fn emit(&mut self, item: Kept) {
        let seq = self.buffer.push(item.clone(), &self.limits);
        self.send(seq, &item);
    }

    fn send(&mut self, seq: u64, item: &Kept) {
        let Some(att) = &self.socket else { return };
        let frame = Utf8Bytes::from(item.render(seq));
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
            att.out.kick(TOO_SLOW);
            self.detached();
        }
    }

    /// Sends the replies whose changes have been numbered, unless a snapshot is in flight
    /// (the changes it holds back come first).
    fn flush_replies(&mut self) {
        if self.snapshots.busy() {
            return;
        }
        let cursor = self.hub_cursor.max(self.handed_on);
        while let Some(tail) = self.replies.pop_ready(cursor) {
            self.emit(Kept::own(tail));
        }
    }

    fn queue_reply(&mut self, after: u64, tail: Tail) {
        self.replies.push(after, tail);
        self.flush_replies();
    }

    fn request_snapshot(&mut self, topics: Vec<Topic>, reply: Option<Ack>) {
        self.snapshots.begin();
        let (hub, tx, guest) = (self.hub.clone(), self.handle.tx.clone(), self.guest);
        let admin = self.role == Role::Host && topics.iter().any(|t| t.host_only());
        let history = topics.contains(&Topic::History);
        tokio::spawn(async move {
            let answer = hub.snapshot(Some(guest), admin, history).await;
            let _ = tx.push(Msg::Snapshot(Box::new(SnapshotMsg {
                answer,
                topics,
                reply,
            })));
        });
    }

    fn on_msg(&mut self, m: Msg) -> Turn {
        match m {
            Msg::Attach(a) => {
                let AttachMsg { out, resume, done } = *a;
                if self.attach(out, resume) {
                    return Turn::Give(done);
                }
                let _ = done.send(Attached::TooOld);
            }
            Msg::Sub(sub) => {
                self.in_use = true;
                let (topics, reply) = *sub;
                let new: Vec<Topic> = topics
                    .into_iter()
                    .filter(|t| !t.host_only() || self.role == Role::Host)
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
                self.take_available(None);
                self.handed_on = self.handed_on.max(after);
                self.queue_reply(after, tail);
            }
            Msg::Snapshot(snap) => self.on_snapshot(*snap),
        }
        Turn::Go
    }

    /// Attaches a socket: the welcome, then what the phone missed (a resume) or the
    /// snapshots of its topics (a fresh start). False when the resume asks for messages
    /// already dropped: the phone starts a new session.
    pub(super) fn attach(&mut self, out: Arc<Outbox>, resume: Resume) -> bool {
        let (resumed, reason, replay_from) = match resume {
            Resume::From(last) => {
                if !self.buffer.can_resume(last) {
                    // The claim marked it attaching; it is as detached as before.
                    if self.socket.is_none() {
                        self.handle.detached.set(self.detached_at);
                    }
                    return false;
                }
                self.in_use = true;
                (true, None, Some(last))
            }
            Resume::Fresh { reason } => (false, reason, None),
        };
        if let Some(old) = self.socket.take() {
            // A newer socket takes over this session.
            old.out.kick(TAKEN_OVER);
        }
        let welcome = protocol::welcome(&protocol::Welcome {
            build: &self.info.build,
            features: &self.info.features,
            epoch: &self.info.epoch,
            session: &self.handle.id,
            resumed,
            reason,
            last_rid: self.handle.last_rid(),
            role: self.role,
            heartbeat_ms: self.info.heartbeat_ms,
        });
        let _ = out.frames.push(Utf8Bytes::from(welcome));
        self.socket = Some(Attachment {
            out,
            since: Instant::now(),
        });
        self.detached_at = None;
        self.handle.detached.set(None);
        match replay_from {
            Some(last) => {
                for (seq, item) in self.buffer.after(last) {
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
        true
    }

    fn on_snapshot(&mut self, snap: SnapshotMsg) {
        let SnapshotMsg {
            answer,
            topics,
            reply,
        } = snap;
        self.snapshots.end();
        match answer.result {
            Ok(s) => {
                // Changes up to the snapshot's point are in it; the ones we
                // already sent for other topics stay sent.
                let handed_on = self.lanes.handed_on_now();
                for t in &topics {
                    if self.topics.contains(*t) {
                        let kept =
                            self.lanes
                                .snapshots
                                .get(*t, answer.after_seq, handed_on, || {
                                    protocol::encode_snapshot(*t, &s)
                                });
                        self.emit(kept);
                        self.snapshots.cover(*t, answer.after_seq);
                    }
                }
            }
            Err(e) => {
                tracing::warn!("snapshot for a session failed: {e}");
            }
        }
        if let Some((rid, _)) = reply {
            self.emit(Kept::own(protocol::reply_ok(rid, serde_json::json!({}))));
        }
        for w in self.snapshots.release() {
            self.apply_wire(w);
        }
        self.flush_replies();
    }
}

/// A session driven by the task of the socket attached to it. Dropped (the socket left),
/// the session goes on waiting for its phone on a task of its own.
pub struct Bound {
    session: Arc<Session>,
    /// `None` once the session has ended or gone to another socket.
    task: Option<Box<Task>>,
}

impl Bound {
    pub(super) fn new(task: Box<Task>) -> Bound {
        Bound {
            session: task.handle.clone(),
            task: Some(task),
        }
    }

    fn into_task(mut self) -> Option<Box<Task>> {
        self.task.take()
    }

    /// The session's handle.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Attaches the socket of `out` to a session made for it: the welcome, then the
    /// snapshots of its topics.
    pub fn start(&mut self, out: Arc<Outbox>, reason: Option<&'static str>) {
        if let Some(task) = self.task.as_mut() {
            task.attach(out, Resume::Fresh { reason });
        }
    }

    /// Waits for the session's next event and deals with it: what it has for the phone is
    /// then in the socket's outbox. When the session ends, or another socket takes it over,
    /// it has kicked this socket (the outbox says how to close) and never resolves again.
    /// Cancel-safe.
    pub async fn next(&mut self) {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        match task.turn().await {
            Turn::Go => {}
            Turn::End => {
                if let Some(task) = self.task.take() {
                    task.end();
                }
            }
            Turn::Give(done) => {
                let Some(task) = self.task.take() else { return };
                if let Err(back) = done.send(Attached::Ok(Bound::new(task))) {
                    // The new socket stopped waiting: the session stays here, with no socket
                    // (this one was kicked), until this socket lets it go.
                    self.task = back.into_task();
                    if let Some(task) = self.task.as_mut() {
                        task.detached();
                    }
                }
            }
        }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.let_go();
        }
    }
}

impl Attached {
    /// The state an attach was to hand over, back from a socket that stopped waiting.
    fn into_task(self) -> Option<Box<Task>> {
        match self {
            Attached::Ok(bound) => bound.into_task(),
            Attached::TooOld => None,
        }
    }
}
