//! The live protocol v1 on the wire (docs/PROTOCOL.md): the only place that defines the JSON
//! phones see. Parses client frames into typed commands (with the failing field named), and
//! encodes the hub's changes, snapshots, replies and control messages. Contains no logic.
//!
//! Sequenced messages (`update`, `event`, `reply`) are encoded without their `seq` as a
//! [`Tail`]; a connection renders `{"cmd":…,"seq":N` + tail, so a change shared by every phone
//! is encoded once and only the number differs.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::hub::{
    Change, Event, GuestAdminView, HubError, MeView, NowPlayingView, QueueEntryView, Role,
    RoomView, SettingsPatch, Snapshot, TrackView,
};
use crate::store::Track;

pub const VERSION: u32 = 1;
/// Frames larger than this are refused with close code 1009.
pub const MAX_FRAME: usize = 16 * 1024;

// ---- identifiers ------------------------------------------------------------------------

pub fn play_id(id: i64) -> String {
    format!("p{id}")
}
pub fn entry_id(id: i64) -> String {
    format!("r{id}")
}
pub fn track_id(id: i64) -> String {
    format!("t{id}")
}
pub fn guest_id(id: i64) -> String {
    format!("g_{id}")
}

/// The canonical decimal form only: digits, no sign, no leading zero (so `t4` has one
/// spelling, and `t+4` or `t04` are not ids). Rust's integer parsing accepts both.
fn canonical<T: std::str::FromStr>(digits: &str) -> Option<T> {
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    ok.then(|| digits.parse().ok()).flatten()
}

fn parse_prefixed(s: &str, prefix: &str) -> Option<i64> {
    canonical::<i64>(s.strip_prefix(prefix)?).filter(|v| *v > 0)
}

pub fn parse_play_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "p")
}
pub fn parse_entry_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "r")
}
pub fn parse_track_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "t")
}
pub fn parse_guest_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "g_")
}

// ---- topics -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    NowPlaying,
    Queue,
    Me,
    Room,
    Admin,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Topic::NowPlaying,
        Topic::Queue,
        Topic::Me,
        Topic::Room,
        Topic::Admin,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Topic::NowPlaying => "now_playing",
            Topic::Queue => "queue",
            Topic::Me => "me",
            Topic::Room => "room",
            Topic::Admin => "admin",
        }
    }
}

// ---- client → server ------------------------------------------------------------------

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Hello {
    pub v: u32,
    pub token: String,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub last_seq: Option<u64>,
    /// Unknown topic names are ignored here, so a client written for a later version still
    /// connects (a `sub` for an unknown topic is answered `bad_request`).
    #[serde(default, deserialize_with = "known_topics")]
    pub topics: Option<Vec<Topic>>,
    /// A display nobody holds (the TV): not counted among the guests connected, so it does
    /// not raise the skip threshold.
    #[serde(default)]
    pub screen: bool,
}

fn known_topics<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Topic>>, D::Error> {
    let names: Option<Vec<String>> = Option::deserialize(d)?;
    Ok(names.map(|names| {
        names
            .iter()
            .filter_map(|n| serde_json::from_value(Value::String(n.clone())).ok())
            .collect()
    }))
}

/// A command after `hello`, with its ids already checked and converted. `HostSessions`,
/// `Logout` (one host login; the asker's own without `guest_id`) and `LogoutAll` are the
/// login's (`server::login_command`).
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Sub { topics: Vec<Topic> },
    Unsub { topics: Vec<Topic> },
    Like { play_id: i64, on: bool },
    VoteSkip { play_id: i64 },
    Request { track_id: i64 },
    Vote { entry_id: i64, on: bool },
    Search { q: String, limit: u32, offset: u32 },
    SetName { name: String },
    Play,
    Pause,
    Skip { play_id: Option<i64> },
    Seek { position_ms: u64 },
    SetVolume { volume: u32 },
    Remove { entry_id: i64 },
    Move { entry_id: i64, to: usize },
    Ban { guest_id: i64, on: bool },
    Settings(SettingsPatch),
    Announce { text: String },
    Rescan,
    HostSessions,
    Logout { guest_id: Option<i64> },
    LogoutAll,
    PairScreen { code: String },
    RemoveScreen { guest_id: i64 },
}

