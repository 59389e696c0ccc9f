//! One session's task: it takes the encoded change stream, keeps what its guest may see,
//! numbers it, keeps it for resume, and hands it to the attached socket.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;

use super::super::mailbox::Mailbox;
use super::buffer::{Kept, ResumeBuffer};
use super::encoder::{Lanes, Wire};
use super::handle::{Ack, AttachMsg, Attached, Msg, Resume, Session, SnapshotMsg};
use super::limits::SessionLimits;
use super::outbox::{Outbox, SESSION_ENDED, TAKEN_OVER, TOO_SLOW};
use super::sequencing::{PendingReplies, Snapshots};
use super::topics::TopicSet;
use super::ServerInfo;
use crate::hub::{Hub, Role};
use crate::party::GuestId;
use crate::protocol::{self, Tail, Topic};

/// The socket a session hands its messages to.
struct Attachment {
    socket: u64,
    out: Arc<Outbox>,
    since: Instant,
}

/// A session's state, owned by its task alone: nothing else locks or reads it, so thousands
/// of sessions cost no contention; the handle and the registry only send it messages.
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
}

impl Task {
    /// A session with no socket yet (its handle says it is attaching).
    pub(super) fn new(
        handle: Arc<Session>,
        topics: TopicSet,
        hub: Hub,
        info: Arc<ServerInfo>,
        limits: Arc<SessionLimits>,
        lanes: Arc<Lanes>,
    ) -> Task {
        Task {
            guest: handle.guest,
            role: handle.role,
            topics,
            buffer: ResumeBuffer::default(),
            in_use: false,
            hub_cursor: hub.last_seq(),
            handed_on: 0,
            shared: None,
            hosts: None,
            replies: PendingReplies::default(),
            snapshots: Snapshots::default(),
            socket: None,
            detached_at: Some(Instant::now()),
            handle,
            hub,
            info,
            limits,
            lanes,
        }
    }

    /// Boxed: this future lives as long as the session, and a task held by value would be in
    /// it twice (an async fn's arguments are), for each of thousands of phones.
    pub(super) async fn run(
        mut self: Box<Self>,
        shared: broadcast::Receiver<Arc<Wire>>,
        hosts: Option<broadcast::Receiver<Arc<Wire>>>,
    ) {
        let inbox = self.handle.tx.clone();
        self.shared = Some(shared);
        self.hosts = hosts;
        self.serve(&inbox).await;
        // Nothing waits forever on a session that is gone (an attach's answer is dropped).
        inbox.close();
        // Evicted just as a socket attached: that socket says bye rather than live on a
        // session that no longer answers. Its phone reconnects and starts a new one.
        if let Some(att) = self.socket.take() {
            att.out.kick(SESSION_ENDED);
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

    async fn serve(&mut self, inbox: &Mailbox<Msg>) {
        // A timer only while no socket is attached: thousands of attached sessions need none.
        // It is keyed by its deadline, which moves when the session comes into use while
        // detached (a reply that arrives after its socket left): a timer kept for the old,
        // shorter deadline would fire at once on every turn of the loop.
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
            let (Some(shared), hosts) = (self.shared.as_mut(), self.hosts.as_mut()) else {
                return;
            };
            let has_hosts = hosts.is_some();
            tokio::select! {
                biased;
                msg = inbox.recv() => match msg {
                    Some(m) => self.on_msg(m),
                    None => return,
                },
                w = shared.recv() => match w {
                    Ok(w) if w.gap => self.resnapshot(),
                    Ok(w) => self.take_in(w),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resnapshot(),
                    Err(broadcast::error::RecvError::Closed) => return,
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
                _ = async {
                    match expiry.as_mut() {
                        Some((_, sleep)) => sleep.as_mut().await,
                        None => std::future::pending().await,
                    }
                }, if expiry.is_some() => {
                    // Detached for its whole ttl: the session ends.
                    return;
                }
            }
        }
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

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Attach(a) => self.on_attach(*a),
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
    }

    fn on_attach(&mut self, a: AttachMsg) {
        let AttachMsg {
            socket,
            out,
            resume,
            last_rid,
            done,
        } = a;
        let (resumed, reason, replay_from) = match resume {
            Resume::From(last) => {
                if !self.buffer.can_resume(last) {
                    // The claim marked it attaching; it is as detached as before.
                    if self.socket.is_none() {
                        self.handle.detached.set(self.detached_at);
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
            old.out.kick(TAKEN_OVER);
        }
        let welcome = protocol::welcome(&protocol::Welcome {
            build: &self.info.build,
            features: &self.info.features,
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
        self.handle.detached.set(None);
        let _ = done.send(Attached::Ok);
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
