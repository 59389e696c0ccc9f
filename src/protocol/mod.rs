//! The live protocol v1 on the wire (docs/PROTOCOL.md): the only place that defines the JSON
//! phones see. Contains no party logic.
//!
//! - [`ids`]: the search cursors, beside the typed ids (`p77`, `r42`, `t9`, `g_17`) of
//!   [`crate::ids`];
//! - [`incoming`]: client frames parsed into typed commands, with the failing field named;
//! - [`outgoing`]: the hub's changes, snapshots, replies and control messages as JSON;
//! - [`search`]: the rules and paging of a library search;
//! - [`error`]: the error codes, their HTTP statuses, and the `error` object with its `data`.

pub mod error;
pub mod ids;
pub mod incoming;
pub mod outgoing;
pub mod search;

use serde::Deserialize;

pub use error::{refusal_data, ErrorCode, WireError};
pub use ids::{cursor, parse_cursor, EntryId, GuestId, PlayId, TrackId};
pub use incoming::{
    host_command, parse, Cmd, CmdName, FrameError, Hello, HostCmd, Incoming, CMD_NAMES,
};
pub use outgoing::{
    admin_guest, bye, bye_retry, change_topic, encode_change, encode_snapshot, error_frame,
    event_data, me, now_playing, queue_entry, reply_err, reply_ok, room, search_results, snap_room,
    track, track_row, welcome, Tail, Welcome, PING, PONG,
};
pub use search::SearchQuery;

pub const VERSION: u32 = 1;
/// Frames larger than this are refused with close code 1009.
pub const MAX_FRAME: usize = 16 * 1024;

/// The revision-2 parts (protocol.md §11) every jukebox serves, as `welcome.features` names
/// them: guest ids beside display names, refusals with their numbers in `error.data`, the
/// history, the sound settings with the audio health, the content rules, dedications, and
/// `wifi` (`/api/join` names the Wi-Fi to join, or says `null`: the field is there whether or
/// not one is configured, so every jukebox serves it). [`features`] adds what the
/// configuration turns on.
const FEATURES: &[&str] = &[
    "ids",
    "refusals",
    "history",
    "sound",
    "rules",
    "dedications",
    "wifi",
];

/// The `welcome.features` of a jukebox, `rooms` with snapserver's control port configured.
pub fn features(rooms: bool) -> Vec<&'static str> {
    let mut f = FEATURES.to_vec();
    if rooms {
        f.push("rooms");
    }
    f
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    NowPlaying,
    Queue,
    Me,
    Room,
    Admin,
    Rooms,
    History,
}

impl Topic {
    pub const ALL: [Topic; 7] = [
        Topic::NowPlaying,
        Topic::Queue,
        Topic::Me,
        Topic::Room,
        Topic::Admin,
        Topic::Rooms,
        Topic::History,
    ];

    /// Only a host may subscribe.
    pub fn host_only(self) -> bool {
        matches!(self, Topic::Admin | Topic::Rooms)
    }

    /// The topic's name on the wire (as `hello.topics` and `sub` spell it).
    pub fn name(self) -> &'static str {
        match self {
            Topic::NowPlaying => "now_playing",
            Topic::Queue => "queue",
            Topic::Me => "me",
            Topic::Room => "room",
            Topic::Admin => "admin",
            Topic::Rooms => "rooms",
            Topic::History => "history",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_what_serde_reads() {
        for t in Topic::ALL {
            let back: Topic = serde_json::from_value(t.name().into()).unwrap();
            assert_eq!(back, t);
        }
    }
}
