//! One websocket, in one task: the hello handshake, then a loop that decodes, validates and
//! calls the hub for what the client sends, drives its session and writes what the session
//! queues. Liveness (ping after 20 s of quiet, close after 50 s of silence), frame limits,
//! bad-frame and rate limits, and every close preceded by `bye` (protocol.md §8–10). No
//! party rule is decided here.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{Attached, Bound, CloseReq, Full, Outbox, Resume, Session};
use super::AppState;
use crate::hub::{Actor, HubError, Role};
use crate::protocol::{self, Cmd, ErrorCode, Incoming, Topic, WireError};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use governor::{Quota, RateLimiter};

/// The clock of every socket's rate limiter, made once: making one (what
/// `RateLimiter::direct` does) was 2 % of the CPU a phone's join costs (perf).
static CLOCK: std::sync::LazyLock<governor::clock::DefaultClock> =
    std::sync::LazyLock::new(governor::clock::DefaultClock::default);

/// How long a host socket whose login ended still writes what is queued before it closes.
const LOGGED_OUT_GRACE: Duration = Duration::from_millis(250);

/// Liveness and abuse limits of a socket.
#[derive(Debug, Clone)]
pub struct WsLimits {
    pub hello_timeout: Duration,
    pub ping_after: Duration,
    pub silence: Duration,
    pub write_timeout: Duration,
    pub bad_frames_per_minute: usize,
    pub sockets_per_guest: usize,
    /// Requests per second one connection may send, and the burst above it.
    pub rate_per_sec: u32,
    pub rate_burst: u32,
}

impl WsLimits {
    /// The configurable limits from the configuration; the rest are the protocol's.
    pub fn from_limits(l: &crate::config::Limits) -> WsLimits {
        WsLimits {
            hello_timeout: Duration::from_secs(5),
            ping_after: Duration::from_secs(20),
            silence: Duration::from_secs(50),
            write_timeout: Duration::from_secs(10),
            bad_frames_per_minute: 20,
            sockets_per_guest: l.sockets_per_guest as usize,
            rate_per_sec: l.ws_rate,
            rate_burst: l.ws_burst,
        }
    }
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits::from_limits(&crate::config::Limits::default())
    }
}

/// Serves one upgraded socket, in one task: it reads the client's frames, drives its session
/// and writes what the session queues for it. One task and no channel blocks per phone keep
/// thousands of idle phones cheap, and a change wakes one task per phone; a write that
/// blocks holds up only this phone.
///
/// The socket comes boxed: this future lives as long as the phone, and a socket held by
/// value would be in it twice (an async fn's arguments are). `_ticket` keeps the connection's
/// slot taken while the websocket lives.
pub async fn serve(
    mut socket: Box<WebSocket>,
    state: Arc<AppState>,
    version_ok: bool,
    peer: std::net::SocketAddr,
    _ticket: Option<super::transport::ConnTicket>,
) {
    let outbox = Arc::new(Outbox::default());
    // Each phase is boxed on its own, so that an idle phone holds only the live phase's
    // state, not the handshake's or the close's.
    let handshake = Box::pin(handshake(&mut socket, &outbox, &state, version_ok, peer)).await;
    let end = match handshake {
        Ok(mut ready) => {
            let end = Box::pin(live(
                &mut socket,
                &outbox,
                &state,
                &ready.session,
                ready.actor,
                &mut ready.bound,
            ))
            .await;
            // The session waits for its phone on a task of its own from here (or went on
            // with the socket that took it over).
            drop(ready);
            end
        }
        Err(end) => end,
    };
    Box::pin(finish(
        &mut socket,
        &outbox,
        end,
        state.ws_limits.write_timeout,
    ))
    .await;
}

/// A socket past its handshake: its session, and the guards that count it while it lives.
struct Ready {
    session: Arc<Session>,
    actor: Actor,
    /// The session, driven by this socket's task.
    bound: Bound,
    _slot: super::SocketSlot,
    /// Counts the socket in the hub (a screen's too; the hub does not count screens as guests).
    _connection: crate::hub::Connection,
}

