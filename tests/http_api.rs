//! The JSON API of the real binary: tokens, host login and its rate limit, the read-only state
//! and search for scripts, cover art with caching headers, host actions with the host token,
//! `/healthz`, and JSON errors with the protocol's codes.

mod common;

use std::process::Command;

use common::live::{Phone, Server, PIN};
use serde_json::{json, Value};

fn art_track(music: &std::path::Path) {
    let png = music.join("cover.png");
    let ok = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=blue:s=8x8",
            "-frames:v",
            "1",
        ])
        .arg(&png)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let plain = common::tone(
        music,
        "plain-art.mp3",
        300,
        30.0,
        &[("title", "Pictured"), ("artist", "Painter")],
    );
    let ok = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&plain)
        .arg("-i")
        .arg(&png)
        .args([
            "-map",
            "0",
            "-map",
            "1",
            "-c",
            "copy",
            "-id3v2_version",
            "3",
        ])
        .arg(music.join("art.mp3"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::remove_file(plain).unwrap();
    std::fs::remove_file(png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 4, 30.0);
    art_track(&music);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    guests_are_made_with_or_without_a_name(&s);
    state_and_search_are_readable(&s);
    cover_art_comes_with_caching_headers(&s);

    // Host login: a wrong PIN is 401; too many wrong ones lock the address out, right PIN too.
    let (st, v) = s.post("/api/host/login", &json!({"pin": "00000000"}), None);
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthorized")));
    let host = s.host();
    let guest = s.guest("Mia");
    let _phone = host_actions_reach_the_phones(&s, &host, &guest).await;
    health_and_unknown_paths(&s);

    // Brute force: after 5 wrong PINs a minute, even the right one waits.
    for _ in 0..5 {
        s.post("/api/host/login", &json!({"pin": "11111111"}), None);
    }
    let (st, v) = s.post("/api/host/login", &json!({"pin": PIN}), None);
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert!(v["retry_after_ms"].as_u64().unwrap() > 0);
    s.stop();
}

/// The status and the protocol code of an answer.
fn code(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["code"].as_str())
}

/// The status and the field an answer refuses.
fn field(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["field"].as_str())
}

/// Guests: a name is optional; bad names are refused with the field named.
fn guests_are_made_with_or_without_a_name(s: &Server) {
    let (st, v) = s.post("/api/guest", &json!({}), None);
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["token"].as_str().unwrap().len(), 64, "128+ bits of token");
    assert!(v["guest_id"].as_str().unwrap().starts_with("g_"));
    let (st, v) = s.post("/api/guest", &json!({"name": "  Zoë  "}), None);
    assert_eq!((st, v["name"].as_str()), (201, Some("Zoë")));
    let long = s.post("/api/guest", &json!({"name": "x".repeat(33)}), None);
    assert_eq!(
        (long.0, long.1["code"].as_str(), long.1["field"].as_str()),
        (400, Some("bad_request"), Some("name"))
    );
    let bell = s.post("/api/guest", &json!({"name": "bad\u{7}bell"}), None);
    assert_eq!(field(&bell), (400, Some("name")));
    assert_eq!(
        field(&s.post("/api/guest", &json!({"name": 5}), None)),
        (400, Some("name"))
    );
    let (st, v) = s.post_text("/api/guest", "{nope");
    assert_eq!(st, 400);
    assert_eq!(v["code"], "bad_json");
}

