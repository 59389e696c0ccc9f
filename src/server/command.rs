//! One path per command: the protocol's typed commands run against the hub's typed methods
//! (and the login's, and the library search), for the websocket and the HTTP API alike. The
//! answer is the reply's `data`, built in `protocol::outgoing`; only a [`Host`] reaches the
//! host's commands, and only a host [`Actor`](crate::hub::Actor) has one.

use serde_json::Value;

use super::AppState;
use crate::hub::{Actor, Answer, Host, HubError};
use crate::protocol::{self, ErrorCode, HostCmd, SearchQuery, WireError};

/// A command's reply data, and the `seq` of the last change published before it.
pub struct Outcome {
    pub result: Result<Value, WireError>,
    pub after_seq: u64,
}

impl Outcome {
    fn of<T>(answer: Answer<T>, data: impl FnOnce(T) -> Value) -> Outcome {
        Outcome {
            result: answer.result.map(data).map_err(|e| wire(&e)),
            after_seq: answer.after_seq,
        }
    }

    /// Answered outside the hub (the login, the search): nothing of the hub's to wait for.
    fn now(result: Result<Value, WireError>) -> Outcome {
        Outcome {
            result,
            after_seq: 0,
        }
    }
}

/// A hub error as the wire says it; what failed inside goes to the log only.
fn wire(e: &HubError) -> WireError {
    if matches!(e, HubError::Internal(_)) {
        tracing::error!("a command failed: {e}");
    }
    WireError::from(e)
}

fn done(_: ()) -> Value {
    protocol::outgoing::done()
}

/// A guest's command (any actor): like, skip vote, request, vote, name.
pub async fn guest(state: &AppState, actor: Actor, cmd: protocol::Cmd) -> Option<Outcome> {
    use protocol::Cmd;
    let hub = &state.hub;
    Some(match cmd {
        Cmd::Like { play_id, on } => Outcome::of(hub.like(actor, play_id, on).await, done),
        Cmd::VoteSkip { play_id } => Outcome::of(hub.vote_skip(actor, play_id).await, done),
        Cmd::Request {
            track_id,
            dedication,
        } => Outcome::of(hub.request(actor, track_id, dedication).await, |r| {
            protocol::outgoing::requested(&r)
        }),
        Cmd::Vote { entry_id, on } => Outcome::of(hub.vote(actor, entry_id, on).await, done),
        Cmd::SetName { name } => Outcome::of(hub.set_name(actor, name).await, done),
        Cmd::Search(q) => Outcome::now(search(state, q).await),
        Cmd::Sub { .. } | Cmd::Unsub { .. } | Cmd::Host(_) => return None,
    })
}

/// A host's command.
pub async fn host(state: &AppState, host: Host, cmd: HostCmd) -> Outcome {
    let hub = &state.hub;
    match cmd {
        HostCmd::Play => Outcome::of(hub.play(host).await, done),
        HostCmd::Pause => Outcome::of(hub.pause(host).await, done),
        HostCmd::Skip { play_id } => Outcome::of(hub.skip(host, play_id).await, done),
        HostCmd::Seek { position_ms } => Outcome::of(hub.seek(host, position_ms).await, done),
        HostCmd::SetVolume { volume } => Outcome::of(hub.set_volume(host, volume).await, done),
        HostCmd::Remove { entry_id } => Outcome::of(hub.remove(host, entry_id).await, done),
        HostCmd::Move { entry_id, to } => {
            Outcome::of(hub.move_entry(host, entry_id, to).await, done)
        }
        HostCmd::Ban { guest_id, on } => Outcome::of(hub.ban(host, guest_id, on).await, done),
        HostCmd::Settings(patch) => Outcome::of(hub.settings(host, patch).await, done),
        HostCmd::Announce { text } => Outcome::of(hub.announce(host, text).await, done),
        HostCmd::Rescan => Outcome::of(hub.rescan(host).await, done),
        HostCmd::PairScreen { code } => Outcome::of(
            hub.pair_screen(host, code).await,
            protocol::outgoing::paired,
        ),
        HostCmd::RemoveScreen { guest_id } => {
            Outcome::of(hub.remove_screen(host, guest_id).await, done)
        }
        HostCmd::HostSessions => Outcome::now(Ok(host_sessions(state, host))),
        HostCmd::Logout { guest_id } => {
            Outcome::now(logout(state, Some(vec![guest_id.unwrap_or(host.guest())])).await)
        }
        HostCmd::LogoutAll => Outcome::now(logout(state, None).await),
        HostCmd::RoomVolume { room, volume } => {
            set_room(state, room, crate::rooms::Set::Volume(volume)).await
        }
        HostCmd::RoomMute { room, on } => set_room(state, room, crate::rooms::Set::Mute(on)).await,
    }
}

/// A room's volume or mute, through snapserver; answered after the rooms show it.
async fn set_room(state: &AppState, room: String, set: crate::rooms::Set) -> Outcome {
    use crate::rooms::RoomsError;
    let Some(rooms) = &state.rooms else {
        let mut e = WireError::new(
            ErrorCode::NotFound,
            "no rooms: the jukebox is not connected to snapserver (set snapcast_rpc)",
        );
        e.field = Some("room".into());
        return Outcome::now(Err(e));
    };
    match rooms.set(room, set).await {
        Ok(after_seq) => Outcome {
            result: Ok(protocol::outgoing::done()),
            after_seq,
        },
        Err(e) => {
            let code = match e {
                RoomsError::NotFound(_) => ErrorCode::NotFound,
                RoomsError::Unreachable { .. } | RoomsError::Refused(_) => ErrorCode::Internal,
            };
            let mut w = WireError::new(code, e.to_string());
            if code == ErrorCode::NotFound {
                w.field = Some("room".into());
            }
            Outcome::now(Err(w))
        }
    }
}

/// The host logins and the failed logins lately.
pub fn host_sessions(state: &AppState, host: Host) -> Value {
    crate::login::sessions_data(
        &state.login.sessions.list(),
        host.guest(),
        state.login.pin.failed_logins(),
    )
}

/// Ends the host logins of `guests` (all of them with `None`).
async fn logout(
    state: &AppState,
    guests: Option<Vec<crate::party::GuestId>>,
) -> Result<Value, WireError> {
    let one = guests.is_some();
    match state.login.sessions.revoke(guests).await {
        Ok(0) if one => {
            let mut e = WireError::new(ErrorCode::NotFound, "no such host login");
            e.field = Some("guest_id".into());
            Err(e)
        }
        Ok(n) => Ok(protocol::outgoing::logged_out(n)),
        Err(e) => {
            tracing::error!("host sessions: {e}");
            Err(WireError::new(
                ErrorCode::Internal,
                "the host logins could not be changed",
            ))
        }
    }
}

/// One page of the library search (the websocket's `search` and `GET /api/search`).
pub async fn search(state: &AppState, q: SearchQuery) -> Result<Value, WireError> {
    let (fetch, offset) = (q.fetch(), q.offset);
    let text = q.q.clone();
    match state
        .store
        .read(move |db| db.search(&text, fetch, offset))
        .await
    {
        Ok(mut tracks) => {
            let next = q.page(&mut tracks);
            Ok(protocol::search_results(&tracks, next, &state.hub.rules()))
        }
        Err(e) => {
            tracing::error!("a search failed: {e}");
            Err(WireError::new(ErrorCode::Internal, "internal error"))
        }
    }
}