/// How a connection ends.
enum End {
    /// Send what is queued, then `bye` and the close frame with this code.
    Close(CloseReq),
    /// A hello refused for now: `bye` with `retry_after_ms`, and the close frame.
    Refuse(CloseReq, u64),
    /// Send what is queued, then close quietly (the client closed, or the socket failed).
    Quiet,
    /// The socket can take no more (a write failed or timed out).
    Broken,
}

fn bye(code: u16, reason: &'static str, reconnect: bool) -> End {
    End::Close((code, reason, reconnect))
}

/// The close code and reason for a guest asking for a host-only topic.
fn for_the_host(t: Topic) -> (u16, &'static str) {
    match t {
        Topic::Rooms => (4403, "the rooms topic is for the host"),
        _ => (4403, "the admin topic is for the host"),
    }
}

/// The jukebox holds its most sessions, all with a socket: try again later (1013).
fn full() -> End {
    End::Refuse(
        (1013, "the jukebox is full; try again later", true),
        FULL_RETRY_MS,
    )
}

/// When a phone refused for lack of room should try again.
const FULL_RETRY_MS: u64 = 10_000;

/// Sends what is still queued (bounded in time), then the close.
async fn finish(socket: &mut WebSocket, outbox: &Outbox, end: End, write_timeout: Duration) {
    let (close_req, retry) = match (outbox.kicked(), end) {
        (_, End::Broken) => return,
        (Some(k), _) => (Some(k), None),
        (None, End::Close(c)) => (Some(c), None),
        (None, End::Refuse(c, ms)) => (Some(c), Some(ms)),
        (None, End::Quiet) => (None, None),
    };
    // A phone too slow to keep up gets its bye at once: what is queued waits in its session
    // for the resume.
    let slow = close_req.is_some_and(|(code, _, _)| code == 4008);
    if outbox.kicked().is_none() && !slow {
        let drained = tokio::time::timeout(write_timeout, async {
            while let Some(frame) = outbox.frames.try_pop() {
                socket.feed(Message::Text(frame)).await?;
            }
            socket.flush().await
        })
        .await;
        if !matches!(drained, Ok(Ok(()))) {
            return;
        }
    }
    if let Some((code, reason, reconnect)) = close_req {
        // Queued behind what the client has not read yet: give a slow but living phone time
        // to get it. Nobody else waits on this.
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            close(socket, code, reason, reconnect, retry),
        )
        .await;
    }
}

/// Writes `first` and the frames queued behind it. The session goes on while a write waits
/// (a slow phone's queue fills, and the session finds it too slow). `Err` when the
/// connection must end: a kick, or a socket that failed or blocked longer than the write
/// deadline.
async fn flush_out(
    socket: &mut WebSocket,
    outbox: &Outbox,
    first: Utf8Bytes,
    bound: &mut Bound,
    write_timeout: Duration,
) -> Result<(), End> {
    let mut frame = first;
    loop {
        let send = tokio::time::timeout(write_timeout, socket.send(Message::Text(frame)));
        tokio::pin!(send);
        let sent = loop {
            tokio::select! {
                biased;
                r = &mut send => break r,
                // Only a kick interrupts a write.
                _ = bound.next() => {
                    if outbox.kicked().is_some() {
                        return Err(End::Quiet);
                    }
                }
            }
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(End::Broken),
            // A write blocked too long: the client is too slow.
            Err(_) => return Err(bye(4008, "too slow to keep up", true)),
        }
        if outbox.kicked().is_some() {
            return Err(End::Quiet);
        }
        let Some(next) = outbox.frames.try_pop() else {
            return Ok(());
        };
        frame = next;
    }
}

