//! The hub's typed front door: one method per thing a front end (the websocket, the HTTP API,
//! the coming MPD front end) may ask, each with its own result type. The [`Command`] inbox
//! behind them is the hub's own message format.
//!
//! "Only the host" is decided here, once, by type: the host's methods take a [`Host`], which
//! only [`Actor::as_host`] makes, from an actor that authenticated as a host.

use std::net::IpAddr;

use super::{
    Actor, Answer, Command, GuestCreated, Hub, HubError, Identity, Reply, SettingsPatch, Snapshot,
    Status,
};
use crate::party::{EntryId, GuestId, PlayId, TrackId};

/// Proof that the actor is a host: the only way to reach the host's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    guest: GuestId,
}

impl Host {
    /// The host's own guest id.
    pub fn guest(self) -> GuestId {
        self.guest
    }
}

impl Actor {
    /// The host proof, when this actor authenticated as a host.
    pub fn as_host(&self) -> Option<Host> {
        self.host.then_some(Host { guest: self.guest })
    }
}

/// An admitted request: a new entry, or an up-vote on the one already queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub entry_id: EntryId,
    pub upvoted: bool,
}

/// A pairing started: the code for the TV to show and the secret it claims with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub code: String,
    pub claim: String,
    pub expires_in_ms: u64,
}

/// What a TV polling with its claim gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenClaim {
    /// The host paired it: its screen token (given once).
    Paired(GuestCreated),
    /// Not paired yet: ask again.
    Pending,
}

impl Answer {
    /// The typed answer of a command whose reply `pick` reads. The hub answers each command
    /// with the one reply its handler returns; another is a bug, never the client's fault.
    fn typed<T>(self, pick: impl FnOnce(Reply) -> Result<T, Reply>) -> Answer<T> {
        Answer {
            result: self.result.and_then(|r| {
                pick(r).map_err(|other| HubError::Internal(format!("unexpected answer {other:?}")))
            }),
            after_seq: self.after_seq,
        }
    }
}

fn done(r: Reply) -> Result<(), Reply> {
    match r {
        Reply::Done => Ok(()),
        other => Err(other),
    }
}

impl Hub {
    async fn ask<T>(
        &self,
        cmd: Command,
        pick: impl FnOnce(Reply) -> Result<T, Reply>,
    ) -> Answer<T> {
        self.call(cmd).await.typed(pick)
    }

    async fn done(&self, cmd: Command) -> Answer<()> {
        self.ask(cmd, done).await
    }

    // Identities.

    /// A guest (or, with `host`, a host) token, with no address checks: for the host login
    /// and for tools.
    pub async fn create_guest(&self, name: Option<String>, host: bool) -> Answer<GuestCreated> {
        self.ask(Command::CreateGuest { name, host }, guest).await
    }

    /// A guest token asked for from `addr`: refused to a banned address and beyond the
    /// global rate of new guests.
    pub async fn new_guest(&self, name: Option<String>, addr: IpAddr) -> Answer<GuestCreated> {
        self.ask(Command::NewGuest { name, addr }, guest).await
    }

    /// Who a token is, if anybody.
    pub async fn authenticate(&self, token: String) -> Answer<Option<Identity>> {
        self.ask(Command::Authenticate { token }, identity).await
    }

    /// A socket from `addr` says hello with `token`: authenticates, applies the per-address
    /// limits and counts the socket (uncounted by dropping [`Hub::connection`]'s guard).
    pub async fn connect(&self, token: String, addr: Option<IpAddr>) -> Answer<Option<Identity>> {
        self.ask(Command::Connect { token, addr }, identity).await
    }

    /// A TV asks to be paired.
    pub async fn start_pairing(&self) -> Answer<Pairing> {
        self.ask(Command::StartPairing, |r| match r {
            Reply::Pairing {
                code,
                claim,
                expires_in_ms,
            } => Ok(Pairing {
                code,
                claim,
                expires_in_ms,
            }),
            other => Err(other),
        })
        .await
    }

    /// The TV polls with its claim.
    pub async fn claim_screen(&self, claim: String) -> Answer<ScreenClaim> {
        self.ask(Command::ClaimScreen { claim }, |r| match r {
            Reply::Guest(g) => Ok(ScreenClaim::Paired(g)),
            Reply::PairingPending => Ok(ScreenClaim::Pending),
            other => Err(other),
        })
        .await
    }

    // Reading.

