//! Protocol revision 2 against the real binary: `welcome.features`, guest ids beside every
//! display name (two guests with one name stay two guests), and every refusal carrying the
//! numbers of its message in `error.data`, on the websocket and in HTTP error bodies.

mod common;

use common::live::{Phone, Server};
use serde_json::{json, Value};
use std::path::Path;

/// Eight tones, two per artist ("Artist 0" has Songs 0 and 1, …), so every artist has a
/// second track to trip the artist spacing with.
fn pairs(dir: &Path) -> std::path::PathBuf {
    let m = dir.join("music");
    std::fs::create_dir_all(&m).unwrap();
    for i in 0..8u32 {
        common::tone(
            &m,
            &format!("{i:02}.flac"),
            220 + 55 * i,
            30.0,
            &[
                ("title", &format!("Song {i}")),
                ("artist", &format!("Artist {}", i / 2)),
            ],
        );
    }
    m
}

/// The library as (track id, artist).
fn library(s: &Server) -> Vec<(String, String)> {
    let (st, v) = s.get("/api/search?q=&limit=100");
    assert_eq!(st, 200, "{v}");
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["artist"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits (bounded) until the play is no longer `play_id`; returns the new `now_playing`.
fn next_play(s: &Server, play_id: &Value) -> Value {
    s.wait_state("the next play", |st| {
        let np = &st["now_playing"];
        (!np.is_null() && np["play_id"] != *play_id).then(|| np.clone())
    })
}

/// Sends a request and returns its reply's `error` (panics on success).
async fn refused(p: &mut Phone, frame: Value) -> Value {
    let rid = p.request(frame.clone()).await;
    let (reply, _) = p.reply(rid).await;
    assert_eq!(reply["ok"], false, "{frame} was not refused: {reply}");
    reply["error"].clone()
}

async fn request(p: &mut Phone, track: &str) -> Value {
    refused(p, json!({"cmd": "request", "track_id": track})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_carries_its_numbers() {
    let dir = common::tempdir();
    let music = pairs(dir.path());
    let s = Server::start(&dir.path().join("j.db"), &music, &["--request-limit", "1"]);
    let first = s.playing();
    let host = s.host();
    let lib = library(&s);
    let artist_of = |id: &Value| lib.iter().find(|(t, _)| t == id).unwrap().1.clone();
    let sibling = |id: &Value| {
        let artist = artist_of(id);
        lib.iter()
            .find(|(t, a)| *a == artist && t != id)
            .unwrap()
            .0
            .clone()
    };
    let mut mia = Phone::connect(&s.addr, &s.guest("Mia"), &[]).await;
    assert_eq!(
        mia.welcome["features"],
        json!([
            "ids",
            "refusals",
            "history",
            "sound",
            "rules",
            "dedications",
            "wifi"
        ])
    );

    // The song playing now, and another by its artist.
    let playing = &first["track"]["id"];
    let e = request(&mut mia, playing.as_str().unwrap()).await;
    assert_eq!(e["code"], "recently_played", "{e}");
    assert_eq!(e["data"], json!({"playing_now": true}), "{e}");
    let e = request(&mut mia, &sibling(playing)).await;
    assert_eq!(e["code"], "artist_spacing", "{e}");
    assert_eq!(
        e["data"],
        json!({"artist": artist_of(playing), "plays_ago": 0, "spacing": 2}),
        "{e}"
    );

    // After a skip: the song that just played, and its artist one play ago.
    let (st, v) = s.post(
        "/api/host/skip",
        &json!({"play_id": first["play_id"]}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    let second = next_play(&s, &first["play_id"]);
    let e = request(&mut mia, playing.as_str().unwrap()).await;
    assert_eq!(e["code"], "recently_played", "{e}");
    assert_eq!(
        e["data"],
        json!({"minutes_ago": 0, "wait_minutes": 60}),
        "{e}"
    );
    assert_eq!(
        e["message"],
        "played 0 minutes ago; it can be requested again in 60 minutes"
    );
    let e = request(&mut mia, &sibling(playing)).await;
    assert_eq!(e["code"], "artist_spacing", "{e}");
    assert_eq!(
        e["data"],
        json!({"artist": artist_of(playing), "plays_ago": 1, "spacing": 2}),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("played 1 song ago"),
        "{e}"
    );

    // Over the limit of one song waiting: a track by neither artist heard so far.
    let heard = [artist_of(playing), artist_of(&second["track"]["id"])];
    let fresh: Vec<&String> = lib
        .iter()
        .filter(|(_, a)| !heard.contains(a))
        .map(|(t, _)| t)
        .collect();
    let rid = mia
        .request(json!({"cmd": "request", "track_id": fresh[0]}))
        .await;
    let (ok, _) = mia.reply(rid).await;
    assert_eq!(ok["ok"], true, "{ok}");
    let e = request(&mut mia, fresh.last().unwrap()).await;
    assert_eq!(e["code"], "limit_reached", "{e}");
    assert_eq!(e["data"], json!({"limit": 1}), "{e}");

    // Refusals whose message states no number carry no data.
    let e = request(&mut mia, "t99999").await;
    assert_eq!(
        (e["code"].as_str(), e.get("data")),
        (Some("not_found"), None)
    );
    let e = refused(
        &mut mia,
        json!({"cmd": "like", "play_id": first["play_id"]}),
    )
    .await;
    assert_eq!(
        (e["code"].as_str(), e.get("data")),
        (Some("stale_play"), None)
    );
    let (st, v) = s.post(
        "/api/host/settings",
        &json!({"requests_paused": true}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    let e = request(&mut mia, fresh.last().unwrap()).await;
    assert_eq!(
        (e["code"].as_str(), e.get("data")),
        (Some("requests_paused"), None)
    );

    // Likes that change something are limited per guest: the wait is in `data` too.
    let mut limited = None;
    for i in 0..40 {
        let rid = mia
            .request(json!({"cmd": "like", "play_id": second["play_id"], "on": i % 2 == 0}))
            .await;
        let (reply, _) = mia.reply(rid).await;
        if reply["ok"] == false {
            limited = Some(reply["error"].clone());
            break;
        }
    }
    let e = limited.expect("the like limit was never reached");
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert!(e["retry_after_ms"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(e["data"], json!({"retry_after_ms": e["retry_after_ms"]}));

    // So are a socket's requests: 60 at once at most, by default.
    let mut sam = Phone::connect(&s.addr, &s.guest("Sam"), &[]).await;
    let first_rid = sam.rid + 1;
    for _ in 0..80 {
        sam.request(json!({"cmd": "sub", "topics": []})).await;
    }
    let mut limited = Vec::new();
    for rid in first_rid..first_rid + 80 {
        let (reply, _) = sam.reply(rid).await;
        if reply["ok"] == false {
            limited.push(reply["error"].clone());
        }
    }
    assert!(!limited.is_empty(), "80 requests at once were all taken");
    for e in &limited {
        assert_eq!(e["code"], "rate_limited", "{e}");
        assert_eq!(e["data"], json!({"retry_after_ms": e["retry_after_ms"]}));
    }

    // A banned guest's request is forbidden, without data.
    let (st, v) = s.post(
        "/api/host/settings",
        &json!({"requests_paused": false}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    let mia_id = s.get("/api/state").1["queue"]["items"][0]["by_id"].clone();
    let (st, v) = s.post("/api/host/ban", &json!({"guest_id": mia_id}), Some(&host));
    assert_eq!(st, 200, "{v}");
    let e = request(&mut mia, fresh.last().unwrap()).await;
    assert_eq!(
        (e["code"].as_str(), e.get("data")),
        (Some("forbidden"), None)
    );
}

#[test]
fn http_error_bodies_carry_the_same_data() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    let np = s.playing();
    let host = s.host();

    // Wrong PINs until the login limit: the wait is beside the code and in `data`.
    let mut last = (0, Value::Null);
    for _ in 0..20 {
        last = s.post("/api/host/login", &json!({"pin": "000000"}), None);
        if last.0 == 429 {
            break;
        }
        assert_eq!(last.0, 401, "{}", last.1);
    }
    let (st, v) = last;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["code"], "rate_limited");
    assert!(v["retry_after_ms"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["data"], json!({"retry_after_ms": v["retry_after_ms"]}));

    // Too many pairing codes: the same.
    let mut last = (0, Value::Null);
    for _ in 0..20 {
        last = s.post("/api/screen/pair", &json!({}), None);
        if last.0 == 429 {
            break;
        }
    }
    let (st, v) = last;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["data"], json!({"retry_after_ms": v["retry_after_ms"]}));

    // A refusal of the hub at its status (409), a missing entry (404), a bad field (400):
    // the same error object as the websocket's, and no `data` where no number is stated.
    let (st, v) = s.post("/api/host/skip", &json!({"play_id": "p99999"}), Some(&host));
    assert_eq!((st, v["code"].as_str()), (409, Some("stale_play")), "{v}");
    assert!(v.get("data").is_none(), "{v}");
    let (st, v) = s.post(
        "/api/host/remove",
        &json!({"entry_id": "r99999"}),
        Some(&host),
    );
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")), "{v}");
    assert!(v.get("data").is_none(), "{v}");
    let (st, v) = s.post("/api/host/volume", &json!({"volume": "loud"}), Some(&host));
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    assert_eq!(v["field"], "volume", "{v}");
    assert_eq!(
        s.get("/api/state").1["now_playing"]["play_id"],
        np["play_id"]
    );
}

/// Two guests with the same name: every name the others see comes with the guest id of the
/// one who did it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_with_one_name_are_told_apart_by_id() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 5, 30.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    let np = s.playing();
    let mut a = Phone::connect(&s.addr, &s.guest("Mia"), &["me", "queue"]).await;
    let mut b = Phone::connect(&s.addr, &s.guest("Mia"), &["me", "queue"]).await;
    let me = |p: Vec<Value>| {
        p.into_iter()
            .find(|v| v["topic"] == "me")
            .map(|v| v["data"]["guest_id"].clone())
            .unwrap()
    };
    let a_id = me(a.until(|v| v["topic"] == "me").await);
    let b_id = me(b.until(|v| v["topic"] == "me").await);
    assert_ne!(a_id, b_id);

    // B likes: A's copy of the event names B by id, under the shared name.
    let rid = b
        .request(json!({"cmd": "like", "play_id": np["play_id"]}))
        .await;
    assert_eq!(b.reply(rid).await.0["ok"], true);
    let seen = a.until(|v| v["name"] == "liked").await;
    let liked = &seen.last().unwrap()["data"];
    assert_eq!((&liked["by"], &liked["by_id"]), (&json!("Mia"), &b_id));

    // A requests: the queue entry and the event carry A's id.
    let queued: Vec<String> = s.get("/api/state").1["queue"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["track"]["id"].as_str().unwrap().to_string())
        .collect();
    let (_, found) = s.get("/api/search?q=&limit=100");
    let track = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .find(|t| *t != np["track"]["id"] && !queued.contains(t))
        .unwrap();
    let rid = a
        .request(json!({"cmd": "request", "track_id": track}))
        .await;
    assert_eq!(a.reply(rid).await.0["ok"], true);
    let seen = b.until(|v| v["name"] == "requested").await;
    let requested = &seen.last().unwrap()["data"];
    assert_eq!(
        (&requested["by"], &requested["by_id"]),
        (&json!("Mia"), &a_id)
    );
    let entry = s.get("/api/state").1["queue"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["track"]["id"] == track.as_str())
        .cloned()
        .unwrap();
    assert_eq!((&entry["by"], &entry["by_id"]), (&json!("Mia"), &a_id));

    // When it plays, now_playing and track_started name A by id.
    let (st, v) = s.post("/api/host/skip", &json!({}), Some(&s.host()));
    assert_eq!(st, 200, "{v}");
    let now = next_play(&s, &np["play_id"]);
    assert_eq!(now["track"]["id"], track.as_str(), "{now}");
    assert_eq!(
        (&now["requested_by"], &now["requested_by_id"]),
        (&json!("Mia"), &a_id)
    );
    let seen = b.until(|v| v["name"] == "track_started").await;
    assert_eq!(seen.last().unwrap()["data"]["requested_by_id"], a_id);
}
