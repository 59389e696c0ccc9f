//! What the hub tells the world: the typed change stream (snapshots and deltas of
//! now playing, the queue, the room, each guest's own state, the guest list) and the
//! notification events of protocol.md §7. These are data only; the wire encoding belongs to
//! the protocol layer.

use crate::library::ScanProgress;
use crate::party::{EntryId, GuestId, PlayId, Settings, TrackId};
use crate::store::Track;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackView {
    pub id: TrackId,
    pub title: String,
    pub artist: String,
    pub album: String,
    pub duration_ms: u64,
    pub track_no: Option<u32>,
    pub has_art: bool,
}

impl From<&Track> for TrackView {
    fn from(t: &Track) -> Self {
        TrackView {
            id: t.id,
            title: t.title.clone(),
            artist: t.artist.clone(),
            album: t.album.clone(),
            duration_ms: t.duration_ms,
            track_no: t.track_no,
            has_art: t.has_art,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NowPlayingView {
    pub play_id: PlayId,
    pub track: TrackView,
    /// The requester's name ("Host" for the host's own requests); `None` for the auto-DJ.
    pub requested_by: Option<String>,
    pub requester: Option<GuestId>,
    /// Requested by a host: marked in the data, not by the name "Host".
    pub requested_by_host: bool,
    pub entry_id: Option<EntryId>,
    /// Position at `server_time_ms`; clients animate from these two.
    pub position_ms: u64,
    pub server_time_ms: i64,
    pub paused: bool,
    pub likes: u32,
    pub skip_votes: u32,
    pub skip_needed: u32,
    pub volume: u32,
    /// Picked by the auto-DJ because the queue was empty.
    pub auto: bool,
    pub dedication: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntryView {
    pub id: EntryId,
    pub track: TrackView,
    pub by: Option<String>,
    pub guest: Option<GuestId>,
    /// Requested by a host.
    pub by_host: bool,
    pub votes: u32,
    /// Placed by the host: votes no longer move it.
    pub pinned: bool,
    pub created_ms: i64,
    pub dedication: Option<String>,
}

/// A play of the `history` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItemView {
    pub play_id: PlayId,
    pub track: TrackView,
    pub requested_by: Option<String>,
    pub requester: Option<GuestId>,
    pub requested_by_host: bool,
    pub dedication: Option<String>,
    pub started_ms: i64,
    pub likes: u32,
    /// `None` while it plays.
    pub ended: Option<crate::store::PlayEnd>,
    /// What a guest's request of it would be refused for by the content rules, if anything.
    pub refused: Option<crate::party::Refusal>,
}

/// One guest's own state: sent only to that guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeView {
    pub guest_id: GuestId,
    pub name: String,
    pub role: Role,
    /// Plays this guest liked (of the play going on now).
    pub liked: Vec<PlayId>,
    pub skip_voted: Vec<PlayId>,
    /// Queue entries this guest up-voted (their own requests included).
    pub voted: Vec<EntryId>,
    pub pending_requests: Vec<EntryId>,
    pub requests_left: u32,
    pub banned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Guest,
    Host,
    /// A display paired by the host (the TV): it watches, never votes, is not in the room.
    Screen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputView {
    pub description: String,
    /// False while a stand-in plays instead of the output that was asked for.
    pub ok: bool,
}

/// One room: a snapclient as snapserver reports it (the `rooms` topic, hosts only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapRoomView {
    /// snapserver's client id (`--hostID`, or the MAC address).
    pub id: String,
    /// The name given in Snapcast's apps, else the client's host name.
    pub name: String,
    pub connected: bool,
    /// 0..=100.
    pub volume: u32,
    pub muted: bool,
    /// The client's extra delay (for speakers that lag), as snapserver holds it.
    pub latency_ms: i64,
}

/// The link to snapserver's control port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapserverView {
    /// Where it is looked for (`snapcast_rpc`).
    pub address: String,
    pub reachable: bool,
    /// Why it cannot be reached (it is tried again meanwhile).
    pub error: Option<String>,
}

/// The rooms as snapserver reports them, in the order the host page lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomsView {
    pub snapserver: SnapserverView,
    pub rooms: Vec<SnapRoomView>,
}

impl RoomsView {
    /// Before the first answer from snapserver at `address`: no rooms yet, no error yet.
    pub fn connecting(address: std::net::SocketAddr) -> RoomsView {
        RoomsView {
            snapserver: SnapserverView {
                address: address.to_string(),
                reachable: false,
                error: None,
            },
            rooms: Vec::new(),
        }
    }