impl Cmd {
    /// Commands only the host may send.
    pub fn host_only(&self) -> bool {
        matches!(
            self,
            Cmd::Play
                | Cmd::Pause
                | Cmd::Skip { .. }
                | Cmd::Seek { .. }
                | Cmd::SetVolume { .. }
                | Cmd::Remove { .. }
                | Cmd::Move { .. }
                | Cmd::Ban { .. }
                | Cmd::Settings(_)
                | Cmd::Announce { .. }
                | Cmd::Rescan
                | Cmd::HostSessions
                | Cmd::Logout { .. }
                | Cmd::LogoutAll
                | Cmd::PairScreen { .. }
                | Cmd::RemoveScreen { .. }
        )
    }
}

/// One parsed client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Hello(Hello),
    Ping,
    Pong,
    Request { rid: u64, cmd: Cmd },
}

/// Why a frame was not accepted. `rid` is set when the frame had a usable one, so the answer
/// can be a `reply`; otherwise it is an unsequenced `error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub rid: Option<u64>,
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl FrameError {
    fn bad_request(rid: Option<u64>, field: &str, message: impl Into<String>) -> FrameError {
        FrameError {
            rid,
            code: "bad_request",
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
struct TopicsMsg {
    topics: Vec<Topic>,
}
#[derive(Deserialize)]
struct LikeMsg {
    play_id: String,
    #[serde(default = "yes")]
    on: bool,
}
#[derive(Deserialize)]
struct PlayMsg {
    play_id: String,
}
#[derive(Deserialize)]
struct OptPlayMsg {
    #[serde(default)]
    play_id: Option<String>,
}
#[derive(Deserialize)]
struct LogoutMsg {
    #[serde(default)]
    guest_id: Option<String>,
}
#[derive(Deserialize)]
struct TrackMsg {
    track_id: String,
}
#[derive(Deserialize)]
struct VoteMsg {
    entry_id: String,
    #[serde(default = "yes")]
    on: bool,
}
#[derive(Deserialize)]
struct SearchMsg {
    q: String,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}
#[derive(Deserialize)]
struct NameMsg {
    name: String,
}
#[derive(Deserialize)]
struct Empty {}
#[derive(Deserialize)]
struct SeekMsg {
    position_ms: u64,
}
#[derive(Deserialize)]
struct VolumeMsg {
    volume: u32,
}
#[derive(Deserialize)]
struct EntryMsg {
    entry_id: String,
}
#[derive(Deserialize)]
struct MoveMsg {
    entry_id: String,
    to: usize,
}
#[derive(Deserialize)]
struct BanMsg {
    guest_id: String,
    #[serde(default = "yes")]
    on: bool,
}
#[derive(Deserialize)]
struct TextMsg {
    text: String,
}
#[derive(Deserialize)]
struct CodeMsg {
    code: String,
}
#[derive(Deserialize)]
struct GuestMsg {
    guest_id: String,
}

/// Search cursors are opaque to clients: `c<offset>`.
pub fn cursor(offset: u32) -> String {
    format!("c{offset}")
}

pub fn parse_cursor(c: &str) -> Option<u32> {
    canonical(c.strip_prefix('c')?)
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Incoming, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FrameError {
        rid: None,
        code: "bad_json",
        field: None,
        message: format!("not JSON: {e}"),
    })?;
    let Some(obj) = value.as_object() else {
        return Err(FrameError::bad_request(
            None,
            "cmd",
            "a frame is a JSON object",
        ));
    };
    let rid = obj.get("rid").and_then(Value::as_u64);
    let Some(cmd) = obj.get("cmd").and_then(Value::as_str) else {
        return Err(FrameError::bad_request(
            rid,
            "cmd",
            "missing \"cmd\" string",
        ));
    };
    match cmd {
        "hello" => return de::<Hello>(&value, None).map(Incoming::Hello),
        "ping" => return Ok(Incoming::Ping),
        "pong" => return Ok(Incoming::Pong),
        _ => {}
    }
    if !KNOWN.contains(&cmd) {
        return Err(FrameError {
            rid,
            code: "unknown_cmd",
            field: Some("cmd".into()),
            message: format!("unknown command {:?}", truncate(cmd, 40)),
        });
    }
    let Some(rid) = rid else {
        return Err(FrameError::bad_request(
            None,
            "rid",
            "every request needs a positive integer \"rid\"",
        ));
    };
    let id = |v: Option<i64>, field: &str, what: &str| {
        v.ok_or_else(|| FrameError::bad_request(Some(rid), field, format!("not a {what} id")))
    };
    let cmd = match cmd {
        "sub" => Cmd::Sub {
            topics: body::<TopicsMsg>(&value, rid)?.topics,
        },
        "unsub" => Cmd::Unsub {
            topics: body::<TopicsMsg>(&value, rid)?.topics,
        },
        "like" => {
            let m = body::<LikeMsg>(&value, rid)?;
            Cmd::Like {
                play_id: id(parse_play_id(&m.play_id), "play_id", "play")?,
                on: m.on,
            }
        }
        "vote_skip" => {
            let m = body::<PlayMsg>(&value, rid)?;
            Cmd::VoteSkip {
                play_id: id(parse_play_id(&m.play_id), "play_id", "play")?,
            }
        }
        "request" => {
            let m = body::<TrackMsg>(&value, rid)?;
            Cmd::Request {
                track_id: id(parse_track_id(&m.track_id), "track_id", "track")?,
            }
        }
        "vote" => {
            let m = body::<VoteMsg>(&value, rid)?;
            Cmd::Vote {
                entry_id: id(parse_entry_id(&m.entry_id), "entry_id", "queue entry")?,
                on: m.on,
            }
        }
        "search" => {
            let m = body::<SearchMsg>(&value, rid)?;
            if m.q.chars().count() > 200 {
                return Err(FrameError::bad_request(
                    Some(rid),
                    "q",
                    "at most 200 characters",
                ));
            }
            let offset = match m.cursor.as_deref() {
                None => 0,
                Some(c) => parse_cursor(c).ok_or_else(|| {
                    FrameError::bad_request(Some(rid), "cursor", "not a cursor from a reply")
                })?,
            };
            Cmd::Search {
                q: m.q,
                limit: m.limit.unwrap_or(20).clamp(1, 100),
                offset,
            }
        }
        "set_name" => Cmd::SetName {
            name: body::<NameMsg>(&value, rid)?.name,
        },
        "play" => {
            body::<Empty>(&value, rid)?;
            Cmd::Play
        }
        "pause" => {
            body::<Empty>(&value, rid)?;
            Cmd::Pause
        }
        "skip" => {
            let m = body::<OptPlayMsg>(&value, rid)?;
            Cmd::Skip {
                play_id: match m.play_id {
                    Some(p) => Some(id(parse_play_id(&p), "play_id", "play")?),
                    None => None,
                },
            }
        }
        "seek" => Cmd::Seek {
            position_ms: body::<SeekMsg>(&value, rid)?.position_ms,
        },
        "set_volume" => Cmd::SetVolume {
            volume: body::<VolumeMsg>(&value, rid)?.volume,
        },
        "remove" => {
            let m = body::<EntryMsg>(&value, rid)?;
            Cmd::Remove {
                entry_id: id(parse_entry_id(&m.entry_id), "entry_id", "queue entry")?,
            }
        }
        "move" => {
            let m = body::<MoveMsg>(&value, rid)?;
            Cmd::Move {
                entry_id: id(parse_entry_id(&m.entry_id), "entry_id", "queue entry")?,
                to: m.to,
            }
        }
        "ban" => {
            let m = body::<BanMsg>(&value, rid)?;
            Cmd::Ban {
                guest_id: id(parse_guest_id(&m.guest_id), "guest_id", "guest")?,
                on: m.on,
            }
        }
        "settings" => Cmd::Settings(body::<SettingsPatch>(&value, rid)?),
        "announce" => Cmd::Announce {
            text: body::<TextMsg>(&value, rid)?.text,
        },
        "rescan" => {
            body::<Empty>(&value, rid)?;
            Cmd::Rescan
        }
        "host_sessions" => {
            body::<Empty>(&value, rid)?;
            Cmd::HostSessions
        }
        "logout" => {
            let m = body::<LogoutMsg>(&value, rid)?;
            Cmd::Logout {
                guest_id: match m.guest_id {
                    Some(g) => Some(id(parse_guest_id(&g), "guest_id", "guest")?),
                    None => None,
                },
            }
        }
        "logout_all" => {
            body::<Empty>(&value, rid)?;
            Cmd::LogoutAll
        }
        "pair_screen" => {
            let code = body::<CodeMsg>(&value, rid)?.code;
            if code.chars().count() > 32 {
                return Err(FrameError::bad_request(
                    Some(rid),
                    "code",
                    "the code the TV shows (6 digits)",
                ));
            }
            Cmd::PairScreen { code }
        }
        "remove_screen" => {
            let m = body::<GuestMsg>(&value, rid)?;
            Cmd::RemoveScreen {
                guest_id: id(parse_guest_id(&m.guest_id), "guest_id", "guest")?,
            }
        }
        _ => unreachable!("checked against KNOWN"),
    };
    Ok(Incoming::Request { rid, cmd })
}

const KNOWN: &[&str] = &[
    "sub",
    "unsub",
    "like",
    "vote_skip",
    "request",
    "vote",
    "search",
    "set_name",
    "play",
    "pause",
    "skip",
    "seek",
    "set_volume",
    "remove",
    "move",
    "ban",
    "settings",
    "announce",
    "rescan",
    "host_sessions",
    "logout",
    "logout_all",
    "pair_screen",
    "remove_screen",
];

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn de<T: for<'a> Deserialize<'a>>(v: &Value, rid: Option<u64>) -> Result<T, FrameError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." || field.is_empty() {
            "cmd".to_string()
        } else {
            field
        };
        FrameError {
            rid,
            code: "bad_request",
            field: Some(field),
            message: e.inner().to_string(),
        }
    })
}

