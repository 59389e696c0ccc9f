//! docs/PROTOCOL.md cannot drift from the server: every client frame in it must be accepted
//! by the server's own parser, and every server frame must have exactly the shape (the same
//! keys, recursively) that the server's own encoder produces for that kind of message.

use jukebox::hub::HubError;
use jukebox::hub::{
    Change, Event, GainFrom, GuestAdminView, HistoryItemView, MeView, NowPlayingView, OutputView,
    PassView, PlayingSound, QueueEntryView, Role, RoomView, RoomsView, ScanView, SnapRoomView,
    SnapserverView, Snapshot, SoundView, TrackView,
};
use jukebox::party::{EntryId, GuestId, PlayId, Refusal, Rule, Rules, Settings, TrackId};
use jukebox::protocol::{self, ErrorCode, Incoming, Tail, Topic, WireError};
use serde_json::Value;

fn blocks(doc: &str, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.trim() == format!("```json {tag}") {
            inside = true;
        } else if inside && line.trim() == "```" {
            inside = false;
        } else if inside && !line.trim().is_empty() {
            out.push(line.trim().to_string());
        }
    }
    out
}

fn track(id: i64, art: bool) -> TrackView {
    TrackView {
        id: TrackId::new(id),
        title: "T".into(),
        artist: "A".into(),
        album: "B".into(),
        duration_ms: 1000,
        track_no: Some(1),
        has_art: art,
    }
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        now_playing: Some(NowPlayingView {
            play_id: PlayId::new(1),
            track: track(3, true),
            requested_by: Some("Sam".into()),
            requester: Some(GuestId::new(2)),
            requested_by_host: false,
            entry_id: Some(EntryId::new(4)),
            position_ms: 0,
            server_time_ms: 0,
            paused: false,
            likes: 0,
            skip_votes: 0,
            skip_needed: 2,
            volume: 70,
            auto: false,
            dedication: Some("Anna".into()),
        }),
        queue: vec![QueueEntryView {
            id: EntryId::new(42),
            track: track(9, false),
            by: Some("Mia".into()),
            guest: Some(GuestId::new(1)),
            by_host: false,
            votes: 1,
            pinned: false,
            created_ms: 0,
            dedication: Some("Anna".into()),
        }],
        order: vec![EntryId::new(42)],
        history: vec![HistoryItemView {
            play_id: PlayId::new(77),
            track: track(3, true),
            requested_by: Some("Sam".into()),
            requester: Some(GuestId::new(9)),
            requested_by_host: false,
            dedication: Some("Anna".into()),
            started_ms: 0,
            likes: 12,
            ended: Some(jukebox::store::PlayEnd::Finished),
            refused: Some(Refusal::NotAllowed {
                rule: Rule::BlockedArtist,
                max_minutes: 0,
            }),
        }],
        room: RoomView {
            name: "jukebox".into(),
            guests_connected: 1,
            library_size: 5,
            settings: Settings::default(),
            audio_ok: true,
            scan: Some(ScanView {
                files: 1,
                read: 1,
                done: true,
            }),
            autodj_blocked: false,
        },
        me: Some(MeView {
            guest_id: GuestId::new(17),
            name: "Mia".into(),
            role: Role::Guest,
            liked: vec![PlayId::new(1)],
            skip_voted: vec![],
            voted: vec![EntryId::new(42)],
            pending_requests: vec![EntryId::new(42)],
            requests_left: 2,
            banned: false,
        }),
        guests: vec![GuestAdminView {
            guest_id: GuestId::new(17),
            name: "Mia".into(),
            role: Role::Guest,
            banned: false,
            connected: true,
            pending_requests: vec![EntryId::new(42)],
            played_tonight: 0,
        }],
        output: OutputView {
            description: "null".into(),
            ok: true,
        },
        sound: SoundView {
            playing: Some(PlayingSound {
                play_id: PlayId::new(1),
                track_lufs_tenths: Some(-98),
                gain_tenths: -42,
                source: GainFrom::Measured,
                album: false,
            }),
            pass: Some(PassView {
                measured: 1204,
                failed: 3,
                total: 10_000,
            }),
            underruns: 0,
            latency_ms: 120,
        },
        rooms: Some(RoomsView {
            snapserver: SnapserverView {
                address: "127.0.0.1:1705".into(),
                reachable: true,
                error: None,
            },
            rooms: vec![SnapRoomView {
                id: "kitchen-pi".into(),
                name: "Kitchen".into(),
                connected: true,
                volume: 80,
                muted: false,
                latency_ms: 0,
            }],
        }),
    }
}

fn render(t: &Tail) -> Value {
    serde_json::from_str(&t.render(1)).unwrap()
}