/// Read-only state and search, paged with a cursor.
fn state_and_search_are_readable(s: &Server) {
    let (st, state) = s.get("/api/state");
    assert_eq!(st, 200);
    assert!(
        state["queue"]["items"].is_array() && state["room"]["library_size"] == 5,
        "{state}"
    );
    let (st, page1) = s.get("/api/search?q=song&limit=2");
    assert_eq!(st, 200);
    assert_eq!(page1["results"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let (_, page2) = s.get(&format!("/api/search?q=song&limit=2&cursor={cursor}"));
    assert_eq!(page2["results"].as_array().unwrap().len(), 2);
    assert_ne!(page1["results"][0]["id"], page2["results"][0]["id"]);
    assert_eq!(
        field(&s.get("/api/search?q=song&cursor=zzz")),
        (400, Some("cursor"))
    );
    let (_, v) = s.get("/api/search?q=beyonce");
    assert_eq!(v["results"].as_array().unwrap().len(), 0);
}

/// Cover art: the image with caching headers, 304 when unchanged, 404 without art.
fn cover_art_comes_with_caching_headers(s: &Server) {
    let (_, v) = s.get("/api/search?q=pictured");
    let t = &v["results"][0];
    let art = t["art"]
        .as_str()
        .expect("an art url for a track with a cover")
        .to_string();
    let mut resp = ureq::get(s.url(&art)).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert!(resp
        .body_mut()
        .read_to_vec()
        .unwrap()
        .starts_with(b"\x89PNG"));
    let resp = ureq::get(s.url(&art))
        .header("If-None-Match", &etag)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);
    let (_, v) = s.get("/api/search?q=song&limit=1");
    let plain = v["results"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(s.get(&format!("/api/art/{plain}")).0, 404);
    assert_eq!(s.get("/api/art/zzz").0, 404);
}

/// Host actions over HTTP: a message and the volume reach a guest's phone (returned, still
/// connected); bad values, stale plays, guests, forged tokens and unknown actions are refused.
async fn host_actions_reach_the_phones(s: &Server, host: &str, guest: &str) -> Phone {
    let mut phone = Phone::connect(&s.addr, guest, &["now_playing"]).await;
    s.announce(host, "Pizza is here!");
    let ev = phone
        .until(|v| v["name"] == "host_message")
        .await
        .pop()
        .unwrap();
    assert_eq!(ev["data"]["text"], "Pizza is here!");
    let action = |path: &str, body: Value, token: Option<&str>| s.post(path, &body, token);
    assert_eq!(
        action("/api/host/volume", json!({"volume": 40}), Some(host)).0,
        200
    );
    phone
        .until(|v| v["topic"] == "now_playing" && v["data"]["volume"] == 40)
        .await;
    let loud = action("/api/host/volume", json!({"volume": "loud"}), Some(host));
    assert_eq!(field(&loud), (400, Some("volume")));
    let stale = action("/api/host/skip", json!({"play_id": "p999"}), Some(host));
    assert_eq!(code(&stale), (409, Some("stale_play")));
    assert_eq!(action("/api/host/skip", json!({}), Some(host)).0, 200);
    let hi = || json!({"text": "hi"});
    let by_guest = action("/api/host/message", hi(), Some(guest));
    assert_eq!(code(&by_guest), (403, Some("forbidden")));
    let forged = action("/api/host/message", hi(), Some("forged"));
    assert_eq!(code(&forged), (401, Some("unauthorized")));
    let anonymous = action("/api/host/message", hi(), None);
    assert_eq!(code(&anonymous), (401, Some("unauthorized")));
    let dance = action("/api/host/dance", json!({}), Some(host));
    assert_eq!(code(&dance), (404, Some("not_found")));
    let like = action("/api/host/like", json!({"play_id": "p1"}), Some(host));
    assert_eq!(
        code(&like),
        (404, Some("not_found")),
        "guest commands are not host actions"
    );
    phone
}

/// Health (with the one phone connected), and JSON for unknown paths too.
fn health_and_unknown_paths(s: &Server) {
    let (st, h) = s.get("/healthz");
    assert_eq!(st, 200);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["library_size"], 5);
    assert_eq!(h["phones_connected"], 1);
    assert!(h["audio"]["ok"].as_bool().unwrap());
    assert!(h["uptime_s"].is_u64());
    assert_eq!(code(&s.get("/nope")), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counting_and_personal_events() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 5, 30.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    let host = s.host();
    // The troll has a phone of its own (a ban covers the addresses it used).
    let (ta, tb) = (s.guest("Mia"), s.guest("Sam"));
    let tc = s.guest_from("127.0.0.66", "Troll").await;
    let mut a = Phone::connect(&s.addr, &ta, &["now_playing", "room", "me", "queue"]).await;
    let _a2 = Phone::connect(&s.addr, &ta, &[]).await; // a second tab of Mia
    let _b = Phone::connect(&s.addr, &tb, &[]).await;
    let _c = Phone::connect_from(&s.addr, "127.0.0.66", &tc, &[]).await;
    // Three guests connected, whatever the tabs: the room says so.
    a.until(|v| v["topic"] == "room" && v["data"]["guests_connected"] == 3)
        .await;
    // A banned guest is not counted.
    let troll_id = {
        let mut h = Phone::connect(&s.addr, &host, &["admin"]).await;
        let snap = h.until(|v| v["topic"] == "admin").await.pop().unwrap();
        snap["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "Troll")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (st, _) = s.post("/api/host/ban", &json!({"guest_id": troll_id}), Some(&host));
    assert_eq!(st, 200);
    a.until(|v| v["topic"] == "room" && v["data"]["guests_connected"] == 2)
        .await;
    // A TV screen (paired by the host) is not a guest in the room: a screen and one more
    // guest make 3, not 4.
    let _tv = Phone::connect(&s.addr, &s.screen(&host), &["now_playing", "room"]).await;
    let _d = Phone::connect(&s.addr, &s.guest("Dee"), &[]).await;
    let room = a
        .until(|v| v["topic"] == "room" && v["data"]["guests_connected"] != 2)
        .await
        .pop()
        .unwrap();
    assert_eq!(room["data"]["guests_connected"], 3, "{room}");

    // Mia's request becomes next: she alone is told; a like of it tells her too.
    let track = s.other_track(&s.get("/api/state").1["now_playing"]);
    let rid = a
        .request(json!({"cmd": "request", "track_id": track}))
        .await;
    let (reply, before) = a.reply(rid).await;
    assert_eq!(reply["ok"], true);
    assert!(
        before.iter().any(|v| v["name"] == "your_request_next"),
        "{before:?}"
    );
    let (st, _) = s.post("/api/host/skip", &json!({}), Some(&host));
    assert_eq!(st, 200);
    let now = a
        .until(|v| v["topic"] == "now_playing" && v["data"]["requested_by"] == "Mia")
        .await
        .pop()
        .unwrap();
    let mut b = Phone::connect(&s.addr, &tb, &[]).await;
    let rid = b
        .request(json!({"cmd": "like", "play_id": now["data"]["play_id"]}))
        .await;
    b.reply(rid).await;
    let ev = a
        .until(|v| v["name"] == "your_request_liked")
        .await
        .pop()
        .unwrap();
    assert_eq!(ev["data"]["by"], "Sam");
    s.stop();
}

/// The phone app (gzipped, ETag, CSP), the join address and its QR code, and the host's export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_the_join_address_and_the_export() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 2, 30.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut req = ureq::get(s.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        let h = resp.headers().clone();
        (
            resp.status().as_u16(),
            h,
            resp.body_mut().read_to_vec().unwrap(),
        )
    };

    // Pages: compressed when asked, plain otherwise; revalidated with the ETag.
    for page in ["/", "/host", "/tv"] {
        let (st, h, body) = get(page, &[("Accept-Encoding", "gzip, br")]);
        assert_eq!(st, 200, "{page}");
        assert_eq!(h["content-encoding"], "gzip", "{page}");
        assert!(body.starts_with(&[0x1f, 0x8b]), "{page} is gzip");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'"));
        let etag = h["etag"].to_str().unwrap().to_string();
        let (st, _, body) = get(page, &[("If-None-Match", &etag)]);
        assert_eq!((st, body.len()), (304, 0), "{page}");
        let (st, h, body) = get(page, &[]);
        assert_eq!(st, 200);
        assert!(h.get("content-encoding").is_none());
        let html = String::from_utf8(body).unwrap().to_lowercase();
        assert!(html.contains("<!doctype html>"), "{page}");
    }
    let (st, h, _) = get("/manifest.webmanifest", &[]);
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "application/manifest+json");
    assert_eq!(get("/nothing.js", &[]).0, 404);
    assert_eq!(get("/../Cargo.toml", &[]).0, 404);
    let (st, v) = s.post_text("/", "");
    assert_eq!(st, 405);
    assert_eq!(v["code"], "method_not_allowed");

    // The join address: with mDNS off (as here) no `.local` name, which nothing would
    // answer, but the listening address.
    let (st, join) = s.get("/api/join");
    assert_eq!(st, 200);
    assert_eq!(join["url"], format!("http://{}/", s.addr));
    assert_eq!(join["host"], Value::Null);
    assert_eq!(join["wifi"], Value::Null);
    assert_eq!(join["addresses"], json!([format!("http://{}/", s.addr)]));
    assert_eq!(join["qr_url"], format!("http://{}/", s.addr));
    let (st, h, svg) = get("/api/qr.svg", &[]);
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "image/svg+xml");
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("<path"), "{svg:.200}");

    // Export: the host's only; tonight's plays as CSV or M3U. A play is announced only once it
    // is on disk, so once something plays the export lists it.
    s.playing();
    let host = s.host();
    let guest = s.guest("Mia");
    let export = |format: &str, token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        let (st, h, body) = get(&format!("/api/host/export?format={format}"), &headers);
        (st, h, String::from_utf8(body).unwrap())
    };
    assert_eq!(export("csv", None).0, 401);
    assert_eq!(export("csv", Some(&guest)).0, 403);
    let (st, _, body) = export("xml", Some(&host));
    assert_eq!(st, 400);
    assert!(body.contains("\"field\":\"format\""), "{body}");
    let (st, h, csv) = export("csv", Some(&host));
    assert_eq!(st, 200);
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    assert!(csv.starts_with("started_at,title,artist"), "{csv}");
    assert!(csv.contains("Song "), "the playing track is listed: {csv}");
    let (st, _, m3u) = export("m3u", Some(&host));
    assert_eq!(st, 200);
    assert!(m3u.starts_with("#EXTM3U"), "{m3u}");
    s.stop();
}