    /// The changes from `old` to `self`: each room added, changed or gone, the order, the link.
    pub fn changes_from(&self, old: &RoomsView) -> Vec<Change> {
        let mut out = Vec::new();
        for r in &self.rooms {
            if old.rooms.iter().find(|o| o.id == r.id) != Some(r) {
                out.push(Change::SnapRoom {
                    id: r.id.clone(),
                    room: Some(Box::new(r.clone())),
                });
            }
        }
        for o in &old.rooms {
            if !self.rooms.iter().any(|r| r.id == o.id) {
                out.push(Change::SnapRoom {
                    id: o.id.clone(),
                    room: None,
                });
            }
        }
        let ids = |v: &RoomsView| v.rooms.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        if ids(self) != ids(old) {
            out.push(Change::SnapRoomsOrder(ids(self)));
        }
        if self.snapserver != old.snapserver {
            out.push(Change::Snapserver(self.snapserver.clone()));
        }
        out
    }
}

/// What every guest sees of the party as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    pub name: String,
    /// Distinct guests with a live connection right now (banned ones not counted).
    pub guests_connected: u32,
    pub library_size: u64,
    pub settings: Settings,
    /// Whether the music reaches the output that was asked for (details: `Change::Output`).
    pub audio_ok: bool,
    pub scan: Option<ScanView>,
    /// The auto-DJ has nothing the content rules allow, so nothing plays when the queue is
    /// empty.
    pub autodj_blocked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanView {
    pub files: u64,
    pub read: u64,
    pub done: bool,
}

impl From<ScanProgress> for ScanView {
    fn from(p: ScanProgress) -> Self {
        ScanView {
            files: p.files,
            read: p.read,
            done: p.done,
        }
    }
}

/// Where the gain of what plays came from (shown to the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GainFrom {
    /// The jukebox measured the track (or its album).
    Measured,
    /// Its ReplayGain or R128 tags.
    Tags,
    /// Neither yet: a fixed estimate.
    Estimated,
    /// Levelling is off.
    Off,
}

impl From<crate::loudness::GainSource> for GainFrom {
    fn from(s: crate::loudness::GainSource) -> Self {
        use crate::loudness::GainSource;
        match s {
            GainSource::Measured => GainFrom::Measured,
            GainSource::Tags => GainFrom::Tags,
            GainSource::Fallback => GainFrom::Estimated,
            GainSource::Off => GainFrom::Off,
        }
    }
}

/// A level in tenths (of a LUFS or a dB): what the host page shows ("-9.8 LUFS, -4.2 dB"),
/// and a whole number, so views stay comparable.
pub fn tenths(x: f32) -> i32 {
    (x * 10.0).round() as i32
}

/// The loudness of the play going on, as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayingSound {
    pub play_id: PlayId,
    /// The track's own loudness (measured, else as tagged), in tenths of a LUFS.
    pub track_lufs_tenths: Option<i32>,
    /// The levelling gain it plays with, in tenths of a dB.
    pub gain_tenths: i32,
    pub source: GainFrom,
    /// The gain is its album's.
    pub album: bool,
}

/// How far the background loudness pass has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassView {
    /// Tracks measured.
    pub measured: u64,
    /// Tracks that cannot be measured (silent or undecodable; tried again when they change).
    pub failed: u64,
    /// Tracks in the library.
    pub total: u64,
}

/// The sound as the host sees it (the `admin` topic's `sound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoundView {
    pub playing: Option<PlayingSound>,
    /// The background loudness pass (`None` before it first reports).
    pub pass: Option<PassView>,
    /// Periods the output could not be fed in time since start.
    pub underruns: u64,
    /// How long a sample takes from the player to the ear.
    pub latency_ms: u64,
}

/// A guest as the host sees it (the `admin` topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAdminView {
    pub guest_id: GuestId,
    pub name: String,
    pub role: Role,
    pub banned: bool,
    pub connected: bool,
    pub pending_requests: Vec<EntryId>,
    pub played_tonight: u32,
}

