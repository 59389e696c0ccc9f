//! The hub: the single owner of live party state. One task reads a closed [`Command`] inbox,
//! applies the party rules, hands the changes to the store, tells the player, and publishes
//! typed [`Change`]s. It never waits on a socket, the disk or the audio thread: the store runs
//! each command's writes and then, in the same order, publishes its changes and answers it, so
//! nothing is announced or acknowledged before it is durable, and every subscriber sees one
//! gapless order (`Published::seq`). Answers carry the `seq` of the last change published
//! before them, which lets a connection send a reply after the updates it caused.

mod api;
mod deck;
mod guests;
mod history;
mod loaded;
mod names;
mod pairing;
mod queue;
mod scan;
mod sound;
mod state;
pub mod views;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::{Config, OutputSpec};
use crate::party::{EntryId, GuestId, PlayId, Refusal, Settings, TrackId};
use crate::store::{Store, StoreError};
pub use api::{Host, Pairing, Requested, ScreenClaim};
pub use views::*;

/// Hours without a play that separate two parties ("tonight" is the latest): fairness starts
/// over after such a break, and `jukebox export` calls the plays since the last one tonight.
pub const PARTY_GAP_HOURS: u32 = 6;
/// [`PARTY_GAP_HOURS`] in ms.
pub const PARTY_GAP_MS: i64 = PARTY_GAP_HOURS as i64 * 3600 * 1000;

/// Who is acting: a guest, and whether it authenticated as a host (its token is a host's,
/// and its host login is valid). Host commands want the [`Host`] that [`Actor::as_host`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub guest: GuestId,
    pub host: bool,
}

/// The answer to `Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub guest_id: GuestId,
    pub name: String,
    pub role: Role,
    pub banned: bool,
}

/// How the hub keys an address: one device (`crate::addr::device`), as stored with bans.
pub fn address_key(ip: IpAddr) -> String {
    crate::addr::device(ip).to_string()
}

/// Limits on identities (configuration keys of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLimits {
    /// Distinct guests with a live socket from one address (shared phones); hosts and screens
    /// are not counted.
    pub guests_per_address: u32,
    /// New guest tokens a minute, all addresses together.
    pub guest_rate_total: u32,
    /// A guest that never connected is deleted this long after its token was made.
    pub unused_guest_ttl: std::time::Duration,
    /// Likes, votes and skip votes that change something, per guest: a second, and the burst.
    pub toggles_per_sec: u32,
    pub toggles_burst: u32,
}