/// A request's own fields (`cmd`, `rid` and unknown fields are ignored by the body types).
fn body<T: for<'a> Deserialize<'a>>(v: &Value, rid: u64) -> Result<T, FrameError> {
    de::<T>(v, Some(rid))
}

// ---- server → client ------------------------------------------------------------------

/// A sequenced message without its `seq`: rendered per connection by [`Tail::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub cmd: &'static str,
    /// The rest of the JSON object after `"seq":N`, starting with `,` (or empty).
    pub rest: String,
}

impl Tail {
    fn new(cmd: &'static str, body: Value) -> Tail {
        // `body` is an object; splice its members after the seq.
        let s = body.to_string();
        let inner = &s[1..s.len() - 1];
        let rest = if inner.is_empty() {
            String::new()
        } else {
            format!(",{inner}")
        };
        Tail { cmd, rest }
    }

    pub fn render(&self, seq: u64) -> String {
        format!("{{\"cmd\":\"{}\",\"seq\":{seq}{}}}", self.cmd, self.rest)
    }
}

pub fn track(t: &TrackView) -> Value {
    json!({
        "id": track_id(t.id),
        "title": t.title,
        "artist": t.artist,
        "album": t.album,
        "duration_ms": t.duration_ms,
        "track_no": t.track_no,
        "art": t.has_art.then(|| format!("/api/art/{}", track_id(t.id))),
    })
}