/// Facts worth a toast (protocol.md §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    TrackStarted {
        play_id: PlayId,
        track_id: TrackId,
        title: String,
        artist: String,
        requested_by: Option<String>,
        requested_by_id: Option<GuestId>,
        requested_by_host: bool,
        dedication: Option<String>,
    },
    Liked {
        play_id: PlayId,
        track_id: TrackId,
        by: String,
        by_id: GuestId,
        by_host: bool,
    },
    SkipVote {
        play_id: PlayId,
        votes: u32,
        needed: u32,
        by: String,
        by_id: GuestId,
        by_host: bool,
    },
    Skipped {
        /// `None` when the track could not even start.
        play_id: Option<PlayId>,
        track_id: TrackId,
        reason: SkipReason,
    },
    Requested {
        entry_id: EntryId,
        track_id: TrackId,
        title: String,
        artist: String,
        by: Option<String>,
        by_id: Option<GuestId>,
        by_host: bool,
        dedication: Option<String>,
    },
    HostMessage {
        text: String,
    },
    /// Only to the requester.
    YourRequestNext {
        entry_id: EntryId,
        track_id: TrackId,
        title: String,
    },
    /// Only to the requester.
    YourRequestLiked {
        play_id: PlayId,
        track_id: TrackId,
        by: String,
        by_id: GuestId,
        by_host: bool,
    },
}

/// Why a play was skipped (the `reason` of the `skipped` event, spelled the same on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The guests' skip votes reached the threshold.
    Votes,
    /// The host skipped it.
    Host,
    /// The file could not be played.
    Unplayable,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Votes => "votes",
            SkipReason::Host => "host",
            SkipReason::Unplayable => "unplayable",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::TrackStarted { .. } => "track_started",
            Event::Liked { .. } => "liked",
            Event::SkipVote { .. } => "skip_vote",
            Event::Skipped { .. } => "skipped",
            Event::Requested { .. } => "requested",
            Event::HostMessage { .. } => "host_message",
            Event::YourRequestNext { .. } => "your_request_next",
            Event::YourRequestLiked { .. } => "your_request_liked",
        }
    }
}

/// One change, in the order the hub made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    NowPlaying(Option<Box<NowPlayingView>>),
    /// An entry was added or changed (`Some`) or left the queue (`None`).
    QueueEntry {
        id: EntryId,
        entry: Option<Box<QueueEntryView>>,
    },
    QueueOrder(Vec<EntryId>),
    /// A play of the history was added or changed (`Some`) or fell off its end (`None`).
    HistoryEntry {
        id: PlayId,
        entry: Option<Box<HistoryItemView>>,
    },
    HistoryOrder(Vec<PlayId>),
    Room(Box<RoomView>),
    /// For that guest only.
    Me(Box<MeView>),
    /// For hosts only.
    Guest(Box<GuestAdminView>),
    /// For hosts only: a guest left the list (an unused one was pruned, a screen removed).
    GuestGone(GuestId),
    /// For hosts only: which audio output is in use (it may name a file path).
    Output(OutputView),
    /// For hosts only: the loudness of what plays, the loudness pass, the underruns.
    Sound(SoundView),
    /// For hosts only: a room was added or changed (`Some`) or is gone (`None`).
    SnapRoom {
        id: String,
        room: Option<Box<SnapRoomView>>,
    },
    /// For hosts only: the rooms' order.
    SnapRoomsOrder(Vec<String>),
    /// For hosts only: whether snapserver's control port answers.
    Snapserver(SnapserverView),
    Event {
        ts_ms: i64,
        /// `Some` for the personal events, which go only to that guest.
        to: Option<GuestId>,
        event: Event,
    },
}

impl Change {
    /// The guest this change is for, when it is personal.
    pub fn only_for(&self) -> Option<GuestId> {
        match self {
            Change::Me(m) => Some(m.guest_id),
            Change::Event { to, .. } => *to,
            _ => None,
        }
    }
}

/// A change with its place in the hub's single, gapless order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub change: Change,
}

/// The whole state at one point of the change order: every change with a `seq` above
/// `Answer::after_seq` of the snapshot's answer comes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub now_playing: Option<NowPlayingView>,
    pub queue: Vec<QueueEntryView>,
    pub order: Vec<EntryId>,
    /// Filled only for a snapshot that asked for the history.
    pub history: Vec<HistoryItemView>,
    pub room: RoomView,
    pub me: Option<MeView>,
    /// Filled for hosts only.
    pub guests: Vec<GuestAdminView>,
    /// For hosts only.
    pub output: OutputView,
    /// For hosts only.
    pub sound: SoundView,
    /// For hosts only, with `snapcast_rpc` set.
    pub rooms: Option<RoomsView>,
}

/// The health of the box (`GET /healthz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub library_size: u64,
    pub guests_connected: u32,
    pub output: OutputView,
    pub playing: bool,
    pub queue_len: usize,
    pub underruns: u64,
    pub latency_ms: u64,
}
