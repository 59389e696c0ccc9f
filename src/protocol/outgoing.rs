//! Hub changes, snapshots, replies and control messages → wire JSON. Sequenced messages
//! (`update`, `event`, `reply`) are encoded without their `seq` as a [`Tail`]; a connection
//! renders `{"cmd":…,"seq":N` + tail, so a change shared by every phone is encoded once and
//! only the number differs.

use serde_json::{json, Value};

use super::ids::cursor;
use super::{Topic, WireError, VERSION};
use crate::hub::{
    Change, Event, GainFrom, GuestAdminView, GuestCreated, HistoryItemView, MeView, NowPlayingView,
    Pairing, QueueEntryView, Requested, Role, RoomView, SnapRoomView, SnapserverView, Snapshot,
    SoundView, Status, TrackView,
};
use crate::ids::GuestId;
use crate::party::{Refusal, Rules};
use crate::store::{PlayEnd, Track};

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
        "id": t.id,
        "title": t.title,
        "artist": t.artist,
        "album": t.album,
        "duration_ms": t.duration_ms,
        "track_no": t.track_no,
        "art": t.has_art.then(|| format!("/api/art/{}", t.id)),
    })
}

pub fn track_row(t: &Track) -> Value {
    track(&TrackView::from(t))
}

pub fn now_playing(n: &NowPlayingView) -> Value {
    json!({
        "play_id": n.play_id,
        "track": track(&n.track),
        "requested_by": n.requested_by,
        "requested_by_id": n.requester,
        "requested_by_host": n.requested_by_host,
        "position_ms": n.position_ms,
        "server_time_ms": n.server_time_ms,
        "paused": n.paused,
        "likes": n.likes,
        "skip_votes": n.skip_votes,
        "skip_needed": n.skip_needed,
        "volume": n.volume,
        "auto": n.auto,
        "for": n.dedication,
    })
}

pub fn queue_entry(e: &QueueEntryView) -> Value {
    json!({
        "id": e.id,
        "track": track(&e.track),
        "by": e.by,
        "by_id": e.guest,
        "by_host": e.by_host,
        "votes": e.votes,
        "pinned": e.pinned,
        "for": e.dedication,
    })
}

/// A play of the `history` topic. `refused` is what the content rules would answer a guest's
/// request of it (the no-repeat window and the artist spacing a client works out from
/// `started_ms` and the order, with the room's settings).
pub fn history_item(p: &HistoryItemView) -> Value {
    json!({
        "id": p.play_id,
        "track": track(&p.track),
        "requested_by": p.requested_by,
        "requested_by_id": p.requester,
        "requested_by_host": p.requested_by_host,
        "for": p.dedication,
        "started_ms": p.started_ms,
        "likes": p.likes,
        "ended": p.ended.map(|e| match e {
            PlayEnd::Finished => "finished",
            PlayEnd::Skipped => "skipped",
            PlayEnd::Error => "error",
        }),
        "refused": p.refused.as_ref().map(|r| {
            WireError::from(&crate::hub::HubError::Refused(r.clone())).to_json()
        }),
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
        "guest_id": m.guest_id,
        "name": m.name,
        "role": role(m.role),
        "liked": m.liked,
        "skip_voted": m.skip_voted,
        "voted": m.voted,
        "pending_requests": m.pending_requests,
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
        "normalize": s.normalize.as_str(),
        "loudness_lufs": s.loudness_lufs,
        "crossfade_s": s.crossfade_s,
        "snapcast_control": s.snapcast_control,
        "blocked_artists": s.blocked_artists,
        "blocked_words": s.blocked_words,
        "max_track_minutes": s.max_track_minutes,
        "pool": s.pool,
        "autodj_blocked": r.autodj_blocked,
        "scan": r.scan.map(|p| json!({"files": p.files, "read": p.read, "done": p.done})),
    })
}

/// A level kept in tenths, as the number it stands for (-98 → -9.8).
fn from_tenths(t: i32) -> Value {
    json!(f64::from(t) / 10.0)
}

fn gain_from(g: GainFrom) -> &'static str {
    match g {
        GainFrom::Measured => "measured",
        GainFrom::Tags => "tags",
        GainFrom::Estimated => "estimated",
        GainFrom::Off => "off",
    }
}

/// The `sound` of the `admin` topic (host only).
pub fn sound(v: &SoundView) -> Value {
    json!({
        "playing": v.playing.map(|p| json!({
            "play_id": p.play_id,
            "track_lufs": p.track_lufs_tenths.map(from_tenths),
            "gain_db": from_tenths(p.gain_tenths),
            "source": gain_from(p.source),
            "album": p.album,
        })),
        "measured": v.pass.map(|p| p.measured),
        "failed": v.pass.map(|p| p.failed),
        "total": v.pass.map(|p| p.total),
        "underruns": v.underruns,
        "latency_ms": v.latency_ms,
    })
}