/// The hello handshake and the session (new or resumed); `Err` says how to close instead.
async fn handshake(
    socket: &mut WebSocket,
    outbox: &Arc<Outbox>,
    state: &Arc<AppState>,
    version_ok: bool,
    peer: std::net::SocketAddr,
) -> Result<Ready, End> {
    let limits = &state.ws_limits;
    let push = |frame: Utf8Bytes| {
        let _ = outbox
            .frames
            .push_bounded(frame, state.sessions.limits.socket_queue);
    };

    if !version_ok {
        return Err(bye(
            4426,
            "unsupported protocol version; use /ws?v=1",
            false,
        ));
    }

    // The handshake: the first frame must be hello, within the deadline.
    let first = match tokio::time::timeout(limits.hello_timeout, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return Err(End::Quiet),
        Ok(Some(Err(e))) => return Err(read_error(&e)),
        Ok(Some(Ok(_))) => Utf8Bytes::from_static(""),
        Err(_) => return Err(bye(4408, "no hello within 5 s", true)),
    };
    if first.len() > protocol::MAX_FRAME {
        return Err(bye(1009, "frame too large (16 KiB at most)", true));
    }
    let Ok(Incoming::Hello(hello)) = protocol::parse(&first) else {
        return Err(bye(4400, "the first frame must be hello", true));
    };
    if hello.v != protocol::VERSION {
        let mut e = WireError::new(
            ErrorCode::UnsupportedVersion,
            "this jukebox speaks protocol v1",
        );
        e.field = Some("v".into());
        push(Utf8Bytes::from(protocol::error_frame(&e)));
        return Err(bye(4426, "unsupported protocol version", false));
    }
    // Authenticates and counts the socket in one step, so that the per-address limit holds
    // however many sockets race for it. `"screen": true` in hello is ignored: only the host
    // makes a screen (pairing), and a guest token always counts as a guest.
    let identity = match Box::pin(state.hub.connect(hello.token.clone(), Some(peer.ip())))
        .await
        .result
    {
        Ok(Some(id)) => id,
        Err(HubError::TooManyGuests(_)) => {
            return Err(bye(
                4429,
                "too many guests on this address; close the jukebox on another phone or tab",
                true,
            ))
        }
        _ => return Err(bye(4401, "bad or revoked token", false)),
    };
    // A host token is good only while its host login lasts (expiry, log out, new PIN).
    if identity.role == Role::Host && !state.login.sessions.check(identity.guest_id) {
        return Err(bye(
            4401,
            "this host login was logged out or has expired",
            false,
        ));
    }
    let guest = identity.guest_id;
    let role = identity.role;
    // Uncounts the socket however the rest goes.
    let connection = state.hub.connection(guest, Some(peer.ip()));

    // Too many sockets for one guest.
    let Some(_slot) = state.socket_slot(guest, limits.sockets_per_guest) else {
        return Err(bye(4429, "too many connections for one guest", false));
    };

    let topics: Vec<Topic> = hello
        .topics
        .clone()
        .unwrap_or_else(|| vec![Topic::NowPlaying, Topic::Queue, Topic::Me, Topic::Room]);
    // Only hosts see the admin and rooms topics.
    if let Some(t) = topics
        .iter()
        .find(|t| t.host_only())
        .filter(|_| role != Role::Host)
    {
        let (code, reason) = for_the_host(*t);
        return Err(bye(code, reason, false));
    }

    // Hellos of one guest are rate limited: each may make a session.
    if let Err(ms) = state.sessions.hello_allowed(guest) {
        return Err(End::Refuse(
            (4429, "too many connections; wait a little", true),
            ms,
        ));
    }

    // Resume, or a new session.
    let mut reason = None;
    let mut bound: Option<Bound> = None;
    if let Some(sid) = &hello.session {
        match state.sessions.claim(sid, guest) {
            Some(s) => {
                let resume = Resume::From(hello.last_seq.unwrap_or(0));
                match Box::pin(s.attach(outbox.clone(), resume)).await {
                    Attached::Ok(b) => bound = Some(b),
                    Attached::TooOld => reason = Some("too_old"),
                }
            }
            _ => {
                reason = Some(if sid_epoch_differs(sid, state) {
                    "epoch"
                } else {
                    "unknown_session"
                })
            }
        }
    }
    let bound = match bound {
        Some(b) => b,
        None => {
            let mut b = match state.sessions.create(guest, role, topics) {
                Ok(b) => b,
                Err(Full::Guest) => {
                    return Err(bye(4429, "too many sessions for one guest", false));
                }
                Err(Full::Total) => return Err(full()),
            };
            b.start(outbox.clone(), reason);
            b
        }
    };
    Ok(Ready {
        session: bound.session().clone(),
        actor: Actor {
            guest,
            host: role == Role::Host,
        },
        bound,
        _slot,
        _connection: connection,
    })
}

