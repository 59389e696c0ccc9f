//! The live protocol against the real binary, with real websocket clients: two phones seeing
//! each other's actions in order, resume, restarts, and every error and close code.

mod common;

use common::live::{raw, send_hello, Phone, Server};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const ALL: &[&str] = &["now_playing", "queue", "me", "room"];

async fn snapshots(p: &mut Phone) -> Value {
    // After a fresh welcome: one snapshot per subscribed topic.
    let mut np = Value::Null;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 4 {
        let v = p.recv().await;
        if v["cmd"] == "update" {
            let t = v["topic"].as_str().unwrap().to_string();
            if t == "now_playing" {
                np = v["data"].clone();
            }
            seen.insert(t);
        }
    }
    np
}

/// A `hello` with `token`, and `extra` fields over the usual ones.
fn hello(token: &str, extra: Value) -> Value {
    let mut v = json!({"cmd": "hello", "v": 1, "token": token});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// How the server closes a socket it did not welcome: the `bye` code and the close code.
async fn closed(ws: common::live::Ws) -> (Option<u64>, Option<u16>) {
    Phone::unwelcomed(ws).closed().await
}

/// A started jukebox that is playing (the first track starts once the first scan batch is
/// in, which a busy machine can take a moment over).
fn server(dir: &std::path::Path) -> Server {
    let music = common::music(dir, 5, 30.0);
    let s = Server::start(&dir.join("j.db"), &music, &[]);
    s.playing();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_see_each_others_actions_in_order() {
    let dir = common::tempdir();
    let s = server(dir.path());
    let (ta, tb) = (s.guest("Mia"), s.guest("Sam"));
    let mut a = Phone::connect(&s.addr, &ta, ALL).await;
    let mut b = Phone::connect(&s.addr, &tb, ALL).await;
    assert_eq!(a.welcome["resumed"], false);
    assert_eq!(a.welcome["role"], "guest");
    let np = snapshots(&mut a).await;
    snapshots(&mut b).await;
    let play = np["play_id"].as_str().unwrap().to_string();

    // A likes: its own update comes before its reply; B sees the update and the event.
    let (_, before) = a
        .ok(json!({"cmd": "like", "play_id": play, "on": true}))
        .await;
    assert!(
        before
            .iter()
            .any(|v| v["topic"] == "now_playing" && v["data"]["likes"] == 1),
        "the like's update precedes the reply: {before:?}"
    );
    let seen = b
        .until(|v| v["cmd"] == "event" && v["name"] == "liked")
        .await;
    assert!(seen
        .iter()
        .any(|v| v["topic"] == "now_playing" && v["data"]["likes"] == 1));
    assert_eq!(seen.last().unwrap()["data"]["by"], "Mia");

    // A requests a song; B sees the entry, the order and the event.
    let track = s.other_track(&np);
    let (reply, _) = a.ok(json!({"cmd": "request", "track_id": track})).await;
    let entry = reply["data"]["entry_id"].as_str().unwrap().to_string();
    let seen = b
        .until(|v| v["cmd"] == "event" && v["name"] == "requested")
        .await;
    assert!(seen
        .iter()
        .any(|v| v["topic"] == "queue" && v["id"] == entry.as_str()));
    assert!(seen
        .iter()
        .any(|v| v["topic"] == "queue" && v["order"] == json!([entry])));

    // B up-votes it; A sees two votes.
    b.ok(json!({"cmd": "vote", "entry_id": entry, "on": true}))
        .await;
    a.until(|v| v["topic"] == "queue" && v["data"]["votes"] == 2)
        .await;

    // Skip votes from both reach the threshold (2): the track changes for both.
    let vote_skip = json!({"cmd": "vote_skip", "play_id": play});
    a.ok(vote_skip.clone()).await;
    let (_, before) = b.ok(vote_skip.clone()).await;
    assert!(before
        .iter()
        .any(|v| v["cmd"] == "event" && v["name"] == "skipped"));
    let seen = a
        .until(|v| {
            v["topic"] == "now_playing"
                && v["data"]["play_id"] != play.as_str()
                && !v["data"].is_null()
        })
        .await;
    assert_eq!(seen.last().unwrap()["data"]["requested_by"], "Mia");
    // A late vote for the old play is refused, not applied to the new one.
    assert_eq!(a.refused(vote_skip).await, "stale_play");
    s.stop();
}

/// Every snapshot a fresh welcome brings, by topic.
async fn all_snapshots(p: &mut Phone) -> std::collections::BTreeMap<String, Value> {
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < ALL.len() {
        let v = p.recv().await;
        if v["cmd"] == "update" {
            seen.insert(v["topic"].as_str().unwrap().to_string(), v);
        }
    }
    seen
}

/// Snapshots every guest sees alike are encoded once and shared until their topic changes:
/// a phone that joins right after a change must see it, however soon after the last phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_joins_right_after_a_change_sees_it_in_its_snapshots() {
    let dir = common::tempdir();
    let s = server(dir.path());
    let join = |name: &str| {
        let token = s.guest(name);
        let addr = s.addr.clone();
        async move {
            let mut p = Phone::connect(&addr, &token, ALL).await;
            let snaps = all_snapshots(&mut p).await;
            (p, snaps)
        }
    };
    let (mut a, first) = join("A").await;
    let (_b, second) = join("B").await;
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("seq");
        v
    };
    assert_eq!(strip(&first["queue"]), strip(&second["queue"]));
    let np = first["now_playing"]["data"].clone();
    let play = np["play_id"].as_str().unwrap().to_string();

    // A change of the queue, then of now playing, each followed at once by a new phone.
    let (reply, _) = a
        .ok(json!({"cmd": "request", "track_id": s.other_track(&np)}))
        .await;
    let entry = reply["data"]["entry_id"].clone();
    let (_c, third) = join("C").await;
    assert_eq!(
        third["queue"]["order"],
        json!([entry]),
        "{}",
        third["queue"]
    );
    assert_eq!(third["now_playing"]["data"]["likes"], 0);
    a.ok(json!({"cmd": "like", "play_id": play, "on": true}))
        .await;
    let (_d, fourth) = join("D").await;
    assert_eq!(
        fourth["now_playing"]["data"]["likes"], 1,
        "{}",
        fourth["now_playing"]
    );
    assert_eq!(fourth["queue"]["order"], json!([entry]));
    // Each phone's own `me` is its own.
    assert_eq!(third["me"]["data"]["name"], "C", "{}", third["me"]);
    assert_eq!(fourth["me"]["data"]["name"], "D", "{}", fourth["me"]);
    s.stop();
}