pub fn admin_guest(g: &GuestAdminView) -> Value {
    json!({
        "id": g.guest_id,
        "name": g.name,
        "role": role(g.role),
        "banned": g.banned,
        "connected": g.connected,
        "pending_requests": g.pending_requests,
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
            requested_by_id,
            requested_by_host,
            dedication,
        } => json!({"play_id": p, "track_id": t, "title": title,
                    "artist": artist, "requested_by": requested_by,
                    "requested_by_id": requested_by_id,
                    "requested_by_host": requested_by_host, "for": dedication}),
        Event::Liked {
            play_id: p,
            track_id: t,
            by,
            by_id,
            by_host,
        }
        | Event::YourRequestLiked {
            play_id: p,
            track_id: t,
            by,
            by_id,
            by_host,
        } => json!({"play_id": p, "track_id": t, "by": by,
                    "by_id": by_id, "by_host": by_host}),
        Event::SkipVote {
            play_id: p,
            votes,
            needed,
            by,
            by_id,
            by_host,
        } => json!({"play_id": p, "votes": votes, "needed": needed, "by": by,
                    "by_id": by_id, "by_host": by_host}),
        Event::Skipped {
            play_id: p,
            track_id: t,
            reason,
        } => json!({"play_id": p, "track_id": t, "reason": reason.as_str()}),
        Event::Requested {
            entry_id: e,
            track_id: t,
            title,
            artist,
            by,
            by_id,
            by_host,
            dedication,
        } => json!({"entry_id": e, "track_id": t, "title": title,
                    "artist": artist, "by": by, "by_id": by_id,
                    "by_host": by_host, "for": dedication}),
        Event::HostMessage { text } => json!({ "text": text }),
        Event::YourRequestNext {
            entry_id: e,
            track_id: t,
            title,
        } => json!({"entry_id": e, "track_id": t, "title": title}),
    }
}

/// Which topic a change belongs to (`None` for events, which every socket gets).
pub fn change_topic(c: &Change) -> Option<Topic> {
    match c {
        Change::NowPlaying(_) => Some(Topic::NowPlaying),
        Change::QueueEntry { .. } | Change::QueueOrder(_) => Some(Topic::Queue),
        Change::HistoryEntry { .. } | Change::HistoryOrder(_) => Some(Topic::History),
        Change::Room(_) => Some(Topic::Room),
        Change::Me(_) => Some(Topic::Me),
        Change::Guest(_) | Change::GuestGone(_) | Change::Output(_) | Change::Sound(_) => {
            Some(Topic::Admin)
        }
        Change::SnapRoom { .. } | Change::SnapRoomsOrder(_) | Change::Snapserver(_) => {
            Some(Topic::Rooms)
        }
        Change::Event { .. } => None,
    }
}

/// A room of the `rooms` topic.
pub fn snap_room(r: &SnapRoomView) -> Value {
    json!({"id": r.id, "name": r.name, "connected": r.connected, "volume": r.volume,
           "muted": r.muted, "latency_ms": r.latency_ms})
}

/// The link to snapserver, beside the rooms.
fn snapserver(v: &SnapserverView) -> Value {
    json!({"address": v.address, "reachable": v.reachable, "error": v.error})
}

/// An `update` of `topic` with the fields of `body` (an object).
fn update(topic: Topic, mut body: Value) -> Tail {
    body["topic"] = json!(topic.name());
    Tail::new("update", body)
}

/// Encodes a hub change; `None` for changes the wire does not carry.
pub fn encode_change(c: &Change) -> Option<Tail> {
    Some(match c {
        Change::NowPlaying(n) => update(
            Topic::NowPlaying,
            json!({"data": n.as_deref().map(now_playing)}),
        ),
        Change::QueueEntry { id, entry } => update(
            Topic::Queue,
            json!({"id": id, "data": entry.as_deref().map(queue_entry)}),
        ),
        Change::QueueOrder(order) => update(Topic::Queue, json!({"order": order})),
        Change::HistoryEntry { id, entry } => update(
            Topic::History,
            json!({"id": id, "data": entry.as_deref().map(history_item)}),
        ),
        Change::HistoryOrder(order) => update(Topic::History, json!({"order": order})),
        Change::Room(r) => update(Topic::Room, json!({"data": room(r)})),
        Change::Me(m) => update(Topic::Me, json!({"data": me(m)})),
        Change::Guest(g) => update(
            Topic::Admin,
            json!({"id": g.guest_id, "data": admin_guest(g)}),
        ),
        Change::GuestGone(id) => update(Topic::Admin, json!({"id": id, "data": null})),
        Change::Output(_) => return None,
        Change::Sound(v) => update(Topic::Admin, json!({"sound": sound(v)})),
        Change::SnapRoom { id, room } => update(
            Topic::Rooms,
            json!({"id": id, "data": room.as_deref().map(snap_room)}),
        ),
        Change::SnapRoomsOrder(order) => update(Topic::Rooms, json!({ "order": order })),
        Change::Snapserver(v) => update(Topic::Rooms, json!({"snapserver": snapserver(v)})),
        Change::Event { ts_ms, event, .. } => Tail::new(
            "event",
            json!({"name": event.name(), "ts_ms": ts_ms, "data": event_data(event)}),
        ),
    })
}

