//! The host's content rules, dedications and the history against the real binary, over real
//! websockets: each rule refuses exactly what it names with `not_allowed` and its `data.rule`
//! (accents and case folded), search marks what the rules refuse, a rule set while entries are
//! queued leaves them, the auto-DJ under a pool plays only the pool (and nothing when the pool
//! has nothing), a dedication travels from the request to the queue, the TV's events and the
//! history, and the history survives a restart.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::live::{Phone, Server};
use serde_json::{json, Value};

/// The library: (folder, file, title, artist, album, seconds).
const LIBRARY: &[(&str, &str, &str, &str, &str, f64)] = &[
    ("Pop", "halo.flac", "Halo", "Beyoncé", "I Am", 30.0),
    (
        "Pop",
        "crazy.flac",
        "Crazy in Love",
        "Beyoncé feat. Jay-Z",
        "Dangerously",
        30.0,
    ),
    (
        "Pop",
        "bass.flac",
        "All About That Bass",
        "Meghan Trainor",
        "Title",
        30.0,
    ),
    (
        "Pop",
        "damn.flac",
        "Damn! (Explícit)",
        "Artist Five",
        "Singles",
        30.0,
    ),
    (
        "Pop",
        "long.flac",
        "The Long One",
        "Artist Six",
        "Epics",
        65.0,
    ),
    (
        "Wedding",
        "w1.flac",
        "First Dance",
        "Wed One",
        "Wedding A",
        30.0,
    ),
    (
        "Wedding",
        "w2.flac",
        "Second Dance",
        "Wed Two",
        "Wedding B",
        30.0,
    ),
    (
        "Wedding",
        "w3.flac",
        "Third Dance",
        "Wed Three",
        "Wedding C",
        30.0,
    ),
    (
        "Wedding/Slow",
        "w4.flac",
        "Slow Dance",
        "Wed Four",
        "Wedding D",
        30.0,
    ),
    (
        "Weddingish",
        "x.flac",
        "Not Quite",
        "Wed Five",
        "Almost",
        30.0,
    ),
];

fn library(dir: &Path) -> PathBuf {
    let m = dir.join("music");
    for (i, (folder, file, title, artist, album, secs)) in LIBRARY.iter().enumerate() {
        let d = m.join(folder);
        std::fs::create_dir_all(&d).unwrap();
        common::tone(
            &d,
            file,
            220 + 40 * i as u32,
            *secs,
            &[("title", title), ("artist", artist), ("album", album)],
        );
    }
    m
}