/// Reads until the host message `text`; returns what came after `from_marker` (without seq).
async fn read_to(p: &mut Phone, text: &str) -> Vec<Value> {
    let seen = p
        .until(|v| v["name"] == "host_message" && v["data"]["text"] == text)
        .await;
    seen.into_iter()
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("seq");
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_phone_resumes_with_exactly_what_it_missed() {
    let dir = common::tempdir();
    let s = server(dir.path());
    let host = s.host();
    let (ta, tb, tc) = (s.guest("Mia"), s.guest("Sam"), s.guest("Twin"));
    let shared = &["now_playing", "queue", "room"];
    let mut a = Phone::connect(&s.addr, &ta, shared).await;
    let mut c = Phone::connect(&s.addr, &tc, shared).await;
    let mut b = Phone::connect(&s.addr, &tb, ALL).await;
    let np = snapshots(&mut b).await;
    let play = np["play_id"].as_str().unwrap().to_string();
    // A common point in both streams.
    s.announce(&host, "sync");
    read_to(&mut a, "sync").await;
    read_to(&mut c, "sync").await;
    let (session, last) = (a.session.clone(), a.last_seq);
    drop(a);
    // Things happen while A is away.
    b.ok(json!({"cmd": "like", "play_id": play})).await;
    b.ok(json!({"cmd": "request", "track_id": s.other_track(&np)}))
        .await;
    s.announce(&host, "end");
    let twin = read_to(&mut c, "end").await;

    let mut a = Phone::resume(&s.addr, &ta, &session, last).await;
    assert_eq!(a.welcome["resumed"], true, "{}", a.welcome);
    assert_eq!(a.welcome["session"], session.as_str());
    // Exactly what a phone that never left got, seq continuing from `last`.
    let got = read_to(&mut a, "end").await;
    assert_eq!(got, twin);
    assert!(got.iter().any(|v| v["name"] == "liked"));
    assert!(got.iter().any(|v| v["name"] == "requested"));
    // Nothing else was pending: only the count of connected guests (A is back, which the room
    // and the skip threshold show) precedes a pong.
    a.send(json!({"cmd": "ping"})).await;
    let before = a.until(|v| v["cmd"] == "pong").await;
    assert!(
        before[..before.len() - 1]
            .iter()
            .all(|v| v["topic"] == "room" || v["topic"] == "now_playing"),
        "{before:?}"
    );

    // Resume with nothing missed works too.
    let (session, last) = (a.session.clone(), a.last_seq);
    drop(a);
    s.wait_connected(2); // Sam and Twin: the server saw Mia's socket go
    let a = Phone::resume(&s.addr, &ta, &session, last).await;
    assert_eq!(a.welcome["resumed"], true);
    // A last_seq the session never sent is refused: a new session.
    let d = Phone::resume(&s.addr, &ta, &session, last + 1000).await;
    assert_eq!(
        (d.welcome["resumed"].as_bool(), d.welcome["reason"].as_str()),
        (Some(false), Some("too_old"))
    );

    // A server restart: resumed false, reason epoch, fresh snapshots.
    let (session, last) = (a.session.clone(), a.last_seq);
    drop((a, b, c, d));
    let (db, music) = (s.db.clone(), s.music.clone());
    assert!(s.stop().success());
    let s = Server::start(&db, &music, &[]);
    let mut a = Phone::resume(&s.addr, &ta, &session, last).await;
    assert_eq!(a.welcome["resumed"], false);
    assert_eq!(a.welcome["reason"], "epoch");
    assert_eq!(a.last_seq, 0);
    let mut np2 = snapshots(&mut a).await;
    if np2.is_null() {
        // The snapshot came before the player had started again: the update follows.
        let seen = a
            .until(|v| v["topic"] == "now_playing" && !v["data"].is_null())
            .await;
        np2 = seen.last().unwrap()["data"].clone();
    }
    assert_eq!(
        np2["play_id"], np["play_id"],
        "the same play resumed after the restart"
    );
    assert_eq!(np2["likes"], 1);
    // A session id from no epoch, and an unknown one of this epoch.
    let c = Phone::resume(&s.addr, &ta, "s_nope", 5).await;
    assert_eq!(c.welcome["reason"], "epoch");
    let this_epoch = a.session.rsplit_once('_').unwrap().0.to_string();
    let c = Phone::resume(&s.addr, &ta, &format!("{this_epoch}_00000000"), 5).await;
    assert_eq!(c.welcome["reason"], "unknown_session");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_and_close_codes() {
    let dir = common::tempdir();
    let s = server(dir.path());
    let token = s.guest("Mia");

    // Foreign origin: refused at the upgrade with 403. Own origin: fine.
    let err = raw(&s.addr, "/ws?v=1", Some("http://evil.example"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    raw(&s.addr, "/ws?v=1", Some(&format!("http://{}", s.addr)))
        .await
        .unwrap();

    // Forged token: bye 4401.
    let forged = send_hello(&s.addr, hello("forged", json!({}))).await;
    assert_eq!(closed(forged).await, (Some(4401), Some(4401)));
    // Unsupported version: 4426.
    let v2 = raw(&s.addr, "/ws?v=2", None).await.unwrap();
    assert_eq!(closed(v2).await, (Some(4426), Some(4426)));
    // No hello in 5 s: 4408.
    let silent = raw(&s.addr, "/ws?v=1", None).await.unwrap();
    assert_eq!(closed(silent).await, (Some(4408), Some(4408)));

    // Bad JSON: an unsequenced error, the socket stays open.
    let mut a = Phone::connect(&s.addr, &token, &[]).await;
    a.send(json!("not an object")).await;
    a.ws.send(Message::text("{oops")).await.unwrap();
    let e = a.recv().await;
    assert_eq!(e["cmd"], "error");
    let e = a.recv().await;
    assert_eq!(
        (e["cmd"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_json"))
    );
    assert!(e.get("seq").is_none());
    // Unknown command, wrong types, duplicates: replies with codes.
    assert_eq!(a.refused(json!({"cmd": "dance"})).await, "unknown_cmd");
    let r = a.request(json!({"cmd": "like", "play_id": 5})).await;
    let (reply, _) = a.reply(r).await;
    assert_eq!(reply["error"]["code"], "bad_request");
    assert_eq!(reply["error"]["field"], "play_id");
    a.send(json!({"cmd": "ping", "rid": 1})).await; // pings need no rid and get a pong
    assert_eq!(a.recv().await["cmd"], "pong");
    a.send(json!({"cmd": "unsub", "rid": 1, "topics": ["queue"]}))
        .await;
    let (reply, _) = a.reply(1).await;
    assert_eq!(reply["error"]["code"], "duplicate");
    // A guest calling host commands.
    for cmd in ["skip", "pause", "play", "rescan"] {
        assert_eq!(a.refused(json!({"cmd": cmd})).await, "forbidden", "{cmd}");
    }
    let admin = json!({"cmd": "sub", "topics": ["admin"]});
    assert_eq!(a.refused(admin).await, "forbidden");

    // 100 KB frame: bye 1009.
    a.ws.send(Message::text("x".repeat(100_000))).await.unwrap();
    assert_eq!(a.closed().await, (Some(1009), Some(1009)));

    // 21 bad frames in a minute: 4400.
    let mut a = Phone::connect(&s.addr, &token, &[]).await;
    for _ in 0..21 {
        a.ws.send(Message::text("{")).await.unwrap();
    }
    assert_eq!(a.closed().await.0, Some(4400));

    // Too many sockets for one guest: 4429.
    let mut phones = Vec::new();
    for _ in 0..5 {
        phones.push(Phone::connect(&s.addr, &token, &[]).await);
    }
    let sixth = send_hello(&s.addr, hello(&token, json!({}))).await;
    assert_eq!(closed(sixth).await, (Some(4429), Some(4429)));
    drop(phones);
    // Mia's five slots are free once the server has seen all her sockets go.
    s.wait_connected(0);

    // Rate limits: a flood gets rate_limited with a retry time.
    let mut a = Phone::connect(&s.addr, &token, &[]).await;
    for _ in 0..100 {
        a.request(json!({"cmd": "unsub", "topics": []})).await;
    }
    let seen = a.until(|v| v["cmd"] == "reply" && v["rid"] == 100).await;
    let limited: Vec<&Value> = seen
        .iter()
        .filter(|v| v["error"]["code"] == "rate_limited")
        .collect();
    assert!(!limited.is_empty(), "no rate limit in a flood of 100");
    assert!(limited[0]["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_seconds_of_silence_close_the_socket_but_keep_the_session() {
    let dir = common::tempdir();
    let s = server(dir.path());
    let token = s.guest("Quiet");
    let mut a = Phone::connect(&s.addr, &token, &["room"]).await;
    let session = a.session.clone();
    let started = std::time::Instant::now();
    // Read without ever sending: the server pings after 20 s, closes after 50 s.
    let mut pinged = false;
    let bye = loop {
        match tokio::time::timeout(
            std::time::Duration::from_secs(70),
            common::live::next_json(&mut a.ws),
        )
        .await
        {
            Ok(Some(v)) if v["cmd"] == "ping" => pinged = true,
            Ok(Some(v)) if v["cmd"] == "bye" => break v["code"].as_u64(),
            Ok(Some(_)) => {}
            Ok(None) => panic!("closed without bye"),
            Err(_) => panic!("never closed"),
        }
    };
    assert!(pinged, "the server pings after 20 s of quiet");
    assert_eq!(bye, Some(4408));
    let took = started.elapsed().as_secs();
    assert!((48..=55).contains(&took), "closed after {took} s");
    let a = Phone::resume(&s.addr, &token, &session, a.last_seq).await;
    assert_eq!(
        a.welcome["resumed"], true,
        "the session outlives the socket"
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rules() {
    let dir = common::tempdir();
    let s = server(dir.path());
    let token = s.guest("Mia");

    // hello.v other than 1: an unsupported_version error, then bye 4426.
    let mut ws = send_hello(&s.addr, hello(&token, json!({"v": 2}))).await;
    let e = common::live::next_json(&mut ws).await.unwrap();
    assert_eq!(
        (e["cmd"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unsupported_version"))
    );
    assert_eq!(closed(ws).await, (Some(4426), Some(4426)));

    // A hello over 16 KiB: bye 1009.
    let pad = "x".repeat(20_000);
    let big = send_hello(&s.addr, hello(&token, json!({"pad": pad}))).await;
    assert_eq!(closed(big).await, (Some(1009), Some(1009)));

    // A first frame that is not hello: 4400.
    let ping = send_hello(&s.addr, json!({"cmd":"ping"})).await;
    assert_eq!(closed(ping).await.0, Some(4400));

    // A guest asking for the host's admin topic: 4403.
    let admin = send_hello(&s.addr, hello(&token, json!({"topics": ["admin"]}))).await;
    assert_eq!(closed(admin).await, (Some(4403), Some(4403)));

    // Unknown topics in hello are ignored; known ones get their snapshots.
    let mut a = Phone::connect(&s.addr, &token, &["weather", "room"]).await;
    let v = a.recv().await;
    assert_eq!(v["topic"], "room");

    // welcome.last_rid tells a resuming client which requests arrived.
    for _ in 0..3 {
        let r = a.request(json!({"cmd": "unsub", "topics": []})).await;
        a.reply(r).await;
    }
    let (session, last) = (a.session.clone(), a.last_seq);
    drop(a);
    s.wait_connected(0); // the server saw the socket go: the session is detached
    let a = Phone::resume(&s.addr, &token, &session, last).await;
    assert_eq!(a.welcome["resumed"], true);
    assert_eq!(a.welcome["last_rid"], 3);

    // The host gets the admin topic.
    let host = s.host();
    let mut h = Phone::connect(&s.addr, &host, &["admin"]).await;
    assert_eq!(h.welcome["role"], "host");
    let v = h.recv().await;
    assert_eq!(v["topic"], "admin");
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "Mia"));
    s.stop();
}

/// A client library we did not write (Python `websockets`) speaks the protocol end to end.
#[test]
fn an_independent_client_library_conforms() {
    let dir = common::tempdir();
    let s = server(dir.path());
    let token = s.guest("Py");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&s.addr)
        .arg(&token)
        .output()
        .expect("python3 runs (scripts/deps.sh test installs websockets)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "hello/welcome",
        "snapshots",
        "like",
        "request",
        "errors",
        "resume",
    ] {
        assert!(stdout.contains(&format!("ok {check}")), "{stdout}");
    }
    s.stop();
}

/// When the Wi-Fi comes back, every phone reconnects in the same instant: the party port's
/// backlog must hold them all (a backlog of 128 dropped the rest's SYNs, and those phones
/// waited out TCP's one-second retransmission; bench/resume.rs). The kernel clamps it to
/// `net.core.somaxconn`; `ss` shows a listening socket's backlog as its Send-Q.
#[test]
fn the_party_port_backlog_holds_a_room_reconnecting_at_once() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 1, 5.0);
    let s = Server::start(
        &dir.path().join("j.db"),
        &music,
        &["--max-connections", "2000"],
    );
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("a listening socket in {text:?}"));
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(backlog, somaxconn.min(2000), "{text}");
}
