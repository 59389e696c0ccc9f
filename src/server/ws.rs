//! One websocket: the hello handshake, then a reader that decodes, validates and calls the hub,
//! and a writer that sends what the session hands it. Liveness (ping after 20 s of quiet,
//! close after 50 s of silence), frame limits, bad-frame and rate limits, and every close
//! preceded by `bye` (protocol.md §8–10). No party rule is decided here.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use serde_json::json;
use tokio::sync::mpsc;

use super::session::{Attached, Outbound, Resume, Session};
use super::AppState;
use crate::hub::{Actor, Command, HubError, Reply, Role};
use crate::protocol::{self, Cmd, Incoming, Topic, WireError};

static SOCKETS: AtomicU64 = AtomicU64::new(1);

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

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            hello_timeout: Duration::from_secs(5),
            ping_after: Duration::from_secs(20),
            silence: Duration::from_secs(50),
            write_timeout: Duration::from_secs(10),
            bad_frames_per_minute: 20,
            sockets_per_guest: 5,
            rate_per_sec: 20,
            rate_burst: 60,
        }
    }
}

/// Serves one upgraded socket. `version_ok` is false when `?v=` was not 1.
pub async fn serve(socket: WebSocket, state: Arc<AppState>, version_ok: bool) {
    let (mut sink, mut stream) = socket.split();
    let limits = state.ws_limits.clone();
    let socket_id = SOCKETS.fetch_add(1, Ordering::Relaxed);

    // The writer: everything to the client goes through this queue; the session can also
    // close it out of band (`kick`) when the queue is full.
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(state.sessions.limits.socket_queue);
    let (kick, mut kicked) = tokio::sync::watch::channel(None);
    let write_timeout = limits.write_timeout;
    let writer = tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = out_rx.recv() => item,
                _ = kicked.changed() => None,
            };
            let item = match item {
                Some(item) => item,
                None => match current(&kicked) {
                    Some((code, reason, reconnect)) => Outbound::Close {
                        code,
                        reason,
                        reconnect,
                    },
                    None => return,
                },
            };
            match item {
                Outbound::Frame(text) => {
                    let sent = tokio::select! {
                        r = tokio::time::timeout(write_timeout, sink.send(Message::Text(text))) => r,
                        _ = kicked.changed() => {
                            if let Some((code, reason, reconnect)) = current(&kicked) {
                                // Queued behind what the client has not read yet: give a slow
                                // but living phone time to get it. Nobody else waits on this.
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(30),
                                    close(&mut sink, code, reason, reconnect),
                                )
                                .await;
                            }
                            return;
                        }
                    };
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            // A write blocked too long: the client is too slow.
                            let _ = tokio::time::timeout(
                                Duration::from_secs(30),
                                close(&mut sink, 4008, "too slow to keep up", true),
                            )
                            .await;
                            return;
                        }
                    }
                }
                Outbound::Close {
                    code,
                    reason,
                    reconnect,
                } => {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(30),
                        close(&mut sink, code, reason, reconnect),
                    )
                    .await;
                    return;
                }
            }
        }
    });
    let bye = |code: u16, reason: &'static str, reconnect: bool| Outbound::Close {
        code,
        reason,
        reconnect,
    };

    if !version_ok {
        let _ = out_tx
            .send(bye(
                4426,
                "unsupported protocol version; use /ws?v=1",
                false,
            ))
            .await;
        let _ = writer.await;
        return;
    }

    // The handshake: the first frame must be hello, within the deadline.
    let first = match tokio::time::timeout(limits.hello_timeout, stream.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {
            drop(out_tx);
            let _ = writer.await;
            return;
        }
        Ok(Some(Err(e))) => {
            if too_large(&e) {
                let _ = out_tx
                    .send(bye(1009, "frame too large (16 KiB at most)", true))
                    .await;
            }
            drop(out_tx);
            let _ = writer.await;
            return;
        }
        Ok(Some(Ok(_))) => Utf8Bytes::from_static(""),
        Err(_) => {
            let _ = out_tx.send(bye(4408, "no hello within 5 s", true)).await;
            let _ = writer.await;
            return;
        }
    };
    if first.len() > protocol::MAX_FRAME {
        let _ = out_tx
            .send(bye(1009, "frame too large (16 KiB at most)", true))
            .await;
        let _ = writer.await;
        return;
    }
    let Ok(Incoming::Hello(hello)) = protocol::parse(&first) else {
        let _ = out_tx
            .send(bye(4400, "the first frame must be hello", true))
            .await;
        let _ = writer.await;
        return;
    };
    if hello.v != protocol::VERSION {
        let mut e = WireError::new("unsupported_version", "this jukebox speaks protocol v1");
        e.field = Some("v".into());
        let _ = out_tx
            .send(Outbound::Frame(Utf8Bytes::from(protocol::error_frame(&e))))
            .await;
        let _ = out_tx
            .send(bye(4426, "unsupported protocol version", false))
            .await;
        let _ = writer.await;
        return;
    }
    let identity = match Box::pin(state.hub.call(Command::Authenticate {
        token: hello.token.clone(),
    }))
    .await
    .result
    {
        Ok(Reply::Identity(Some(id))) => id,
        _ => {
            let _ = out_tx.send(bye(4401, "bad or revoked token", false)).await;
            let _ = writer.await;
            return;
        }
    };
    let guest = identity.guest_id;
    let role = identity.role;

    // Too many sockets for one guest.
    let Some(_slot) = state.socket_slot(guest, limits.sockets_per_guest) else {
        let _ = out_tx
            .send(bye(4429, "too many connections for one guest", false))
            .await;
        let _ = writer.await;
        return;
    };

    let topics: Vec<Topic> = hello
        .topics
        .clone()
        .unwrap_or_else(|| vec![Topic::NowPlaying, Topic::Queue, Topic::Me, Topic::Room]);
    // Only hosts see the admin topic.
    if topics.contains(&Topic::Admin) && role != Role::Host {
        let _ = out_tx
            .send(bye(4403, "the admin topic is for the host", false))
            .await;
        let _ = writer.await;
        return;
    }

    // Resume, or a new session.
    let mut reason = None;
    let mut session: Option<Arc<Session>> = None;
    if let Some(sid) = &hello.session {
        match state.sessions.get(sid) {
            Some(s) if s.guest == guest => {
                let resume = match hello.last_seq {
                    Some(last) => Resume::From(last),
                    None => Resume::From(0),
                };
                match Box::pin(s.attach(socket_id, out_tx.clone(), kick.clone(), resume)).await {
                    Attached::Ok => session = Some(s),
                    Attached::TooOld => reason = Some("too_old"),
                }
            }
            _ => {
                reason = Some(if sid_epoch_differs(sid, &state) {
                    "epoch"
                } else {
                    "unknown_session"
                })
            }
        }
    }
    let session = match session {
        Some(s) => s,
        None => {
            let s = state.sessions.create(guest, role, topics);
            Box::pin(s.attach(
                socket_id,
                out_tx.clone(),
                kick.clone(),
                Resume::Fresh { reason },
            ))
            .await;
            s
        }
    };
    let _connection = state.hub.connect(guest);
    let actor = Actor {
        guest,
        host: role == Role::Host,
    };

    let limiter = RateLimiter::direct(
        Quota::per_second(NonZeroU32::new(limits.rate_per_sec.max(1)).expect("non-zero"))
            .allow_burst(NonZeroU32::new(limits.rate_burst.max(1)).expect("non-zero")),
    );
    let mut bad: VecDeque<Instant> = VecDeque::new();
    let mut last_in = Instant::now();
    let mut last_out = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut closing = state.closing.subscribe();

    loop {
        tokio::select! {
            _ = closing.changed() => {
                let _ = out_tx.send(bye(1001, "the jukebox is restarting", true)).await;
                break;
            }
            frame = stream.next() => {
                let frame = match frame {
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        if too_large(&e) {
                            let _ = out_tx.send(bye(1009, "frame too large (16 KiB at most)", true)).await;
                        }
                        break;
                    }
                    None => break,
                };
                last_in = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        let mut e = WireError::new("bad_request", "binary frames are not part of the protocol");
                        e.field = Some("frame".into());
                        let _ = out_tx.try_send(Outbound::Frame(Utf8Bytes::from(protocol::error_frame(&e))));
                        if too_many_bad(&mut bad, limits.bad_frames_per_minute) {
                            let _ = out_tx.send(bye(4400, "too many bad frames", true)).await;
                            break;
                        }
                        continue;
                    }
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if text.len() > protocol::MAX_FRAME {
                    let _ = out_tx.send(bye(1009, "frame too large (16 KiB at most)", true)).await;
                    break;
                }
                match protocol::parse(&text) {
                    Ok(Incoming::Ping) => {
                        let _ = out_tx.try_send(Outbound::Frame(Utf8Bytes::from_static(protocol::PONG)));
                        last_out = Instant::now();
                    }
                    Ok(Incoming::Pong) => {}
                    Ok(Incoming::Hello(_)) => {
                        let mut e = WireError::new("bad_request", "already said hello");
                        e.field = Some("cmd".into());
                        let _ = out_tx.try_send(Outbound::Frame(Utf8Bytes::from(protocol::error_frame(&e))));
                        if too_many_bad(&mut bad, limits.bad_frames_per_minute) {
                            let _ = out_tx.send(bye(4400, "too many bad frames", true)).await;
                            break;
                        }
                    }
                    Ok(Incoming::Request { rid, cmd }) => {
                        if !session.accept_rid(rid) {
                            session.reply(0, protocol::reply_err(rid, &WireError::new(
                                "duplicate", "this rid was already received")));
                            continue;
                        }
                        if let Err(not_until) = limiter.check() {
                            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                            let mut e = WireError::new("rate_limited", "slow down");
                            e.retry_after_ms = Some(wait.as_millis().max(1) as u64);
                            session.reply(0, protocol::reply_err(rid, &e));
                            continue;
                        }
                        // Boxed: the socket's own future stays small while it idles.
                        Box::pin(handle(&state, &session, actor, rid, cmd)).await;
                    }
                    Err(e) => {
                        let wire = WireError::from(&e);
                        match e.rid {
                            Some(rid) if session.accept_rid(rid) => {
                                session.reply(0, protocol::reply_err(rid, &wire));
                            }
                            _ => {
                                let _ = out_tx.try_send(Outbound::Frame(Utf8Bytes::from(protocol::error_frame(&wire))));
                            }
                        }
                        if too_many_bad(&mut bad, limits.bad_frames_per_minute) {
                            let _ = out_tx.send(bye(4400, "too many bad frames", true)).await;
                            break;
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                if writer.is_finished() {
                    break;
                }
                if last_in.elapsed() >= limits.silence {
                    let _ = out_tx.send(bye(4408, "no frame for 50 s", true)).await;
                    break;
                }
                if last_in.elapsed() >= limits.ping_after && last_out.elapsed() >= limits.ping_after {
                    let _ = out_tx.try_send(Outbound::Frame(Utf8Bytes::from_static(protocol::PING)));
                    last_out = Instant::now();
                }
            }
        }
    }
    session.detach(socket_id);
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

/// Session ids carry the epoch of the process that made them (`s_<epoch>_<random>`).
fn sid_epoch_differs(sid: &str, state: &AppState) -> bool {
    let epoch = sid.strip_prefix("s_").and_then(|r| r.split('_').next());
    epoch != Some(state.sessions.info.epoch.as_str())
}

/// A frame beyond the transport's own limit (1 MiB): it still deserves its `bye` 1009.
fn too_large(e: &axum::Error) -> bool {
    // The websocket library reports it as a capacity error; its text is the stable part we see.
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}

/// The close asked for, copied out (a watch borrow must not live across an await).
fn current(
    k: &tokio::sync::watch::Receiver<Option<(u16, &'static str, bool)>>,
) -> Option<(u16, &'static str, bool)> {
    *k.borrow()
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
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    code: u16,
    reason: &str,
    reconnect: bool,
) -> Result<(), axum::Error> {
    sink.send(Message::Text(Utf8Bytes::from(protocol::bye(
        code, reason, reconnect,
    ))))
    .await?;
    sink.send(Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_string()),
    })))
    .await?;
    sink.flush().await
}