pub fn track_row(t: &Track) -> Value {
    track(&TrackView::from(t))
}

pub fn now_playing(n: &NowPlayingView) -> Value {
    json!({
        "play_id": play_id(n.play_id),
        "track": track(&n.track),
        "requested_by": n.requested_by,
        "requested_by_host": n.requested_by_host,
        "position_ms": n.position_ms,
        "server_time_ms": n.server_time_ms,
        "paused": n.paused,
        "likes": n.likes,
        "skip_votes": n.skip_votes,
        "skip_needed": n.skip_needed,
        "volume": n.volume,
        "auto": n.auto,
    })
}

pub fn queue_entry(e: &QueueEntryView) -> Value {
    json!({
        "id": entry_id(e.id),
        "track": track(&e.track),
        "by": e.by,
        "by_host": e.by_host,
        "votes": e.votes,
        "pinned": e.pinned,
    })
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Guest => "guest",
        Role::Host => "host",
        Role::Screen => "screen",
    }
}

pub fn me(m: &MeView) -> Value {
    json!({
        "guest_id": guest_id(m.guest_id),
        "name": m.name,
        "role": role(m.role),
        "liked": m.liked.iter().map(|p| play_id(*p)).collect::<Vec<_>>(),
        "skip_voted": m.skip_voted.iter().map(|p| play_id(*p)).collect::<Vec<_>>(),
        "voted": m.voted.iter().map(|e| entry_id(*e)).collect::<Vec<_>>(),
        "pending_requests": m.pending_requests.iter().map(|e| entry_id(*e)).collect::<Vec<_>>(),
        "requests_left": m.requests_left,
        "banned": m.banned,
    })
}