/// The snapshot of one topic.
pub fn encode_snapshot(topic: Topic, s: &Snapshot) -> Tail {
    let body = match topic {
        Topic::NowPlaying => json!({"data": s.now_playing.as_ref().map(now_playing)}),
        Topic::Queue => json!({
            "items": s.queue.iter().map(queue_entry).collect::<Vec<_>>(),
            "order": s.order,
        }),
        Topic::History => json!({
            "items": s.history.iter().map(history_item).collect::<Vec<_>>(),
            "order": s.history.iter().map(|p| p.play_id).collect::<Vec<_>>(),
        }),
        Topic::Me => json!({"data": s.me.as_ref().map(me)}),
        Topic::Room => json!({"data": room(&s.room)}),
        Topic::Admin => json!({
            "items": s.guests.iter().map(admin_guest).collect::<Vec<_>>(),
            "order": s.guests.iter().map(|g| g.guest_id).collect::<Vec<_>>(),
            "sound": sound(&s.sound),
        }),
        Topic::Rooms => {
            let rooms = s.rooms.as_ref();
            let list = rooms.map_or(&[][..], |r| &r.rooms[..]);
            json!({
                "items": list.iter().map(snap_room).collect::<Vec<_>>(),
                "order": list.iter().map(|r| &r.id).collect::<Vec<_>>(),
                "snapserver": rooms.map(|r| snapserver(&r.snapserver)),
            })
        }
    };
    update(topic, body)
}

pub fn reply_ok(rid: u64, data: Value) -> Tail {
    Tail::new("reply", json!({"rid": rid, "ok": true, "data": data}))
}

/// The data of a reply that has nothing to say.
pub fn done() -> Value {
    json!({})
}

/// The data of the reply to an admitted `request`.
pub fn requested(r: &Requested) -> Value {
    json!({"entry_id": r.entry_id, "upvoted": r.upvoted})
}

/// The data of the reply to `pair_screen`: the new screen's guest id.
pub fn paired(guest: GuestId) -> Value {
    json!({"guest_id": guest})
}

/// The data of the reply to `logout` and `logout_all`: how many host logins ended.
pub fn logged_out(n: usize) -> Value {
    json!({ "logged_out": n })
}

/// The body of a search answer (websocket reply data and `GET /api/search`). A track the
/// host's content rules refuse is still found, with `refused`: the error a request of it
/// would get, so guests see why before they try.
pub fn search_results(tracks: &[Track], next_offset: Option<u32>, rules: &Rules) -> Value {
    let results: Vec<Value> = tracks
        .iter()
        .map(|t| {
            let mut row = track_row(t);
            row["refused"] = refused(rules, t);
            row
        })
        .collect();
    json!({
        "results": results,
        "next_cursor": next_offset.map(cursor),
    })
}

/// The error object a guest's request of `t` gets from the content rules, or `null`.
pub fn refused(rules: &Rules, t: &Track) -> Value {
    match rules.check(&t.facts()) {
        Some(rule) => {
            let e = crate::hub::HubError::Refused(Refusal::not_allowed(rule, rules));
            WireError::from(&e).to_json()
        }
        None => Value::Null,
    }
}

/// The HTTP API's bodies: the same objects as the websocket's, and a few of its own.
pub mod http {
    use super::*;

    /// `POST /api/host/{action}`: `{"ok": true}` with the reply's data beside it.
    pub fn host_action(data: Value) -> Value {
        let mut body = json!({"ok": true});
        if let (Some(b), Value::Object(d)) = (body.as_object_mut(), data) {
            b.extend(d);
        }
        body
    }

    /// A new guest's token (`POST /api/guest`).
    pub fn guest_token(g: &GuestCreated) -> Value {
        json!({"token": g.token, "guest_id": g.guest_id, "name": g.name})
    }

    /// A host's token (`POST /api/host/login`).
    pub fn host_token(g: &GuestCreated) -> Value {
        json!({"token": g.token, "guest_id": g.guest_id, "name": g.name, "role": "host"})
    }

    /// A pairing code for a TV to show (`POST /api/screen/pair`).
    pub fn pairing(p: &Pairing) -> Value {
        json!({"code": p.code, "claim": p.claim, "expires_in_ms": p.expires_in_ms})
    }