/// The connection after the handshake: frames in, its session driven, queued frames out,
/// liveness.
async fn live(
    socket: &mut WebSocket,
    outbox: &Outbox,
    state: &Arc<AppState>,
    session: &Session,
    actor: Actor,
    bound: &mut Bound,
) -> End {
    let limits = &state.ws_limits;
    let push = |frame: Utf8Bytes| {
        let _ = outbox
            .frames
            .push_bounded(frame, state.sessions.limits.socket_queue);
    };
    let limiter = RateLimiter::direct_with_clock(
        Quota::per_second(NonZeroU32::new(limits.rate_per_sec.max(1)).expect("non-zero"))
            .allow_burst(NonZeroU32::new(limits.rate_burst.max(1)).expect("non-zero")),
        CLOCK.clone(),
    );
    let mut bad: VecDeque<Instant> = VecDeque::new();
    let mut last_in = Instant::now();
    let mut last_out = Instant::now();
    // One timer, armed for the earliest moment something could be due (a ping, or the close
    // for silence), not a tick every second: frames only push those moments later, so when
    // it fires it looks again and re-arms. A phone that talks and listens wakes its task for
    // this once per `ping_after` instead of once a second.
    let due = |last_in: Instant, last_out: Instant| {
        let at = (last_in + limits.silence).min(last_in.max(last_out) + limits.ping_after);
        tokio::time::Instant::from_std(at)
    };
    let liveness = tokio::time::sleep_until(due(last_in, last_out));
    tokio::pin!(liveness);
    // Both watches are waited on by futures that last the whole loop: a `changed()` made
    // afresh on every turn would join its watch's list of waiters and leave it again for
    // every frame sent, two locks on lists that every socket shares. Only a host's socket
    // watches the host logins, in a box of its own: a guest's holds nothing for it.
    let mut closing = state.closing.subscribe();
    let mut closing = std::pin::pin!(async move {
        let _ = closing.changed().await;
    });
    let mut logged_out: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> =
        if actor.host {
            let mut host_logins = state.login.sessions.subscribe();
            Box::pin(async move {
                // A host logged out (or expired) elsewhere: its open sockets close too.
                while host_logins.changed().await.is_ok() && state.login.sessions.valid(actor.guest)
                {
                }
            })
        } else {
            Box::pin(std::future::pending())
        };
    // Once the host login ends: a moment for the replies on their way (a `logout` of its own
    // login), then the close. Requests read meanwhile are dropped.
    // The timer exists only then: every idle phone would carry one otherwise.
    let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;

    loop {
        // What the session, or this loop, queued goes out before anything else is waited on:
        // one turn takes a change in and writes it.
        if outbox.kicked().is_some() {
            return End::Quiet;
        }
        if let Some(frame) = outbox.frames.try_pop() {
            // Boxed: its timer and write state exist only while writing.
            let flushed = Box::pin(flush_out(
                socket,
                outbox,
                frame,
                bound,
                limits.write_timeout,
            ));
            if let Err(end) = flushed.await {
                return end;
            }
            last_out = Instant::now();
        }
        tokio::select! {
            _ = &mut closing => {
                return bye(1001, "the jukebox is restarting", true);
            }
            _ = &mut logged_out, if grace.is_none() => {
                grace = Some(Box::pin(tokio::time::sleep(LOGGED_OUT_GRACE)));
            }
            _ = async {
                match grace.as_mut() {
                    Some(sleep) => sleep.as_mut().await,
                    None => std::future::pending().await,
                }
            }, if grace.is_some() => {
                return bye(4401, "this host login was logged out or has expired", false);
            }
            // A change, a reply, a snapshot: what it queued is written at the top of the loop.
            _ = bound.next() => {}
            frame = socket.recv() => {
                let frame = match frame {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => return read_error(&e),
                    None => return End::Quiet,
                };
                last_in = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        let mut e = WireError::new(ErrorCode::BadRequest, "binary frames are not part of the protocol");
                        e.field = Some("frame".into());
                        push(Utf8Bytes::from(protocol::error_frame(&e)));
                        if too_many_bad(&mut bad, limits.bad_frames_per_minute) {
                            return bye(4400, "too many bad frames", true);
                        }
                        continue;
                    }
                    Message::Close(_) => return End::Quiet,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if text.len() > protocol::MAX_FRAME {
                    return bye(1009, "frame too large (16 KiB at most)", true);
                }
                match protocol::parse(&text) {
                    Ok(Incoming::Ping) => push(Utf8Bytes::from_static(protocol::PONG)),
                    Ok(Incoming::Pong) => {}
                    Ok(Incoming::Hello(_)) => {
                        let mut e = WireError::new(ErrorCode::BadRequest, "already said hello");
                        e.field = Some("cmd".into());
                        push(Utf8Bytes::from(protocol::error_frame(&e)));
                        if too_many_bad(&mut bad, limits.bad_frames_per_minute) {
                            return bye(4400, "too many bad frames", true);
                        }
                    }
                    Ok(Incoming::Request { .. }) if grace.is_some() => {}
                    Ok(Incoming::Request { rid, cmd }) => {
                        if !session.accept_rid(rid) {
                            session.reply(0, protocol::reply_err(rid, &WireError::new(ErrorCode::Duplicate, "this rid was already received")));
                            continue;
                        }
                        if let Err(not_until) = limiter.check() {
                            let wait = not_until.wait_time_from(governor::clock::Clock::now(&*CLOCK));
                            let mut e = WireError::new(ErrorCode::RateLimited, "slow down");
                            e.retry_after_ms = Some(wait.as_millis().max(1) as u64);
                            session.reply(0, protocol::reply_err(rid, &e));
                            continue;
                        }
                        // Boxed: the socket's own future stays small while it idles. The
                        // session goes on meanwhile; what it queues is written after.
                        let mut request = Box::pin(handle(state, session, actor, rid, cmd));
                        loop {
                            tokio::select! {
                                biased;
                                _ = &mut request => break,
                                _ = bound.next() => {}
                            }
                        }
                    }
                    Err(e) => {
                        let wire = WireError::from(&e);
                        match e.rid {
                            Some(rid) if session.accept_rid(rid) => {
                                session.reply(0, protocol::reply_err(rid, &wire));
                            }
                            _ => push(Utf8Bytes::from(protocol::error_frame(&wire))),
                        }
                        if too_many_bad(&mut bad, limits.bad_frames_per_minute) {
                            return bye(4400, "too many bad frames", true);
                        }
                    }
                }
            }
            _ = &mut liveness => {
                if last_in.elapsed() >= limits.silence {
                    return bye(4408, "no frame for 50 s", true);
                }
                if last_in.elapsed() >= limits.ping_after && last_out.elapsed() >= limits.ping_after {
                    push(Utf8Bytes::from_static(protocol::PING));
                    last_out = Instant::now();
                }
                liveness.as_mut().reset(due(last_in, last_out));
            }
        }
    }
}