pub fn room(r: &RoomView) -> Value {
    let s = &r.settings;
    json!({
        "name": r.name,
        "guests_connected": r.guests_connected,
        "library_size": r.library_size,
        "audio_ok": r.audio_ok,
        "requests_paused": s.requests_paused,
        "request_limit": s.request_limit,
        "no_repeat_minutes": s.no_repeat_minutes,
        "artist_spacing": s.artist_spacing,
        "skip_min_votes": s.skip_min_votes,
        "skip_percent": s.skip_percent,
        "volume": s.volume,
        "max_volume": s.max_volume,
        "scan": r.scan.map(|p| json!({"files": p.files, "read": p.read, "done": p.done})),
    })
}

pub fn admin_guest(g: &GuestAdminView) -> Value {
    json!({
        "id": guest_id(g.guest_id),
        "name": g.name,
        "role": role(g.role),
        "banned": g.banned,
        "connected": g.connected,
        "pending_requests": g.pending_requests.iter().map(|e| entry_id(*e)).collect::<Vec<_>>(),
        "played_tonight": g.played_tonight,
    })
}

pub fn event_data(e: &Event) -> Value {
    match e {
        Event::TrackStarted {
            play_id: p,
            track_id: t,
            title,
            artist,
            requested_by,
            requested_by_host,
            ..
        } => json!({"play_id": play_id(*p), "track_id": track_id(*t), "title": title,
                    "artist": artist, "requested_by": requested_by,
                    "requested_by_host": requested_by_host}),
        Event::Liked {
            play_id: p,
            track_id: t,
            by,
            by_host,
            ..
        }
        | Event::YourRequestLiked {
            play_id: p,
            track_id: t,
            by,
            by_host,
            ..
        } => {
            json!({"play_id": play_id(*p), "track_id": track_id(*t), "by": by, "by_host": by_host})
        }
        Event::SkipVote {
            play_id: p,
            votes,
            needed,
            by,
            by_host,
            ..
        } => json!({"play_id": play_id(*p), "votes": votes, "needed": needed, "by": by,
                    "by_host": by_host}),
        Event::Skipped {
            play_id: p,
            track_id: t,
            reason,
        } => json!({"play_id": p.map(play_id), "track_id": track_id(*t), "reason": reason}),
        Event::Requested {
            entry_id: e,
            track_id: t,
            title,
            artist,
            by,
            by_host,
            ..
        } => json!({"entry_id": entry_id(*e), "track_id": track_id(*t), "title": title,
                    "artist": artist, "by": by, "by_host": by_host}),
        Event::HostMessage { text } => json!({ "text": text }),
        Event::YourRequestNext {
            entry_id: e,
            track_id: t,
            title,
        } => json!({"entry_id": entry_id(*e), "track_id": track_id(*t), "title": title}),
    }
}

