//! Client frames → typed commands. Every refusal names the field at fault; ids are checked
//! and converted here, so nothing past this point sees a string id.

use serde::Deserialize;
use serde_json::Value;

use super::search::SearchQuery;
use super::{ErrorCode, Topic};
use crate::hub::SettingsPatch;
use crate::ids::{BadId, EntryId, GuestId, PlayId, TrackId};

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

/// A command after `hello`, with its ids already checked and converted. What only a host
/// may send is a [`HostCmd`]: the type says it, so no front end keeps a list of its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Sub {
        topics: Vec<Topic>,
    },
    Unsub {
        topics: Vec<Topic>,
    },
    Like {
        play_id: PlayId,
        on: bool,
    },
    VoteSkip {
        play_id: PlayId,
    },
    Request {
        track_id: TrackId,
        /// `"for"`: who the request is dedicated to (the hub checks it).
        dedication: Option<String>,
    },
    Vote {
        entry_id: EntryId,
        on: bool,
    },
    Search(SearchQuery),
    SetName {
        name: String,
    },
    Host(HostCmd),
}

/// The host's commands (also `POST /api/host/{action}`). `HostSessions`, `Logout` (one host
/// login; the asker's own without `guest_id`) and `LogoutAll` are the login's.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCmd {
    Play,
    Pause,
    Skip {
        play_id: Option<PlayId>,
    },
    Seek {
        position_ms: u64,
    },
    SetVolume {
        volume: u32,
    },
    Remove {
        entry_id: EntryId,
    },
    Move {
        entry_id: EntryId,
        to: usize,
    },
    Ban {
        guest_id: GuestId,
        on: bool,
    },
    Settings(SettingsPatch),
    Announce {
        text: String,
    },
    Rescan,
    HostSessions,
    Logout {
        guest_id: Option<GuestId>,
    },
    LogoutAll,
    PairScreen {
        code: String,
    },
    RemoveScreen {
        guest_id: GuestId,
    },
    /// A room's (a snapclient's) volume, 0..=100, through snapserver.
    RoomVolume {
        room: String,
        volume: u32,
    },
    RoomMute {
        room: String,
        on: bool,
    },
}

/// The wire name of every [`CmdName`], in its order (the tests check both agree).
pub const CMD_NAMES: [&str; 26] = [
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
    "room_volume",
    "room_mute",
];

/// The `cmd` names of requests, one per [`Cmd`] variant: serde reads the name (anything else
/// is `unknown_cmd`), and [`Cmd::name`] and [`parse`] match both ways exhaustively, so a
/// command cannot be added to one without the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmdName {
    Sub,
    Unsub,
    Like,
    VoteSkip,
    Request,
    Vote,
    Search,
    SetName,
    Play,
    Pause,
    Skip,
    Seek,
    SetVolume,
    Remove,
    Move,
    Ban,
    Settings,
    Announce,
    Rescan,
    HostSessions,
    Logout,
    LogoutAll,
    PairScreen,
    RemoveScreen,
    RoomVolume,
    RoomMute,
}

impl Cmd {
    pub fn name(&self) -> CmdName {
        match self {
            Cmd::Sub { .. } => CmdName::Sub,
            Cmd::Unsub { .. } => CmdName::Unsub,
            Cmd::Like { .. } => CmdName::Like,
            Cmd::VoteSkip { .. } => CmdName::VoteSkip,
            Cmd::Request { .. } => CmdName::Request,
            Cmd::Vote { .. } => CmdName::Vote,
            Cmd::Search(_) => CmdName::Search,
            Cmd::SetName { .. } => CmdName::SetName,
            Cmd::Host(h) => h.name(),
        }
    }
}