/// A party the host paused stays paused through a restart, at the same place; played again,
/// it plays on after the next restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_party_stays_paused_after_a_restart() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 2, 60.0);
    let db = dir.path().join("j.db");
    let s = Server::start(&db, &music, &[]);
    let host = s.host();
    // Paused a second into the song, so that "the same place" is a place.
    s.wait_state("the first song a second in", |st| {
        let pos = st["now_playing"]["position_ms"].as_u64();
        pos.is_some_and(|p| p >= 1000).then_some(())
    });
    assert_eq!(s.post("/api/host/pause", &json!({}), Some(&host)).0, 200);
    let before = s.get("/api/state").1["now_playing"].clone();
    assert_eq!(before["paused"], true, "{before}");
    s.stop();

    let s = Server::start(&db, &music, &[]);
    let np = |s: &Server| s.get("/api/state").1["now_playing"].clone();
    s.playing();
    let after = np(&s);
    assert_eq!(
        after["play_id"], before["play_id"],
        "the same play: {after}"
    );
    assert_eq!(after["paused"], true, "still paused: {after}");
    // Not a wait for anything: the time that passes is the test (a paused play stays put).
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let later = np(&s);
    assert_eq!(later["paused"], true);
    assert_eq!(
        later["position_ms"], after["position_ms"],
        "a paused play does not move"
    );
    let host = s.host();
    assert_eq!(s.post("/api/host/play", &json!({}), Some(&host)).0, 200);
    assert_eq!(np(&s)["paused"], false);
    s.stop();

    let s = Server::start(&db, &music, &[]);
    s.playing();
    assert_eq!(np(&s)["paused"], false, "played again, it plays on");
    s.stop();
}

/// Tokens are stored as digests: the database holds no token a phone could present, and a
/// database from before (raw tokens) is converted on open without logging anybody out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_as_digests() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 1, 30.0);
    let db = dir.path().join("j.db");
    let s = Server::start(&db, &music, &[]);
    let token = s.guest("Mia");
    let host = s.host();
    s.stop();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: Vec<String> = conn
        .prepare("SELECT token FROM guests")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 2);
    for t in &stored {
        assert!(t.starts_with("sha256:") && t.len() == 7 + 64, "{t}");
        assert!(!t.contains(&token) && !t.contains(&host));
    }
    // An older database kept tokens as issued.
    let old = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    conn.execute(
        "UPDATE guests SET token = ?1 WHERE name = 'Mia'",
        rusqlite::params![old],
    )
    .unwrap();
    drop(conn);

    let s = Server::start(&db, &music, &[]);
    let phone = Phone::connect(&s.addr, old, &["me"]).await;
    assert_eq!(phone.welcome["role"], "guest", "the old token still works");
    s.stop();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mia: String = conn
        .query_row("SELECT token FROM guests WHERE name = 'Mia'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mia, jukebox::store::token_digest(old));
}