/// Every kind of message the server sends, made by its own encoder.
fn references() -> Vec<Value> {
    let s = sample_snapshot();
    let mut out = Vec::new();
    for topic in Topic::ALL {
        out.push(render(&protocol::encode_snapshot(topic, &s)));
    }
    let changes = vec![
        Change::NowPlaying(s.now_playing.clone().map(Box::new)),
        Change::QueueEntry {
            id: EntryId::new(42),
            entry: Some(Box::new(s.queue[0].clone())),
        },
        Change::QueueOrder(vec![EntryId::new(42)]),
        Change::HistoryEntry {
            id: PlayId::new(77),
            entry: Some(Box::new(s.history[0].clone())),
        },
        Change::HistoryOrder(vec![PlayId::new(77)]),
        Change::Room(Box::new(s.room.clone())),
        Change::Me(Box::new(s.me.clone().unwrap())),
        Change::Guest(Box::new(s.guests[0].clone())),
        Change::Sound(s.sound),
        Change::SnapRoom {
            id: "kitchen-pi".into(),
            room: Some(Box::new(s.rooms.clone().unwrap().rooms[0].clone())),
        },
        Change::SnapRoomsOrder(vec!["kitchen-pi".into()]),
        Change::Snapserver(s.rooms.clone().unwrap().snapserver),
    ];
    let events = vec![
        Event::TrackStarted {
            play_id: PlayId::new(1),
            track_id: TrackId::new(2),
            title: "t".into(),
            artist: "a".into(),
            requested_by: None,
            requested_by_id: None,
            requested_by_host: false,
            dedication: Some("Anna".into()),
        },
        Event::Liked {
            play_id: PlayId::new(1),
            track_id: TrackId::new(2),
            by: "b".into(),
            by_id: GuestId::new(3),
            by_host: false,
        },
        Event::SkipVote {
            play_id: PlayId::new(1),
            votes: 1,
            needed: 2,
            by: "b".into(),
            by_id: GuestId::new(3),
            by_host: false,
        },
        Event::Skipped {
            play_id: Some(PlayId::new(1)),
            track_id: TrackId::new(2),
            reason: jukebox::hub::SkipReason::Votes,
        },
        Event::Requested {
            entry_id: EntryId::new(1),
            track_id: TrackId::new(2),
            title: "t".into(),
            artist: "a".into(),
            by: None,
            by_id: None,
            by_host: false,
            dedication: Some("Anna".into()),
        },
        Event::HostMessage { text: "hi".into() },
        Event::YourRequestNext {
            entry_id: EntryId::new(1),
            track_id: TrackId::new(2),
            title: "t".into(),
        },
        Event::YourRequestLiked {
            play_id: PlayId::new(1),
            track_id: TrackId::new(2),
            by: "b".into(),
            by_id: GuestId::new(3),
            by_host: false,
        },
    ];
    for c in changes
        .into_iter()
        .chain(events.into_iter().map(|event| Change::Event {
            ts_ms: 0,
            to: None,
            event,
        }))
    {
        out.push(render(&protocol::encode_change(&c).unwrap()));
    }
    out.push(render(&protocol::reply_ok(1, serde_json::json!({}))));
    let requested = jukebox::hub::Requested {
        entry_id: EntryId::new(2),
        upvoted: false,
    };
    out.push(render(&protocol::reply_ok(
        1,
        protocol::outgoing::requested(&requested),
    )));
    out.push(render(&protocol::reply_ok(
        1,
        protocol::outgoing::paired(GuestId::new(31)),
    )));
    let row = jukebox::store::Track {
        id: TrackId::new(1),
        path: "/m/a.mp3".into(),
        title: "t".into(),
        artist: "a".into(),
        album: "b".into(),
        track_no: None,
        duration_ms: 1,
        has_art: false,
        present: true,
        likes: 0,
        levels: Default::default(),
    };
    out.push(render(&protocol::reply_ok(
        1,
        protocol::search_results(std::slice::from_ref(&row), Some(20), &Rules::default()),
    )));
    let rules = Rules::new(
        &Settings {
            blocked_artists: vec!["a".into()],
            ..Settings::default()
        },
        std::path::Path::new("/m"),
    );
    out.push(render(&protocol::reply_ok(
        1,
        protocol::search_results(&[row], None, &rules),
    )));
    let session = jukebox::login::HostSession {
        guest_id: GuestId::new(1),
        created_ms: 0,
        expires_ms: 1,
        last_seen_ms: 0,
        addr: "127.0.0.1".into(),
    };
    let failed = jukebox::login::FailedLogins {
        wrong_last_minute: 0,
        wrong_last_hour: 0,
        refused_last_minute: 0,
        refused_last_hour: 0,
        locked_ms: 0,
    };
    out.push(render(&protocol::reply_ok(
        1,
        jukebox::login::sessions_data(&[session], GuestId::new(1), failed),
    )));
    out.push(render(&protocol::reply_ok(
        1,
        serde_json::json!({ "logged_out": 1 }),
    )));
    let mut e = WireError::new(ErrorCode::BadRequest, "m");
    out.push(render(&protocol::reply_err(1, &e)));
    e.field = Some("f".into());
    out.push(render(&protocol::reply_err(1, &e)));
    let r = WireError::rate_limited("m", 5);
    out.push(render(&protocol::reply_err(1, &r)));
    for refusal in [
        Refusal::PlayingNow,
        Refusal::RecentlyPlayed {
            minutes_ago: 1,
            wait_minutes: 2,
        },
        Refusal::ArtistSpacing {
            artist: "a".into(),
            plays_ago: 0,
            spacing: 1,
        },
        Refusal::LimitReached { limit: 1 },
        Refusal::NotAllowed {
            rule: Rule::BlockedArtist,
            max_minutes: 0,
        },
        Refusal::NotAllowed {
            rule: Rule::TooLong,
            max_minutes: 8,
        },
    ] {
        let e = WireError::from(&HubError::Refused(refusal));
        out.push(render(&protocol::reply_err(1, &e)));
    }
    out.push(
        serde_json::from_str(&protocol::error_frame(&WireError::new(
            ErrorCode::BadJson,
            "m",
        )))
        .unwrap(),
    );
    out.push(serde_json::from_str(&protocol::error_frame(&e)).unwrap());
    out.push(serde_json::from_str(&protocol::bye(4008, "r", true)).unwrap());
    out.push(serde_json::from_str(&protocol::bye_retry(4429, "r", true, Some(5))).unwrap());
    out.push(serde_json::from_str(protocol::PING).unwrap());
    out.push(serde_json::from_str(protocol::PONG).unwrap());
    let features = protocol::features(true);
    for reason in [None, Some("epoch")] {
        out.push(
            serde_json::from_str(&protocol::welcome(&protocol::Welcome {
                build: "b",
                features: &features,
                epoch: "e",
                session: "s",
                resumed: reason.is_none(),
                reason,
                last_rid: 0,
                role: Role::Guest,
                heartbeat_ms: 1,
            }))
            .unwrap(),
        );
    }
    out
}