/// Which topic a change belongs to (`None` for events, which every socket gets).
pub fn change_topic(c: &Change) -> Option<Topic> {
    match c {
        Change::NowPlaying(_) => Some(Topic::NowPlaying),
        Change::QueueEntry { .. } | Change::QueueOrder(_) => Some(Topic::Queue),
        Change::Room(_) => Some(Topic::Room),
        Change::Me(_) => Some(Topic::Me),
        Change::Guest(_) | Change::GuestGone(_) | Change::Output(_) => Some(Topic::Admin),
        Change::Event { .. } => None,
    }
}

/// Encodes a hub change; `None` for changes the wire does not carry.
pub fn encode_change(c: &Change) -> Option<Tail> {
    Some(match c {
        Change::NowPlaying(n) => Tail::new(
            "update",
            json!({"topic": "now_playing", "data": n.as_deref().map(now_playing)}),
        ),
        Change::QueueEntry { id, entry } => Tail::new(
            "update",
            json!({"topic": "queue", "id": entry_id(*id), "data": entry.as_deref().map(queue_entry)}),
        ),
        Change::QueueOrder(order) => Tail::new(
            "update",
            json!({"topic": "queue", "order": order.iter().map(|e| entry_id(*e)).collect::<Vec<_>>()}),
        ),
        Change::Room(r) => Tail::new("update", json!({"topic": "room", "data": room(r)})),
        Change::Me(m) => Tail::new("update", json!({"topic": "me", "data": me(m)})),
        Change::Guest(g) => Tail::new(
            "update",
            json!({"topic": "admin", "id": guest_id(g.guest_id), "data": admin_guest(g)}),
        ),
        Change::GuestGone(id) => Tail::new(
            "update",
            json!({"topic": "admin", "id": guest_id(*id), "data": null}),
        ),
        Change::Output(_) => return None,
        Change::Event { ts_ms, event, .. } => Tail::new(
            "event",
            json!({"name": event.name(), "ts_ms": ts_ms, "data": event_data(event)}),
        ),
    })
}

/// The snapshot of one topic.
pub fn encode_snapshot(topic: Topic, s: &Snapshot) -> Tail {
    let body = match topic {
        Topic::NowPlaying => {
            json!({"topic": "now_playing", "data": s.now_playing.as_ref().map(now_playing)})
        }
        Topic::Queue => json!({
            "topic": "queue",
            "items": s.queue.iter().map(queue_entry).collect::<Vec<_>>(),
            "order": s.order.iter().map(|e| entry_id(*e)).collect::<Vec<_>>(),
        }),
        Topic::Me => json!({"topic": "me", "data": s.me.as_ref().map(me)}),
        Topic::Room => json!({"topic": "room", "data": room(&s.room)}),
        Topic::Admin => json!({
            "topic": "admin",
            "items": s.guests.iter().map(admin_guest).collect::<Vec<_>>(),
            "order": s.guests.iter().map(|g| guest_id(g.guest_id)).collect::<Vec<_>>(),
        }),
    };
    Tail::new("update", body)
}

pub fn reply_ok(rid: u64, data: Value) -> Tail {
    Tail::new("reply", json!({"rid": rid, "ok": true, "data": data}))
}

/// The reply to an admitted `request`.
pub fn reply_requested(rid: u64, entry: i64, upvoted: bool) -> Tail {
    reply_ok(
        rid,
        json!({"entry_id": entry_id(entry), "upvoted": upvoted}),
    )
}