/// Titles to track ids, from the search (which lists refused tracks too), once the scan has
/// indexed the whole library.
fn ids(s: &Server) -> HashMap<String, String> {
    let rows = common::wait::wait_for_blocking(common::live::WAIT, "the whole library", || {
        let (_, v) = s.get("/api/search?q=&limit=100");
        let rows = v["results"].as_array()?.clone();
        (rows.len() == LIBRARY.len()).then_some(rows)
    });
    rows.iter()
        .map(|t| {
            let title = t["title"].as_str().unwrap().to_string();
            (title, t["id"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Lenient party rules, so that only the content rules refuse.
const OPEN: &[&str] = &[
    "--ws-rate",
    "1000",
    "--ws-burst",
    "1000",
    "--request-limit",
    "50",
    "--artist-spacing",
    "0",
    "--no-repeat-minutes",
    "0",
];

/// The rule (`data.rule`) a guest's request of each title gets, `None` when admitted. An
/// admitted request is removed again by the host, so the next case starts from the same queue.
async fn verdicts(
    guest: &mut Phone,
    host: &mut Phone,
    ids: &HashMap<String, String>,
) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    for (title, id) in ids {
        let rid = guest
            .request(json!({"cmd": "request", "track_id": id}))
            .await;
        let (reply, _) = guest.reply(rid).await;
        let verdict = if reply["ok"] == true {
            let entry = reply["data"]["entry_id"].clone();
            if reply["data"]["upvoted"] == false {
                host.ok(json!({"cmd": "remove", "entry_id": entry})).await;
            }
            None
        } else {
            let e = &reply["error"];
            assert_eq!(e["code"], "not_allowed", "{title}: {reply}");
            assert!(!e["message"].as_str().unwrap().is_empty(), "{reply}");
            Some(e["data"]["rule"].as_str().unwrap().to_string())
        };
        out.insert(title.clone(), verdict);
    }
    out
}

fn refused_by(v: &HashMap<String, Option<String>>, rule: &str) -> Vec<String> {
    let mut t: Vec<String> = v
        .iter()
        .filter(|(_, r)| r.as_deref() == Some(rule))
        .map(|(t, _)| t.clone())
        .collect();
    t.sort();
    t
}

fn sorted(titles: &[&str]) -> Vec<String> {
    let mut t: Vec<String> = titles.iter().map(|s| s.to_string()).collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_refuses_exactly_what_it_names() {
    let dir = common::tempdir();
    let music = library(dir.path());
    let s = Server::start(&dir.path().join("j.db"), &music, OPEN);
    s.playing();
    let ids = ids(&s);
    let mut host = Phone::connect(&s.addr, &s.host(), &["room"]).await;
    let mut mia = Phone::connect(&s.addr, &s.guest("Mia"), &[]).await;
    // What plays cannot be requested (`playing_now`): paused, it stays the one left out.
    host.ok(json!({"cmd": "pause"})).await;
    let playing = s.playing()["track"]["title"].as_str().unwrap().to_string();
    let mut table = ids.clone();
    table.remove(&playing);

    let none = verdicts(&mut mia, &mut host, &table).await;
    assert!(none.values().all(Option::is_none), "no rules: {none:?}");

    // (settings, rule, the titles it must refuse)
    let cases: Vec<(Value, &str, Vec<&str>)> = vec![
        (
            json!({"blocked_artists": ["BEYONCE"]}),
            "blocked_artist",
            vec!["Halo", "Crazy in Love"],
        ),
        (
            json!({"blocked_artists": ["jay-z"]}),
            "blocked_artist",
            vec!["Crazy in Love"],
        ),
        (
            json!({"blocked_artists": [], "blocked_words": ["explicit", "ass"]}),
            "blocked_word",
            vec!["Damn! (Explícit)"],
        ),
        (
            json!({"blocked_words": ["in love"]}),
            "blocked_word",
            vec!["Crazy in Love"],
        ),
        (
            json!({"blocked_words": [], "max_track_minutes": 1}),
            "too_long",
            vec!["The Long One"],
        ),
        (
            json!({"max_track_minutes": 0, "pool": "Wedding"}),
            "not_in_pool",
            vec![
                "Halo",
                "Crazy in Love",
                "All About That Bass",
                "Damn! (Explícit)",
                "The Long One",
                "Not Quite",
            ],
        ),
    ];
    for (settings, rule, want) in cases {
        let mut cmd = settings.clone();
        cmd["cmd"] = json!("settings");
        host.ok(cmd).await;
        let got = verdicts(&mut mia, &mut host, &table).await;
        let want: Vec<&str> = want.into_iter().filter(|t| *t != playing).collect();
        assert_eq!(refused_by(&got, rule), sorted(&want), "{settings}");
        let others: Vec<&String> = got
            .iter()
            .filter(|(t, r)| r.is_some() && !want.contains(&t.as_str()))
            .map(|(t, _)| t)
            .collect();
        assert!(others.is_empty(), "{settings} also refused {others:?}");
    }

    // The room shows the rules; the search marks what they refuse, with the reason.
    let room = s.get("/api/state").1["room"].clone();
    assert_eq!(room["pool"], "Wedding", "{room}");
    let (_, found) = s.get("/api/search?q=halo");
    let halo = &found["results"][0];
    assert_eq!(halo["refused"]["code"], "not_allowed", "{found}");
    assert_eq!(halo["refused"]["data"]["rule"], "not_in_pool", "{found}");
    let (_, found) = s.get("/api/search?q=first");
    assert_eq!(found["results"][0]["refused"], Value::Null, "{found}");

    // The host's own request passes the rules.
    let (reply, _) = host
        .ok(json!({"cmd": "request", "track_id": ids["Halo"]}))
        .await;
    let hosts = reply["data"]["entry_id"].clone();

    // A rule set while entries are queued leaves them; a guest's up-vote by request of a
    // queued track the rules refuse is refused too.
    host.ok(json!({"cmd": "settings", "pool": null})).await;
    let (victim, artist) = if playing == "All About That Bass" {
        ("The Long One", "Artist Six")
    } else {
        ("All About That Bass", "Meghan Trainor")
    };
    let (reply, _) = mia
        .ok(json!({"cmd": "request", "track_id": ids[victim]}))
        .await;
    let bass = reply["data"]["entry_id"].clone();
    host.ok(json!({"cmd": "settings", "blocked_artists": [artist], "pool": "Wedding"}))
        .await;
    let queue = s.get("/api/state").1["queue"]["order"].clone();
    assert!(
        queue.as_array().unwrap().contains(&bass) && queue.as_array().unwrap().contains(&hosts),
        "queued entries stay: {queue}"
    );
    let mut sam = Phone::connect(&s.addr, &s.guest("Sam"), &[]).await;
    let e = sam
        .refused(json!({"cmd": "request", "track_id": ids[victim]}))
        .await;
    assert_eq!(e, "not_allowed");

    // Bad rules are refused with the field, and change nothing.
    for (bad, field) in [
        (json!({"pool": "../etc"}), "pool"),
        (json!({"blocked_words": ["!!!"]}), "blocked_words"),
        (
            json!({"blocked_artists": ["x".repeat(101)]}),
            "blocked_artists",
        ),
        (json!({"max_track_minutes": 601}), "max_track_minutes"),
        (json!({"blocked_artists": "ABBA"}), "blocked_artists"),
    ] {
        let mut cmd = bad.clone();
        cmd["cmd"] = json!("settings");
        let rid = host.request(cmd).await;
        let (reply, _) = host.reply(rid).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{bad}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{bad}: {reply}");
    }
    assert_eq!(s.get("/api/state").1["room"]["pool"], "Wedding");

    // The rules are saved with the other settings: after a restart they hold.
    drop((host, mia, sam));
    s.stop();
    let s = Server::start(&dir.path().join("j.db"), &music, OPEN);
    let room = s.get("/api/state").1["room"].clone();
    assert_eq!(room["pool"], "Wedding", "{room}");
    assert_eq!(room["blocked_artists"], json!([artist]), "{room}");
}

/// The rules given at start (flags, environment or the file) are the config keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_the_configuration() {
    let dir = common::tempdir();
    let music = library(dir.path());
    let mut cmd = Server::command(
        &dir.path().join("j.db"),
        &music,
        "null",
        Some(common::live::PIN),
        OPEN,
    );
    cmd.env("JUKEBOX_BLOCKED_ARTISTS", "Earth, Wind & Fire;beyonce")
        .args(["--max-track-minutes", "1", "--blocked-words", "dance"]);
    let s = Server::spawn(cmd, &dir.path().join("j.db"), &music);
    let room = s.get("/api/state").1["room"].clone();
    assert_eq!(
        room["blocked_artists"],
        json!(["Earth, Wind & Fire", "beyonce"]),
        "{room}"
    );
    assert_eq!(room["blocked_words"], json!(["dance"]), "{room}");
    assert_eq!(room["max_track_minutes"], 1, "{room}");
    let ids = ids(&s);
    let mut mia = Phone::connect(&s.addr, &s.guest("Mia"), &[]).await;
    let rid = mia
        .request(json!({"cmd": "request", "track_id": ids["Halo"]}))
        .await;
    let (r, _) = mia.reply(rid).await;
    assert_eq!(r["error"]["data"]["rule"], "blocked_artist", "{r}");
    let rid = mia
        .request(json!({"cmd": "request", "track_id": ids["The Long One"]}))
        .await;
    let (r, _) = mia.reply(rid).await;
    assert_eq!(
        r["error"]["data"],
        json!({"rule": "too_long", "max_minutes": 1}),
        "{r}"
    );
    // A bad pool stops the jukebox with the key named.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jukebox"))
        .args(["--pool", "../etc", "--music"])
        .arg(&music)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`pool`") && err.contains("allowed"), "{err}");
}

/// The auto-DJ under a pool plays only the pool's tracks, for 20 plays (the pool has four, so
/// it repeats them rather than leave it); with a pool that has nothing, it plays nothing and
/// the room says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autodj_keeps_to_the_pool() {
    let dir = common::tempdir();
    let music = library(dir.path());
    let s = Server::start(&dir.path().join("j.db"), &music, &["--pool", "Wedding"]);
    let ids = ids(&s);
    let pool: Vec<&String> = ["First Dance", "Second Dance", "Third Dance", "Slow Dance"]
        .iter()
        .map(|t| &ids[*t])
        .collect();
    let mut host = Phone::connect(&s.addr, &s.host(), &["now_playing", "room"]).await;
    let mut play = s.playing();
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let track = play["track"]["id"].as_str().unwrap().to_string();
        assert!(
            pool.iter().any(|p| **p == track),
            "play {i}: {} is outside the pool",
            play["track"]
        );
        assert_eq!(play["auto"], true, "{play}");
        seen.insert(track);
        host.ok(json!({"cmd": "skip", "play_id": play["play_id"]}))
            .await;
        let old = play["play_id"].clone();
        let msgs = host
            .until(|v| {
                v["topic"] == "now_playing" && !v["data"].is_null() && v["data"]["play_id"] != old
            })
            .await;
        play = msgs.last().unwrap()["data"].clone();
    }
    assert!(seen.len() >= 3, "the pool's tracks take turns: {seen:?}");
    assert_eq!(s.get("/api/state").1["room"]["autodj_blocked"], false);

    // A pool with nothing in it: the auto-DJ plays nothing rather than break the rule.
    let blocked = |v: &Value| v["topic"] == "room" && v["data"]["autodj_blocked"] == true;
    let (_, mut seen) = host
        .ok(json!({"cmd": "settings", "pool": "No Such Folder"}))
        .await;
    let (_, before) = host
        .ok(json!({"cmd": "skip", "play_id": play["play_id"]}))
        .await;
    seen.extend(before);
    if !seen.iter().any(blocked) {
        host.until(blocked).await;
    }
    s.wait_state("nothing plays", |st| {
        st["now_playing"].is_null().then_some(())
    });
    // Lifting the pool starts the music again.
    host.ok(json!({"cmd": "settings", "pool": null})).await;
    host.until(|v| v["topic"] == "now_playing" && !v["data"].is_null())
        .await;
    s.wait_state("the room clears it", |st| {
        (st["room"]["autodj_blocked"] == false).then_some(())
    });
}

/// A dedication goes with its request everywhere the request is shown; markup in it is only
/// text to the server (the browser test checks how it is drawn); bad ones are refused with the
/// field. The history lists the plays newest first with their likes, how they ended and their
/// dedications, and is still there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedications_and_the_history() {
    let dir = common::tempdir();
    let music = library(dir.path());
    let db = dir.path().join("j.db");
    let s = Server::start(&db, &music, OPEN);
    let ids = ids(&s);
    let first = s.playing();
    let mut tv = Phone::connect(&s.addr, &s.guest("TV"), &["history"]).await;
    let snap = tv.until(|v| v["topic"] == "history").await;
    let h = &snap.last().unwrap();
    assert_eq!(h["order"][0], first["play_id"], "what plays is first: {h}");
    assert_eq!(h["items"][0]["ended"], Value::Null, "{h}");

    let mut sam = Phone::connect(&s.addr, &s.guest("Sam"), &["queue"]).await;
    for (bad, why) in [
        ("x".repeat(41), "41 characters"),
        ("Anna\u{7}".to_string(), "a control character"),
        ("An\u{202e}na".to_string(), "a bidi override"),
    ] {
        let rid = sam
            .request(json!({"cmd": "request", "track_id": ids["Halo"], "for": bad}))
            .await;
        let (r, _) = sam.reply(rid).await;
        assert_eq!(r["error"]["code"], "bad_request", "{why}: {r}");
        assert_eq!(r["error"]["field"], "for", "{why}: {r}");
    }
    let e = sam
        .refused(json!({"cmd": "request", "track_id": ids["Halo"], "for": 5}))
        .await;
    assert_eq!(e, "bad_request");
    let dedication = "  <b>Anna</b> & \"Lou\"  ";
    let track = if first["track"]["id"] == ids["Halo"] {
        &ids["Second Dance"]
    } else {
        &ids["Halo"]
    };
    let (reply, before) = sam
        .ok(json!({"cmd": "request", "track_id": track, "for": dedication}))
        .await;
    let entry = reply["data"]["entry_id"].clone();
    let shown = "<b>Anna</b> & \"Lou\"";
    let row = before
        .iter()
        .find(|v| v["topic"] == "queue" && v["id"] == entry)
        .unwrap_or_else(|| panic!("the entry's update before the reply: {before:?}"));
    assert_eq!(row["data"]["for"], shown, "{row}");
    let ev = tv
        .until(|v| v["cmd"] == "event" && v["name"] == "requested")
        .await;
    assert_eq!(ev.last().unwrap()["data"]["for"], shown);
    // A second guest's up-vote keeps the dedication of the entry.
    let mut mia = Phone::connect(&s.addr, &s.guest("Mia"), &[]).await;
    mia.ok(json!({"cmd": "request", "track_id": track, "for": "Zoe"}))
        .await;
    assert_eq!(s.get("/api/state").1["queue"]["items"][0]["for"], shown);

    // It plays next: now_playing, track_started and the history carry it.
    let host = s.host();
    let mut h = Phone::connect(&s.addr, &host, &[]).await;
    h.ok(json!({"cmd": "skip", "play_id": first["play_id"]}))
        .await;
    let msgs = tv
        .until(|v| v["cmd"] == "event" && v["name"] == "track_started")
        .await;
    let started = msgs.last().unwrap();
    assert_eq!(started["data"]["for"], shown, "{started}");
    assert_eq!(started["data"]["requested_by"], "Sam", "{started}");
    let np = s.playing();
    assert_eq!(np["for"], shown);
    let second = np["play_id"].clone();
    // The first play ended as skipped (its item replaced), the new one is on top.
    let hist: Vec<&Value> = msgs.iter().filter(|v| v["topic"] == "history").collect();
    assert!(
        hist.iter()
            .any(|v| v["id"] == first["play_id"] && v["data"]["ended"] == "skipped"),
        "{hist:?}"
    );
    assert!(
        hist.iter()
            .any(|v| v["order"].as_array().is_some_and(|o| o[0] == second)),
        "{hist:?}"
    );
    // Likes of what plays reach its history item.
    mia.ok(json!({"cmd": "like", "play_id": second})).await;
    let msgs = tv
        .until(|v| v["topic"] == "history" && v["id"] == second && v["data"]["likes"] == 1)
        .await;
    let item = &msgs.last().unwrap()["data"];
    assert_eq!(item["for"], shown, "{item}");
    assert_eq!(item["requested_by"], "Sam");
    assert_eq!(item["ended"], Value::Null);
    // A third play.
    h.ok(json!({"cmd": "skip", "play_id": second})).await;
    let third = tv
        .until(|v| v["topic"] == "history" && v["order"].is_array())
        .await
        .last()
        .unwrap()["order"][0]
        .clone();
    assert_ne!(third, second);

    // After a restart the history is read back: newest first, likes, ends, dedication.
    drop((tv, sam, mia, h));
    s.stop();
    let s = Server::start(&db, &music, OPEN);
    let mut tv = Phone::connect(&s.addr, &s.guest("TV"), &["history"]).await;
    let snap = tv.until(|v| v["topic"] == "history").await;
    let h = snap.last().unwrap().clone();
    let order = h["order"].as_array().unwrap();
    let at = |id: &Value| order.iter().position(|o| o == id).unwrap();
    assert!(
        at(&third) < at(&second) && at(&second) < at(&first["play_id"]),
        "newest first: {h}"
    );
    let item = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == second)
        .unwrap();
    assert_eq!(item["for"], shown, "{item}");
    assert_eq!(item["likes"], 1, "{item}");
    assert_eq!(item["ended"], "skipped", "{item}");
    assert_eq!(item["requested_by"], "Sam", "{item}");
}