    /// The whole state, consistent with the change stream; `me` for `guest`, the guest list
    /// when `admin`, the last plays when `history` (50 of them: only for who shows them).
    pub async fn snapshot(
        &self,
        guest: Option<GuestId>,
        admin: bool,
        history: bool,
    ) -> Answer<Box<Snapshot>> {
        let cmd = Command::Snapshot {
            guest,
            admin,
            history,
        };
        self.ask(cmd, |r| match r {
            Reply::Snapshot(s) => Ok(s),
            other => Err(other),
        })
        .await
    }

    /// The health of the box.
    pub async fn status(&self) -> Answer<Status> {
        self.ask(Command::Status, |r| match r {
            Reply::Status(s) => Ok(s),
            other => Err(other),
        })
        .await
    }

    // Every guest's.

    pub async fn set_name(&self, actor: Actor, name: String) -> Answer<()> {
        self.done(Command::SetName { actor, name }).await
    }

    pub async fn like(&self, actor: Actor, play_id: PlayId, on: bool) -> Answer<()> {
        self.done(Command::Like { actor, play_id, on }).await
    }

    pub async fn vote_skip(&self, actor: Actor, play_id: PlayId) -> Answer<()> {
        self.done(Command::VoteSkip { actor, play_id }).await
    }

    pub async fn request(
        &self,
        actor: Actor,
        track_id: TrackId,
        dedication: Option<String>,
    ) -> Answer<Requested> {
        let cmd = Command::Request {
            actor,
            track_id,
            dedication,
        };
        self.ask(cmd, |r| match r {
            Reply::Requested { entry_id, upvoted } => Ok(Requested { entry_id, upvoted }),
            other => Err(other),
        })
        .await
    }

    pub async fn vote(&self, actor: Actor, entry_id: EntryId, on: bool) -> Answer<()> {
        self.done(Command::Vote {
            actor,
            entry_id,
            on,
        })
        .await
    }

    // The host's.

    pub async fn play(&self, host: Host) -> Answer<()> {
        self.done(Command::Play { host }).await
    }

    pub async fn pause(&self, host: Host) -> Answer<()> {
        self.done(Command::Pause { host }).await
    }

    /// Skips the play going on; with `play_id`, only if that is still the one.
    pub async fn skip(&self, host: Host, play_id: Option<PlayId>) -> Answer<()> {
        self.done(Command::Skip { host, play_id }).await
    }

    pub async fn seek(&self, host: Host, position_ms: u64) -> Answer<()> {
        self.done(Command::Seek { host, position_ms }).await
    }

    pub async fn set_volume(&self, host: Host, volume: u32) -> Answer<()> {
        self.done(Command::SetVolume { host, volume }).await
    }

    pub async fn remove(&self, host: Host, entry_id: EntryId) -> Answer<()> {
        self.done(Command::Remove { host, entry_id }).await
    }

    pub async fn move_entry(&self, host: Host, entry_id: EntryId, to: usize) -> Answer<()> {
        self.done(Command::Move { host, entry_id, to }).await
    }

    pub async fn ban(&self, host: Host, guest: GuestId, on: bool) -> Answer<()> {
        self.done(Command::Ban { host, guest, on }).await
    }

    pub async fn settings(&self, host: Host, patch: SettingsPatch) -> Answer<()> {
        self.done(Command::Settings { host, patch }).await
    }

    pub async fn announce(&self, host: Host, text: String) -> Answer<()> {
        self.done(Command::Announce { host, text }).await
    }

    pub async fn rescan(&self, host: Host) -> Answer<()> {
        self.done(Command::Rescan { host }).await
    }

    /// The rooms as snapserver now reports them (from `crate::rooms`): hosts see what
    /// changed, before this answers.
    pub async fn set_rooms(&self, rooms: super::RoomsView) -> Answer<()> {
        self.done(Command::Rooms(Box::new(rooms))).await
    }

    /// The host typed the code a TV shows: that TV becomes a screen (its guest id).
    pub async fn pair_screen(&self, host: Host, code: String) -> Answer<GuestId> {
        self.ask(Command::PairScreen { host, code }, |r| match r {
            Reply::Paired { guest_id } => Ok(guest_id),
            other => Err(other),
        })
        .await
    }

    /// The host removes a screen: its token stops working.
    pub async fn remove_screen(&self, host: Host, guest: GuestId) -> Answer<()> {
        self.done(Command::RemoveScreen { host, guest }).await
    }
}

fn guest(r: Reply) -> Result<GuestCreated, Reply> {
    match r {
        Reply::Guest(g) => Ok(g),
        other => Err(other),
    }
}

fn identity(r: Reply) -> Result<Option<Identity>, Reply> {
    match r {
        Reply::Identity(i) => Ok(i),
        other => Err(other),
    }
}