/// The reply to `pair_screen`: the new screen's guest id.
pub fn reply_paired(rid: u64, guest: i64) -> Tail {
    reply_ok(rid, json!({"guest_id": guest_id(guest)}))
}

/// The body of a search answer (websocket reply data and `GET /api/search`).
pub fn search_results(tracks: &[Track], next_offset: Option<u32>) -> Value {
    json!({
        "results": tracks.iter().map(track_row).collect::<Vec<_>>(),
        "next_cursor": next_offset.map(cursor),
    })
}

/// The wire form of an error.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_ms: Option<u64>,
}

impl WireError {
    pub fn new(code: &'static str, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            field: None,
            retry_after_ms: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            v["field"] = json!(f);
        }
        if let Some(ms) = self.retry_after_ms {
            v["retry_after_ms"] = json!(ms);
        }
        v
    }
}

impl From<&HubError> for WireError {
    fn from(e: &HubError) -> WireError {
        let mut w = WireError::new(e.code(), e.to_string());
        // What failed inside is for the log, not for clients.
        if let HubError::Internal(_) = e {
            w.message = "internal error".into();
        }
        if let HubError::RateLimited { retry_after_ms, .. } = e {
            w.retry_after_ms = Some(*retry_after_ms);
        }
        if let HubError::BadRequest { field, message } = e {
            w.field = Some((*field).to_string());
            w.message = message.clone();
        }
        w
    }
}

impl From<&FrameError> for WireError {
    fn from(e: &FrameError) -> WireError {
        WireError {
            code: e.code,
            message: e.message.clone(),
            field: e.field.clone(),
            retry_after_ms: None,
        }
    }
}

pub fn reply_err(rid: u64, e: &WireError) -> Tail {
    Tail::new(
        "reply",
        json!({"rid": rid, "ok": false, "error": e.to_json()}),
    )
}

/// An unsequenced error: it answers no request.
pub fn error_frame(e: &WireError) -> String {
    let mut v = e.to_json();
    v["cmd"] = json!("error");
    v.to_string()
}

pub fn bye(code: u16, reason: &str, reconnect: bool) -> String {
    bye_retry(code, reason, reconnect, None)
}

/// A `bye` with `retry_after_ms`: when a phone refused for now should try again.
pub fn bye_retry(code: u16, reason: &str, reconnect: bool, retry_after_ms: Option<u64>) -> String {
    let mut v = json!({"cmd": "bye", "code": code, "reason": reason, "reconnect": reconnect});
    if let Some(ms) = retry_after_ms {
        v["retry_after_ms"] = json!(ms);
    }
    v.to_string()
}

pub const PING: &str = r#"{"cmd":"ping"}"#;
pub const PONG: &str = r#"{"cmd":"pong"}"#;