impl HostCmd {
    pub fn name(&self) -> CmdName {
        match self {
            HostCmd::Play => CmdName::Play,
            HostCmd::Pause => CmdName::Pause,
            HostCmd::Skip { .. } => CmdName::Skip,
            HostCmd::Seek { .. } => CmdName::Seek,
            HostCmd::SetVolume { .. } => CmdName::SetVolume,
            HostCmd::Remove { .. } => CmdName::Remove,
            HostCmd::Move { .. } => CmdName::Move,
            HostCmd::Ban { .. } => CmdName::Ban,
            HostCmd::Settings(_) => CmdName::Settings,
            HostCmd::Announce { .. } => CmdName::Announce,
            HostCmd::Rescan => CmdName::Rescan,
            HostCmd::HostSessions => CmdName::HostSessions,
            HostCmd::Logout { .. } => CmdName::Logout,
            HostCmd::LogoutAll => CmdName::LogoutAll,
            HostCmd::PairScreen { .. } => CmdName::PairScreen,
            HostCmd::RemoveScreen { .. } => CmdName::RemoveScreen,
            HostCmd::RoomVolume { .. } => CmdName::RoomVolume,
            HostCmd::RoomMute { .. } => CmdName::RoomMute,
        }
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
    pub code: ErrorCode,
    pub field: Option<String>,
    pub message: String,
}

impl FrameError {
    fn bad_request(rid: Option<u64>, field: &str, message: impl Into<String>) -> FrameError {
        FrameError {
            rid,
            code: ErrorCode::BadRequest,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

fn yes() -> bool {
    true
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
struct RequestMsg {
    track_id: String,
    #[serde(rename = "for", default)]
    dedication: Option<String>,
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
struct RoomVolumeMsg {
    room: String,
    volume: u32,
}
#[derive(Deserialize)]
struct RoomMuteMsg {
    room: String,
    #[serde(default = "yes")]
    on: bool,
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

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Incoming, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FrameError {
        rid: None,
        code: ErrorCode::BadJson,
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
    let Ok(name) = serde_json::from_value::<CmdName>(Value::String(cmd.to_string())) else {
        return Err(FrameError {
            rid,
            code: ErrorCode::UnknownCmd,
            field: Some("cmd".into()),
            message: format!("unknown command {:?}", truncate(cmd, 40)),
        });
    };
    let Some(rid) = rid else {
        return Err(FrameError::bad_request(
            None,
            "rid",
            "every request needs a positive integer \"rid\"",
        ));
    };
    let cmd = request(name, &value, Some(rid))?;
    Ok(Incoming::Request { rid, cmd })
}

/// A host command from its name and a JSON object with its fields (the body of `POST
/// /api/host/{action}`), parsed as the websocket parses the same command. A name that is
/// not a host command is `unknown_cmd`.
pub fn host_command(name: &str, body: &Value) -> Result<HostCmd, FrameError> {
    let unknown = || FrameError {
        rid: None,
        code: ErrorCode::UnknownCmd,
        field: Some("cmd".into()),
        message: format!("unknown command {:?}", truncate(name, 40)),
    };
    let cmd_name = serde_json::from_value::<CmdName>(Value::String(name.to_string()))
        .map_err(|_| unknown())?;
    match request(cmd_name, body, None)? {
        Cmd::Host(h) => Ok(h),
        _ => Err(unknown()),
    }
}

/// An id field read as its type; a wrong one is refused naming the field ("not a play id").
fn id<T: std::str::FromStr<Err = BadId>>(
    s: &str,
    field: &str,
    rid: Option<u64>,
) -> Result<T, FrameError> {
    s.parse()
        .map_err(|e: BadId| FrameError::bad_request(rid, field, e.to_string()))
}

/// A request's fields, by its name.
fn request(name: CmdName, value: &Value, rid: Option<u64>) -> Result<Cmd, FrameError> {
    let play = |s: &str| id::<PlayId>(s, "play_id", rid);
    let entry = |s: &str| id::<EntryId>(s, "entry_id", rid);
    let guest = |s: &str| id::<GuestId>(s, "guest_id", rid);
    let empty = || body::<Empty>(value, rid);
    Ok(match name {
        CmdName::Sub => Cmd::Sub {
            topics: body::<TopicsMsg>(value, rid)?.topics,
        },
        CmdName::Unsub => Cmd::Unsub {
            topics: body::<TopicsMsg>(value, rid)?.topics,
        },
        CmdName::Like => {
            let m = body::<LikeMsg>(value, rid)?;
            Cmd::Like {
                play_id: play(&m.play_id)?,
                on: m.on,
            }
        }
        CmdName::VoteSkip => Cmd::VoteSkip {
            play_id: play(&body::<PlayMsg>(value, rid)?.play_id)?,
        },
        CmdName::Request => {
            let m = body::<RequestMsg>(value, rid)?;
            Cmd::Request {
                track_id: id::<TrackId>(&m.track_id, "track_id", rid)?,
                dedication: m.dedication,
            }
        }
        CmdName::Vote => {
            let m = body::<VoteMsg>(value, rid)?;
            Cmd::Vote {
                entry_id: entry(&m.entry_id)?,
                on: m.on,
            }
        }
        CmdName::Search => search(body::<SearchMsg>(value, rid)?, rid)?,
        CmdName::SetName => Cmd::SetName {
            name: body::<NameMsg>(value, rid)?.name,
        },
        CmdName::Play => empty().map(|_| Cmd::Host(HostCmd::Play))?,
        CmdName::Pause => empty().map(|_| Cmd::Host(HostCmd::Pause))?,
        CmdName::Skip => Cmd::Host(HostCmd::Skip {
            play_id: body::<OptPlayMsg>(value, rid)?
                .play_id
                .map(|p| play(&p))
                .transpose()?,
        }),
        CmdName::Seek => Cmd::Host(HostCmd::Seek {
            position_ms: body::<SeekMsg>(value, rid)?.position_ms,
        }),
        CmdName::SetVolume => Cmd::Host(HostCmd::SetVolume {
            volume: body::<VolumeMsg>(value, rid)?.volume,
        }),
        CmdName::Remove => Cmd::Host(HostCmd::Remove {
            entry_id: entry(&body::<EntryMsg>(value, rid)?.entry_id)?,
        }),
        CmdName::Move => {
            let m = body::<MoveMsg>(value, rid)?;
            Cmd::Host(HostCmd::Move {
                entry_id: entry(&m.entry_id)?,
                to: m.to,
            })
        }
        CmdName::Ban => {
            let m = body::<BanMsg>(value, rid)?;
            Cmd::Host(HostCmd::Ban {
                guest_id: guest(&m.guest_id)?,
                on: m.on,
            })
        }
        CmdName::Settings => Cmd::Host(HostCmd::Settings(body::<SettingsPatch>(value, rid)?)),
        CmdName::Announce => Cmd::Host(HostCmd::Announce {
            text: body::<TextMsg>(value, rid)?.text,
        }),
        CmdName::Rescan => empty().map(|_| Cmd::Host(HostCmd::Rescan))?,
        CmdName::HostSessions => empty().map(|_| Cmd::Host(HostCmd::HostSessions))?,
        CmdName::Logout => Cmd::Host(HostCmd::Logout {
            guest_id: body::<LogoutMsg>(value, rid)?
                .guest_id
                .map(|g| guest(&g))
                .transpose()?,
        }),
        CmdName::LogoutAll => empty().map(|_| Cmd::Host(HostCmd::LogoutAll))?,
        CmdName::PairScreen => {
            let code = body::<CodeMsg>(value, rid)?.code;
            if code.chars().count() > 32 {
                return Err(FrameError::bad_request(
                    rid,
                    "code",
                    "the code the TV shows (6 digits)",
                ));
            }
            Cmd::Host(HostCmd::PairScreen { code })
        }
        CmdName::RemoveScreen => Cmd::Host(HostCmd::RemoveScreen {
            guest_id: guest(&body::<GuestMsg>(value, rid)?.guest_id)?,
        }),
        CmdName::RoomVolume => {
            let m = body::<RoomVolumeMsg>(value, rid)?;
            if m.volume > 100 {
                return Err(FrameError::bad_request(
                    rid,
                    "volume",
                    format!("{} is not a volume; allowed 0..=100", m.volume),
                ));
            }
            Cmd::Host(HostCmd::RoomVolume {
                room: room_id(m.room, rid)?,
                volume: m.volume,
            })
        }
        CmdName::RoomMute => {
            let m = body::<RoomMuteMsg>(value, rid)?;
            Cmd::Host(HostCmd::RoomMute {
                room: room_id(m.room, rid)?,
                on: m.on,
            })
        }
    })
}

/// A room's id as snapserver gives them (a host id or a MAC address, `#N` for a second
/// instance): short and printable.
fn room_id(room: String, rid: Option<u64>) -> Result<String, FrameError> {
    if room.is_empty() || room.len() > 128 || room.chars().any(char::is_control) {
        return Err(FrameError::bad_request(
            rid,
            "room",
            "a room's id, as the rooms topic lists it",
        ));
    }
    Ok(room)
}

fn search(m: SearchMsg, rid: Option<u64>) -> Result<Cmd, FrameError> {
    SearchQuery::new(m.q, m.limit, m.cursor.as_deref())
        .map(Cmd::Search)
        .map_err(|(field, message)| FrameError::bad_request(rid, field, message))
}

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
            code: ErrorCode::BadRequest,
            field: Some(field),
            message: e.inner().to_string(),
        }
    })
}

/// A request's own fields (`cmd`, `rid` and unknown fields are ignored by the body types).
fn body<T: for<'a> Deserialize<'a>>(v: &Value, rid: Option<u64>) -> Result<T, FrameError> {
    de::<T>(v, rid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_into_commands() {
        let table: &[(&str, Incoming)] = &[
            (r#"{"cmd":"ping"}"#, Incoming::Ping),
            (
                r#"{"cmd":"like","rid":7,"play_id":"p77","on":true}"#,
                Incoming::Request {
                    rid: 7,
                    cmd: Cmd::Like {
                        play_id: PlayId::new(77),
                        on: true,
                    },
                },
            ),
            (
                r#"{"cmd":"vote","rid":10,"entry_id":"r42","extra":[1,2]}"#,
                Incoming::Request {
                    rid: 10,
                    cmd: Cmd::Vote {
                        entry_id: EntryId::new(42),
                        on: true,
                    },
                },
            ),
            (
                r#"{"cmd":"search","rid":11,"q":"abba","limit":20,"cursor":null}"#,
                Incoming::Request {
                    rid: 11,
                    cmd: Cmd::Search(SearchQuery {
                        q: "abba".into(),
                        limit: 20,
                        offset: 0,
                    }),
                },
            ),
            (
                r#"{"cmd":"skip","rid":3}"#,
                Incoming::Request {
                    rid: 3,
                    cmd: Cmd::Host(HostCmd::Skip { play_id: None }),
                },
            ),
        ];
        for (text, want) in table {
            assert_eq!(&parse(text).unwrap(), want, "{text}");
        }
    }

    /// Every name parses into the command of that name (the enum and the parser agree).
    #[test]
    fn every_command_name_parses_into_its_command() {
        let fields = r#""topics":[],"play_id":"p1","track_id":"t1","entry_id":"r1","q":"",
            "name":"","position_ms":0,"volume":0,"to":0,"guest_id":"g_1","text":"",
            "code":"1","room":"kitchen","on":true"#;
        for name in CMD_NAMES {
            let frame = format!(r#"{{"cmd":"{name}","rid":1,{fields}}}"#);
            let want: CmdName = serde_json::from_value(Value::String(name.into())).unwrap();
            match parse(&frame) {
                Ok(Incoming::Request { cmd, .. }) => assert_eq!(cmd.name(), want, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// `CMD_NAMES` has every command once, in the enum's order: the match below is exhaustive,
    /// so a new command does not compile until it has a place here.
    #[test]
    fn cmd_names_are_every_command_in_order() {
        fn place(c: CmdName) -> usize {
            use CmdName::*;
            match c {
                Sub => 0,
                Unsub => 1,
                Like => 2,
                VoteSkip => 3,
                Request => 4,
                Vote => 5,
                Search => 6,
                SetName => 7,
                Play => 8,
                Pause => 9,
                Skip => 10,
                Seek => 11,
                SetVolume => 12,
                Remove => 13,
                Move => 14,
                Ban => 15,
                Settings => 16,
                Announce => 17,
                Rescan => 18,
                HostSessions => 19,
                Logout => 20,
                LogoutAll => 21,
                PairScreen => 22,
                RemoveScreen => 23,
                RoomVolume => 24,
                RoomMute => 25,
            }
        }
        for (i, name) in CMD_NAMES.iter().enumerate() {
            let c: CmdName = serde_json::from_value(Value::String(name.to_string())).unwrap();
            assert_eq!(place(c), i, "{name}");
        }
    }

    /// A host action's body parses as the websocket's command of that name; a guest's
    /// command or an unknown name is no host action.
    #[test]
    fn host_actions_parse_into_host_commands() {
        let body = |v: &str| -> Value { serde_json::from_str(v).unwrap() };
        assert_eq!(
            host_command("set_volume", &body(r#"{"volume":40}"#)),
            Ok(HostCmd::SetVolume { volume: 40 })
        );
        assert_eq!(
            host_command("skip", &body("{}")),
            Ok(HostCmd::Skip { play_id: None })
        );
        let bad = host_command("set_volume", &body(r#"{"volume":"loud"}"#)).unwrap_err();
        assert_eq!(
            (bad.code, bad.field.as_deref()),
            (ErrorCode::BadRequest, Some("volume"))
        );
        assert_eq!(bad.rid, None);
        for name in ["like", "dance", "hello", "search"] {
            let e = host_command(name, &body(r#"{"play_id":"p1","q":""}"#)).unwrap_err();
            assert_eq!(e.code, ErrorCode::UnknownCmd, "{name}");
        }
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        use ErrorCode::{BadJson, BadRequest, UnknownCmd};
        // (frame, code, rid, field)
        let table: &[(&str, ErrorCode, Option<u64>, Option<&str>)] = &[
            ("{", BadJson, None, None),
            ("[1,2]", BadRequest, None, Some("cmd")),
            (r#"{"rid":1}"#, BadRequest, Some(1), Some("cmd")),
            (
                r#"{"cmd":"dance","rid":4}"#,
                UnknownCmd,
                Some(4),
                Some("cmd"),
            ),
            (
                r#"{"cmd":"Like","rid":4}"#,
                UnknownCmd,
                Some(4),
                Some("cmd"),
            ),
            (
                r#"{"cmd":"like","play_id":"p1"}"#,
                BadRequest,
                None,
                Some("rid"),
            ),
            (
                r#"{"cmd":"like","rid":5,"play_id":77}"#,
                BadRequest,
                Some(5),
                Some("play_id"),
            ),
            (
                r#"{"cmd":"like","rid":5,"play_id":"x"}"#,
                BadRequest,
                Some(5),
                Some("play_id"),
            ),
            (
                r#"{"cmd":"like","rid":5,"play_id":"p1","on":"yes"}"#,
                BadRequest,
                Some(5),
                Some("on"),
            ),
            (
                r#"{"cmd":"seek","rid":6,"position_ms":-1}"#,
                BadRequest,
                Some(6),
                Some("position_ms"),
            ),
            (
                r#"{"cmd":"sub","rid":6,"topics":["weather"]}"#,
                BadRequest,
                Some(6),
                Some("topics[0]"),
            ),
            (
                r#"{"cmd":"search","rid":6,"q":"a","cursor":"zz"}"#,
                BadRequest,
                Some(6),
                Some("cursor"),
            ),
            (
                r#"{"cmd":"skip","rid":6,"play_id":"r1"}"#,
                BadRequest,
                Some(6),
                Some("play_id"),
            ),
        ];
        for (text, code, rid, field) in table {
            let e = parse(text).unwrap_err();
            assert_eq!(e.code, *code, "{text}: {e:?}");
            assert_eq!(e.rid, *rid, "{text}");
            assert_eq!(e.field.as_deref(), *field, "{text}: {e:?}");
        }
    }
}