/// Runs one request and hands its reply to the session.
async fn handle(state: &AppState, session: &Session, actor: Actor, rid: u64, cmd: Cmd) {
    if cmd.host_only() && !actor.host {
        session.reply(
            0,
            protocol::reply_err(
                rid,
                &WireError::new("forbidden", "only the host can do that"),
            ),
        );
        return;
    }
    let hub_cmd = match cmd {
        Cmd::Sub { topics } => {
            if topics.contains(&Topic::Admin) && !actor.host {
                session.reply(
                    0,
                    protocol::reply_err(
                        rid,
                        &WireError::new("forbidden", "the admin topic is for the host"),
                    ),
                );
                return;
            }
            session.subscribe(topics, Some((rid, 0)));
            return;
        }
        Cmd::Unsub { topics } => {
            session.unsubscribe(topics);
            session.reply(0, protocol::reply_ok(rid, json!({})));
            return;
        }
        Cmd::Search { q, limit, offset } => {
            let res = state
                .store
                .query(move |db| db.search(&q, limit + 1, offset))
                .await;
            let tail = match res {
                Ok(mut tracks) => {
                    let more = tracks.len() > limit as usize;
                    tracks.truncate(limit as usize);
                    protocol::reply_ok(
                        rid,
                        protocol::search_results(&tracks, more.then_some(offset + limit)),
                    )
                }
                Err(e) => protocol::reply_err(rid, &WireError::new("internal", e.to_string())),
            };
            session.reply(0, tail);
            return;
        }
        other => match super::hub_command(other, actor) {
            Some(c) => c,
            None => return,
        },
    };
    let answer = state.hub.call(hub_cmd).await;
    let tail = match answer.result {
        Ok(Reply::Requested { entry_id, upvoted }) => {
            protocol::reply_requested(rid, entry_id, upvoted)
        }
        Ok(_) => protocol::reply_ok(rid, json!({})),
        Err(e) => {
            if matches!(e, HubError::Internal(_)) {
                tracing::error!("request {rid} failed: {e}");
            }
            protocol::reply_err(rid, &WireError::from(&e))
        }
    };
    session.reply(answer.after_seq, tail);
}