#[allow(clippy::too_many_arguments)]
pub fn welcome(
    build: &str,
    epoch: &str,
    session: &str,
    resumed: bool,
    reason: Option<&str>,
    last_rid: u64,
    role_: Role,
    heartbeat_ms: u64,
) -> String {
    let mut v = json!({
        "cmd": "welcome", "v": VERSION, "build": build, "epoch": epoch, "session": session,
        "resumed": resumed, "last_rid": last_rid, "role": role(role_), "heartbeat_ms": heartbeat_ms,
    });
    if let Some(r) = reason {
        v["reason"] = json!(r);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        assert_eq!(parse_play_id(&play_id(77)), Some(77));
        assert_eq!(parse_entry_id("r42"), Some(42));
        assert_eq!(parse_track_id("t9"), Some(9));
        assert_eq!(parse_guest_id("g_17"), Some(17));
        for bad in [
            "",
            "p",
            "p-1",
            "p0",
            "x77",
            "p77x",
            "p99999999999999999999",
            "p+4",
            "p04",
            "p 4",
            "p00",
        ] {
            assert_eq!(parse_play_id(bad), None, "{bad}");
        }
        assert_eq!(parse_track_id("t+4"), None);
        assert_eq!(parse_guest_id("g_07"), None);
        assert_eq!(parse_cursor("c0"), Some(0));
        assert_eq!(parse_cursor("c40"), Some(40));
        for bad in ["c+4", "c04", "c", "c-1", "4"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn frames_parse_into_commands() {
        let table: &[(&str, Incoming)] = &[
            (r#"{"cmd":"ping"}"#, Incoming::Ping),
            (
                r#"{"cmd":"like","rid":7,"play_id":"p77","on":true}"#,
                Incoming::Request {
                    rid: 7,
                    cmd: Cmd::Like {
                        play_id: 77,
                        on: true,
                    },
                },
            ),
            (
                r#"{"cmd":"vote","rid":10,"entry_id":"r42","extra":[1,2]}"#,
                Incoming::Request {
                    rid: 10,
                    cmd: Cmd::Vote {
                        entry_id: 42,
                        on: true,
                    },
                },
            ),
            (
                r#"{"cmd":"search","rid":11,"q":"abba","limit":20,"cursor":null}"#,
                Incoming::Request {
                    rid: 11,
                    cmd: Cmd::Search {
                        q: "abba".into(),
                        limit: 20,
                        offset: 0,
                    },
                },
            ),
            (
                r#"{"cmd":"skip","rid":3}"#,
                Incoming::Request {
                    rid: 3,
                    cmd: Cmd::Skip { play_id: None },
                },
            ),
        ];
        for (text, want) in table {
            assert_eq!(&parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        // (frame, code, rid, field)
        let table: &[(&str, &str, Option<u64>, Option<&str>)] = &[
            ("{", "bad_json", None, None),
            ("[1,2]", "bad_request", None, Some("cmd")),
            (r#"{"rid":1}"#, "bad_request", Some(1), Some("cmd")),
            (
                r#"{"cmd":"dance","rid":4}"#,
                "unknown_cmd",
                Some(4),
                Some("cmd"),
            ),
            (
                r#"{"cmd":"like","play_id":"p1"}"#,
                "bad_request",
                None,
                Some("rid"),
            ),
            (
                r#"{"cmd":"like","rid":5,"play_id":77}"#,
                "bad_request",
                Some(5),
                Some("play_id"),
            ),
            (
                r#"{"cmd":"like","rid":5,"play_id":"x"}"#,
                "bad_request",
                Some(5),
                Some("play_id"),
            ),
            (
                r#"{"cmd":"like","rid":5,"play_id":"p1","on":"yes"}"#,
                "bad_request",
                Some(5),
                Some("on"),
            ),
            (
                r#"{"cmd":"seek","rid":6,"position_ms":-1}"#,
                "bad_request",
                Some(6),
                Some("position_ms"),
            ),
            (
                r#"{"cmd":"sub","rid":6,"topics":["weather"]}"#,
                "bad_request",
                Some(6),
                Some("topics[0]"),
            ),
            (
                r#"{"cmd":"search","rid":6,"q":"a","cursor":"zz"}"#,
                "bad_request",
                Some(6),
                Some("cursor"),
            ),
        ];
        for (text, code, rid, field) in table {
            let e = parse(text).unwrap_err();
            assert_eq!(e.code, *code, "{text}: {e:?}");
            assert_eq!(e.rid, *rid, "{text}");
            assert_eq!(e.field.as_deref(), *field, "{text}: {e:?}");
        }
    }

    #[test]
    fn tails_render_with_the_seq_spliced_in() {
        let t = reply_ok(9, json!({"x": 1}));
        let v: Value = serde_json::from_str(&t.render(31)).unwrap();
        assert_eq!(
            v,
            json!({"cmd":"reply","seq":31,"rid":9,"ok":true,"data":{"x":1}})
        );
        let e = reply_err(8, &WireError::new("stale_play", "That song already ended"));
        let v: Value = serde_json::from_str(&e.render(32)).unwrap();
        assert_eq!(v["error"]["code"], "stale_play");
        assert_eq!(v["seq"], 32);
    }
}