impl GuestLimits {
    /// The configurable limits from the configuration; the toggle budget is the protocol's.
    pub fn from_limits(l: &crate::config::Limits) -> GuestLimits {
        GuestLimits {
            guests_per_address: l.guests_per_address,
            guest_rate_total: l.guest_rate_total,
            unused_guest_ttl: std::time::Duration::from_secs(u64::from(l.unused_guest_ttl)),
            toggles_per_sec: 2,
            toggles_burst: 10,
        }
    }
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits::from_limits(&crate::config::Limits::default())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestCreated {
    pub guest_id: GuestId,
    pub token: String,
    pub name: String,
}

/// A partial settings change from the host; absent fields stay as they are. It is also the
/// body of the protocol's `settings` command (unknown fields are ignored, as on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct SettingsPatch {
    pub request_limit: Option<u32>,
    pub no_repeat_minutes: Option<u32>,
    pub artist_spacing: Option<u32>,
    pub skip_min_votes: Option<u32>,
    pub skip_percent: Option<u32>,
    pub max_volume: Option<u32>,
    pub requests_paused: Option<bool>,
    pub normalize: Option<crate::party::Normalize>,
    pub loudness_lufs: Option<i32>,
    pub crossfade_s: Option<u32>,
    pub snapcast_control: Option<bool>,
    pub blocked_artists: Option<Vec<String>>,
    pub blocked_words: Option<Vec<String>>,
    pub max_track_minutes: Option<u32>,
    /// `Some(None)` (a `null` on the wire) lifts the pool; absent leaves it.
    #[serde(default, deserialize_with = "some_or_null")]
    pub pool: Option<Option<String>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn some_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

#[derive(Debug)]
pub enum Command {
    /// A guest (or, with `host`, a host) token, with no address checks: for the host login
    /// and for tools.
    CreateGuest {
        name: Option<String>,
        host: bool,
    },
    /// A guest token asked for from `addr` (`POST /api/guest`): refused to a banned address
    /// and beyond the global rate of new guests.
    NewGuest {
        name: Option<String>,
        addr: IpAddr,
    },
    Authenticate {
        token: String,
    },
    /// A socket from `addr` says hello with `token`: authenticates, applies the per-address
    /// limits and counts the socket (uncounted by dropping [`Hub::connection`]'s guard).
    Connect {
        token: String,
        addr: Option<IpAddr>,
    },
    /// A TV asks to be paired: a short code to show, and the claim it polls with.
    StartPairing,
    /// The host typed the code a TV shows: that TV becomes a screen.
    PairScreen {
        host: Host,
        code: String,
    },
    /// The TV polls with its claim: the screen token once the host paired it.
    ClaimScreen {
        claim: String,
    },
    /// The host removes a screen: its token stops working.
    RemoveScreen {
        host: Host,
        guest: GuestId,
    },
    SetName {
        actor: Actor,
        name: String,
    },
    Like {
        actor: Actor,
        play_id: PlayId,
        on: bool,
    },
    VoteSkip {
        actor: Actor,
        play_id: PlayId,
    },
    Request {
        actor: Actor,
        track_id: TrackId,
        /// "for Anna", as given (the hub checks it).
        dedication: Option<String>,
    },
    Vote {
        actor: Actor,
        entry_id: EntryId,
        on: bool,
    },
    Play {
        host: Host,
    },
    Pause {
        host: Host,
    },
    /// Skip the play going on; with `play_id`, only if that is still the one (a late tap
    /// never skips the next song).
    Skip {
        host: Host,
        play_id: Option<PlayId>,
    },
    Seek {
        host: Host,
        position_ms: u64,
    },
    SetVolume {
        host: Host,
        volume: u32,
    },
    Remove {
        host: Host,
        entry_id: EntryId,
    },
    Move {
        host: Host,
        entry_id: EntryId,
        to: usize,
    },
    Ban {
        host: Host,
        guest: GuestId,
        on: bool,
    },
    Settings {
        host: Host,
        patch: SettingsPatch,
    },
    Announce {
        host: Host,
        text: String,
    },
    Rescan {
        host: Host,
    },
    /// The whole state, consistent with the change stream; `me` for `guest`, the guest list
    /// when `admin`, the history when `history`.
    Snapshot {
        guest: Option<GuestId>,
        admin: bool,
        history: bool,
    },
    Status,
    /// The rooms as snapserver reports them now (`crate::rooms` tells, never a front end).
    Rooms(Box<RoomsView>),
}

/// The inbox's answers. Front ends never match on them: the typed methods of [`Hub`] (in
/// `api`) read each command's own.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done,
    Guest(GuestCreated),
    Identity(Option<Identity>),
    /// A request was admitted: a new entry, or an up-vote on the one already queued.
    Requested {
        entry_id: EntryId,
        upvoted: bool,
    },
    Snapshot(Box<Snapshot>),
    Status(Status),
    /// A pairing started: the code for the TV to show and the secret it claims with.
    Pairing {
        code: String,
        claim: String,
        expires_in_ms: u64,
    },
    /// Not paired yet: ask again.
    PairingPending,
    /// The host paired a screen.
    Paired {
        guest_id: GuestId,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("only the host can do that")]
    Forbidden,
    #[error("you have been removed from this party by the host")]
    Banned,
    #[error("this device was removed from the party by the host")]
    AddressBanned,
    #[error("a screen only shows the party: it cannot vote, like, request or skip")]
    Screen,
    #[error("open the party on your phone to vote, like or request (no live connection)")]
    NotConnected,
    #[error(
        "too many guests on this address ({0} at most); close the jukebox on another phone or tab"
    )]
    TooManyGuests(u32),
    #[error("{message}")]
    RateLimited {
        message: &'static str,
        retry_after_ms: u64,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("that song already ended")]
    StalePlay,
    #[error("{field}: {message}")]
    BadRequest {
        field: &'static str,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// Nothing of the change was saved, for a reason guests may be told.
    #[error("could not save: the jukebox's storage {0}; nothing was changed")]
    NotSaved(crate::store::Storage),
    #[error("the jukebox is shutting down")]
    Unavailable,
}

impl HubError {
    /// The stable protocol error code.
    pub fn code(&self) -> crate::protocol::ErrorCode {
        use crate::protocol::ErrorCode;
        match self {
            HubError::Refused(r) => r.code(),
            HubError::Forbidden
            | HubError::Banned
            | HubError::AddressBanned
            | HubError::Screen
            | HubError::NotConnected => ErrorCode::Forbidden,
            HubError::TooManyGuests(_) | HubError::RateLimited { .. } => ErrorCode::RateLimited,
            HubError::NotFound(_) => ErrorCode::NotFound,
            HubError::StalePlay => ErrorCode::StalePlay,
            HubError::BadRequest { .. } => ErrorCode::BadRequest,
            HubError::Internal(_) | HubError::NotSaved(_) | HubError::Unavailable => {
                ErrorCode::Internal
            }
        }
    }
}

/// A command's outcome, and the `seq` of the last change published before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T = Reply> {
    pub result: Result<T, HubError>,
    pub after_seq: u64,
}

struct Envelope {
    cmd: Command,
    reply: oneshot::Sender<Answer>,
}

/// Numbers changes and sends them out. Used only from the store thread (in commit order).
pub struct Publisher {
    seq: AtomicU64,
    tx: broadcast::Sender<Arc<Published>>,
    /// The content rules in force, for the search to mark what they refuse.
    rules: std::sync::RwLock<Arc<crate::party::Rules>>,
}