/// Session ids carry the epoch of the process that made them (`s_<epoch>_<random>`).
fn sid_epoch_differs(sid: &str, state: &AppState) -> bool {
    let epoch = sid.strip_prefix("s_").and_then(|r| r.split('_').next());
    epoch != Some(state.sessions.info.epoch.as_str())
}

/// How a failed read ends the connection. A frame the client should not have sent still
/// deserves its `bye`: the socket can take it (the library closes nothing by itself). A
/// connection that failed or went away cannot.
fn read_error(e: &axum::Error) -> End {
    // The websocket library's error types are not ours to name; their texts are stable.
    let text = e.to_string();
    if text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("too big")
    {
        // Beyond the transport's own limit (1 MiB).
        bye(1009, "frame too large (16 KiB at most)", true)
    } else if text.contains("UTF-8") {
        bye(1007, "a text frame that is not UTF-8", true)
    } else if text.contains("WebSocket protocol error")
        && !text.contains("reset without closing handshake")
        && !text.contains("after closing")
        && !text.contains("after having closed")
    {
        bye(1002, "a frame that breaks the websocket protocol", true)
    } else {
        End::Quiet
    }
}

fn too_many_bad(bad: &mut VecDeque<Instant>, per_minute: usize) -> bool {
    let now = Instant::now();
    bad.push_back(now);
    while bad
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        bad.pop_front();
    }
    bad.len() > per_minute
}