/// The same keys, recursively (nulls match anything; arrays compare their first elements).
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => true,
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => match (x.first(), y.first()) {
            (Some(p), Some(q)) => same_shape(p, q),
            _ => true,
        },
        _ => true,
    }
}

/// Which reference an example should be compared with.
fn kind(v: &Value) -> String {
    let mut k = v["cmd"].as_str().unwrap_or("?").to_string();
    if let Some(t) = v["topic"].as_str() {
        k += &format!(" {t}");
        for f in ["items", "id", "order", "data"] {
            if v.get(f).is_some() {
                k += &format!(" {f}");
                break;
            }
        }
    }
    if let Some(n) = v["name"].as_str() {
        k += &format!(" {n}");
    }
    if v["cmd"] == "reply" {
        k += if v["ok"] == true { " ok" } else { " err" };
    }
    k
}

#[test]
fn every_example_in_the_protocol_doc_matches_the_server() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let client = blocks(&doc, "client");
    let server = blocks(&doc, "server");
    assert!(
        client.len() >= 20 && server.len() >= 30,
        "{} client and {} server examples",
        client.len(),
        server.len()
    );

    let mut client_cmds = std::collections::BTreeSet::new();
    for line in &client {
        match protocol::parse(line) {
            Ok(Incoming::Request { .. } | Incoming::Hello(_) | Incoming::Ping | Incoming::Pong) => {
            }
            Err(e) => panic!("the server refuses a documented client frame: {line}\n{e:?}"),
        }
        let v: Value = serde_json::from_str(line).unwrap();
        client_cmds.insert(v["cmd"].as_str().unwrap().to_string());
    }
    for cmd in ["hello", "ping", "pong"]
        .into_iter()
        .chain(jukebox::protocol::CMD_NAMES)
    {
        assert!(client_cmds.contains(cmd), "no client example of {cmd}");
    }

    let refs = references();
    let mut covered = std::collections::BTreeSet::new();
    for line in &server {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        let k = kind(&v);
        let candidates: Vec<&Value> = refs.iter().filter(|r| kind(r) == k).collect();
        assert!(
            !candidates.is_empty(),
            "the server never sends a message like: {line}"
        );
        assert!(
            candidates.iter().any(|r| same_shape(&v, r)),
            "documented shape differs from the server's: {line}\nserver: {}",
            candidates[0]
        );
        covered.insert(k);
    }
    for r in &refs {
        assert!(
            covered.contains(&kind(r)),
            "no documented example of: {}",
            kind(r)
        );
    }
}

/// The error-code table of §8 is the server's: every code it lists with the status the server
/// answers it with over HTTP, and every code the server has is in it.
#[test]
fn the_error_table_matches_the_server() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let errors = doc
        .split("\n## 8. Errors")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a section 8");
    let mut documented = std::collections::BTreeMap::new();
    for line in errors.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let code = cells[1].trim_matches('`');
        // The status is the last column.
        let status: u16 = cells
            .iter()
            .rev()
            .find(|c| !c.is_empty())
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in: {line}"));
        documented.insert(code.to_string(), status);
    }
    for code in ErrorCode::ALL {
        assert_eq!(
            documented.remove(code.as_str()),
            Some(code.http_status().as_u16()),
            "§8 row of {code}"
        );
    }
    assert!(
        documented.is_empty(),
        "codes the server never sends: {documented:?}"
    );
}