impl Publisher {
    fn set_rules(&self, rules: crate::party::Rules) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }

    fn publish(&self, changes: Vec<Change>) {
        for change in changes {
            let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
            // No subscribers is fine: nobody is listening yet.
            let _ = self.tx.send(Arc::new(Published { seq, change }));
        }
    }
    fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }
}

/// How many changes a subscriber may fall behind before it must re-snapshot.
pub const CHANGE_BUFFER: usize = 4096;
/// Commands waiting for the hub; senders wait when it is full (back-pressure, not loss).
const INBOX: usize = 4096;

/// A cheap, cloneable handle to the hub.
#[derive(Clone)]
pub struct Hub {
    tx: mpsc::Sender<Envelope>,
    changes: broadcast::Sender<Arc<Published>>,
    publisher: Arc<Publisher>,
    internal: mpsc::UnboundedSender<state::Internal>,
}

/// What the hub needs to start.
pub struct HubConfig {
    pub name: String,
    pub music: PathBuf,
    pub output: OutputSpec,
    pub settings: Settings,
    pub explicit_settings: Vec<&'static str>,
    pub guest_limits: GuestLimits,
    /// snapserver's control port (`snapcast_rpc`): the `rooms` topic is served.
    pub snapcast_rpc: Option<std::net::SocketAddr>,
}

impl HubConfig {
    pub fn from_config(c: &Config, music: PathBuf) -> HubConfig {
        HubConfig {
            name: c.name.clone(),
            music,
            output: c.output.clone().with_snapcast_buffer(c.snapcast_buffer_ms),
            settings: c.settings.clone(),
            explicit_settings: c.explicit_settings.clone(),
            guest_limits: GuestLimits::from_limits(&c.limits),
            snapcast_rpc: c.snapcast_rpc,
        }
    }
}

impl Hub {
    /// Loads the state from the store, starts the player and the hub task, and resumes
    /// whatever was playing when the jukebox stopped.
    pub async fn start(cfg: HubConfig, store: Store) -> Result<(Hub, HubTask), StoreError> {
        let (tx, rx) = mpsc::channel(INBOX);
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        let publisher = Arc::new(Publisher {
            seq: AtomicU64::new(0),
            tx: changes.clone(),
            rules: Default::default(),
        });
        let loaded = loaded::Loaded::load(&store, state::wall_clock_ms()).await?;
        let engine = state::State::new(cfg, store, loaded, publisher.clone(), internal_tx.clone())?;
        let task = tokio::spawn(engine.run(rx, internal_rx));
        Ok((
            Hub {
                tx,
                changes,
                publisher,
                internal: internal_tx,
            },
            HubTask(task),
        ))
    }

    /// Sends an inbox message and waits for its answer (after its changes are durable and
    /// published). Front ends use the typed methods instead; the hub's tests drive its rules
    /// through this.
    pub async fn call(&self, cmd: Command) -> Answer {
        let (tx, rx) = oneshot::channel();
        let unavailable = Answer {
            result: Err(HubError::Unavailable),
            after_seq: self.publisher.last_seq(),
        };
        if self.tx.send(Envelope { cmd, reply: tx }).await.is_err() {
            return unavailable;
        }
        rx.await.unwrap_or(unavailable)
    }

    /// The guard of a socket that [`Command::Connect`] counted (from `addr`): uncounts it on
    /// drop, however the connection ends (a panic included), for "guests connected right
    /// now" and the per-address limit.
    pub fn connection(&self, guest: GuestId, addr: Option<IpAddr>) -> Connection {
        Connection {
            guest,
            addr: addr.map(address_key),
            internal: self.internal.clone(),
        }
    }

    /// Subscribes to the change stream. Lagging behind (`RecvError::Lagged`) means: take a
    /// new snapshot; never patch over a gap.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.changes.subscribe()
    }

    /// The content rules in force now (they change when the host changes them).
    pub fn rules(&self) -> Arc<crate::party::Rules> {
        self.publisher
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The `seq` of the last change published.
    pub fn last_seq(&self) -> u64 {
        self.publisher.last_seq()
    }

    /// Stops playback (finalising the audio output), lets the store commit what is queued,
    /// and ends the hub task. Returns when the hub is gone.
    pub async fn shutdown(&self, task: HubTask) {
        let (tx, rx) = oneshot::channel();
        if self.internal.send(state::Internal::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let _ = task.0.await;
    }
}

/// A live socket, counted while this guard lives.
pub struct Connection {
    guest: GuestId,
    addr: Option<String>,
    internal: mpsc::UnboundedSender<state::Internal>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self
            .internal
            .send(state::Internal::SocketClosed(self.guest, self.addr.take()));
    }
}

/// The hub's task; give it back to [`Hub::shutdown`].
pub struct HubTask(tokio::task::JoinHandle<()>);