async fn close(
    sink: &mut WebSocket,
    code: u16,
    reason: &str,
    reconnect: bool,
    retry_after_ms: Option<u64>,
) -> Result<(), axum::Error> {
    sink.send(Message::Text(Utf8Bytes::from(protocol::bye_retry(
        code,
        reason,
        reconnect,
        retry_after_ms,
    ))))
    .await?;
    sink.send(Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_string()),
    })))
    .await?;
    sink.flush().await?;
    if code == 1001 {
        // Shutting down: the restart does not wait for phones.
        return Ok(());
    }
    // Wait (briefly) for the client's close, reading what it still sends: a socket dropped
    // with unread input is reset, and a reset throws away the bye the client has not read.
    // A client that has read this far answers at once.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(m)) = sink.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// How long a close waits for the client's own close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Runs one request and hands its reply to the session.
async fn handle(state: &AppState, session: &Session, actor: Actor, rid: u64, cmd: Cmd) {
    let refuse = |e: &WireError| session.reply(0, protocol::reply_err(rid, e));
    let outcome = match cmd {
        Cmd::Sub { topics } => {
            if let Some(t) = topics
                .iter()
                .find(|t| t.host_only())
                .filter(|_| !actor.host)
            {
                refuse(&WireError::new(ErrorCode::Forbidden, for_the_host(*t).1));
                return;
            }
            session.subscribe(topics, Some((rid, 0)));
            return;
        }
        Cmd::Unsub { topics } => {
            session.unsubscribe(topics);
            session.reply(0, protocol::reply_ok(rid, protocol::outgoing::done()));
            return;
        }
        Cmd::Host(cmd) => match actor.as_host() {
            Some(host) => super::command::host(state, host, cmd).await,
            None => {
                refuse(&WireError::from(&HubError::Forbidden));
                return;
            }
        },
        cmd => match super::command::guest(state, actor, cmd).await {
            Some(o) => o,
            None => return,
        },
    };
    let tail = match outcome.result {
        Ok(data) => protocol::reply_ok(rid, data),
        Err(e) => protocol::reply_err(rid, &e),
    };
    // The session sends the reply after the changes it caused: they must be in its lanes
    // first (a change it will not see, another guest's, does not hold it up).
    state.sessions.handed_on(outcome.after_seq).await;
    session.reply(outcome.after_seq, tail);
}