    /// The TV's screen token, once the host paired it (`POST /api/screen/claim`).
    pub fn screen_paired(g: &GuestCreated) -> Value {
        json!({
            "paired": true, "token": g.token, "guest_id": g.guest_id,
            "name": g.name, "role": "screen"
        })
    }

    /// Not paired yet (`POST /api/screen/claim`).
    pub fn screen_pending() -> Value {
        json!({"paired": false})
    }

    /// The read-only view of the party (`GET /api/state`): the topics' snapshot bodies.
    pub fn state(s: &Snapshot) -> Value {
        json!({
            "now_playing": s.now_playing.as_ref().map(now_playing),
            "queue": {
                "items": s.queue.iter().map(queue_entry).collect::<Vec<_>>(),
                "order": &s.order,
            },
            "room": room(&s.room),
        })
    }

    /// What anyone may know of the box's health (`GET /healthz`).
    pub struct Health<'a> {
        pub status: &'a Status,
        pub uptime_s: u64,
        pub sessions: usize,
    }

    pub fn health(h: &Health<'_>) -> Value {
        let s = h.status;
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": h.uptime_s,
            "audio": {
                "output": output_kind(&s.output.description),
                "ok": s.output.ok,
                "playing": s.playing,
                "underruns": s.underruns,
                "latency_ms": s.latency_ms,
            },
            "library_size": s.library_size,
            "phones_connected": s.guests_connected,
            "sessions": h.sessions,
            "queue_len": s.queue_len,
        })
    }

    /// The kind of audio output (`alsa`, `wav`, `null`…) without the device or file it
    /// names, for `/healthz`, which anyone may read.
    fn output_kind(description: &str) -> String {
        description
            .split(|c: char| c.is_whitespace() || c == ':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
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

/// What `welcome` tells a socket that said `hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome<'a> {
    pub build: &'a str,
    /// The revision-2 parts served (`protocol::features`).
    pub features: &'a [&'static str],
    pub epoch: &'a str,
    pub session: &'a str,
    pub resumed: bool,
    /// Why a requested resume failed (`unknown_session`, `too_old`, `epoch`).
    pub reason: Option<&'a str>,
    pub last_rid: u64,
    pub role: Role,
    pub heartbeat_ms: u64,
}

pub fn welcome(w: &Welcome<'_>) -> String {
    let mut v = json!({
        "cmd": "welcome", "v": VERSION, "build": w.build, "epoch": w.epoch,
        "session": w.session, "resumed": w.resumed, "last_rid": w.last_rid,
        "role": role(w.role), "heartbeat_ms": w.heartbeat_ms, "features": w.features,
    });
    if let Some(r) = w.reason {
        v["reason"] = json!(r);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn tails_render_with_the_seq_spliced_in() {
        let t = reply_ok(9, json!({"x": 1}));
        let v: Value = serde_json::from_str(&t.render(31)).unwrap();
        assert_eq!(
            v,
            json!({"cmd":"reply","seq":31,"rid":9,"ok":true,"data":{"x":1}})
        );
        let e = reply_err(
            8,
            &WireError::new(ErrorCode::StalePlay, "That song already ended"),
        );
        let v: Value = serde_json::from_str(&e.render(32)).unwrap();
        assert_eq!(v["error"]["code"], "stale_play");
        assert_eq!(v["seq"], 32);
    }

    #[test]
    fn welcome_names_the_features() {
        let features = crate::protocol::features(false);
        let w = Welcome {
            build: "b",
            features: &features,
            epoch: "e",
            session: "s",
            resumed: false,
            reason: Some("epoch"),
            last_rid: 3,
            role: Role::Host,
            heartbeat_ms: 20000,
        };
        let v: Value = serde_json::from_str(&welcome(&w)).unwrap();
        let base = [
            "ids",
            "refusals",
            "history",
            "sound",
            "rules",
            "dedications",
            "wifi",
        ];
        assert_eq!(v["features"], json!(base));
        let features = crate::protocol::features(true);
        let v: Value = serde_json::from_str(&welcome(&Welcome {
            features: &features,
            ..w
        }))
        .unwrap();
        let mut with_rooms = base.to_vec();
        with_rooms.push("rooms");
        assert_eq!(v["features"], json!(with_rooms));
        assert_eq!(v["reason"], "epoch");
        assert_eq!(v["role"], "host");
    }

    #[test]
    fn updates_name_their_topic() {
        let t = update(Topic::Queue, json!({"order": ["r1"]}));
        let v: Value = serde_json::from_str(&t.render(1)).unwrap();
        assert_eq!(
            v,
            json!({"cmd":"update","seq":1,"topic":"queue","order":["r1"]})
        );
    }
}
