//! The sound settings against the real binary (protocol §11 "Sound settings"): `normalize`,
//! `loudness_lufs` and `crossfade_s` over the websocket and HTTP, kept across a restart,
//! refused outside their range with the field named, a configured key winning at start; the
//! host's view of what plays (its gain and where it came from) following the settings; and
//! `/healthz` `audio.underruns` and `audio.latency_ms`.

mod common;

use common::live::{Phone, Server};
use serde_json::{json, Value};

/// The room's sound settings, from `GET /api/state`.
fn sound_of(s: &Server) -> Value {
    let (st, v) = s.get("/api/state");
    assert_eq!(st, 200, "{v}");
    let r = &v["room"];
    json!({
        "normalize": r["normalize"],
        "loudness_lufs": r["loudness_lufs"],
        "crossfade_s": r["crossfade_s"],
    })
}

/// Sends a `settings` frame that must be refused; returns the reply's error.
async fn refused(p: &mut Phone, fields: Value) -> Value {
    let mut frame = fields.clone();
    frame["cmd"] = json!("settings");
    let rid = p.request(frame).await;
    let (reply, _) = p.reply(rid).await;
    assert_eq!(reply["ok"], false, "{fields} was accepted: {reply}");
    reply["error"].clone()
}

#[tokio::test]
async fn sound_settings_over_the_wire_are_kept_refused_out_of_range_and_configurable() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let db = dir.path().join("j.db");
    let s = Server::start(&db, &music, &[]);
    assert_eq!(
        sound_of(&s),
        json!({"normalize": "auto", "loudness_lufs": -14, "crossfade_s": 0}),
        "the defaults"
    );
    let host = s.host();
    let mut p = Phone::connect(&s.addr, &host, &["room"]).await;
    assert!(
        p.welcome["features"]
            .as_array()
            .unwrap()
            .contains(&json!("sound")),
        "{}",
        p.welcome
    );

    // Over the websocket: the room update comes before the reply.
    let (_, before) = p
        .ok(json!({"cmd": "settings", "normalize": "track", "loudness_lufs": -18, "crossfade_s": 4}))
        .await;
    let room = before
        .iter()
        .rev()
        .find(|m| m["topic"] == "room" && m["data"]["normalize"] == "track")
        .unwrap_or_else(|| panic!("no room update before the reply: {before:?}"));
    assert_eq!(room["data"]["loudness_lufs"], -18);
    assert_eq!(room["data"]["crossfade_s"], 4);

    // Out of range, a word that is no mode, a number of the wrong kind: refused, naming the
    // field, and nothing changes (not even the valid field sent beside it).
    let table = [
        (
            json!({"loudness_lufs": -31}),
            "loudness_lufs",
            "allowed -30..=-5",
        ),
        (
            json!({"loudness_lufs": -4}),
            "loudness_lufs",
            "allowed -30..=-5",
        ),
        (json!({"loudness_lufs": -14.5}), "loudness_lufs", ""),
        (json!({"crossfade_s": 13}), "crossfade_s", "allowed 0..=12"),
        (json!({"crossfade_s": -1}), "crossfade_s", ""),
        (json!({"normalize": "loud"}), "normalize", "auto"),
        (json!({"normalize": 1}), "normalize", ""),
        (
            json!({"normalize": "off", "crossfade_s": 99}),
            "crossfade_s",
            "allowed 0..=12",
        ),
    ];
    for (fields, field, says) in &table {
        let e = refused(&mut p, fields.clone()).await;
        assert_eq!(e["code"], "bad_request", "{fields}: {e}");
        assert_eq!(e["field"], *field, "{fields}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(says),
            "{fields}: {e}"
        );
    }
    let after_ws = json!({"normalize": "track", "loudness_lufs": -18, "crossfade_s": 4});
    assert_eq!(sound_of(&s), after_ws, "a refused change changes nothing");

    // Over HTTP with the host token.
    let (st, v) = s.post(
        "/api/host/settings",
        &json!({"normalize": "album", "crossfade_s": 0}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.post(
        "/api/host/settings",
        &json!({"loudness_lufs": -40}),
        Some(&host),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        (&v["code"], &v["field"]),
        (&json!("bad_request"), &json!("loudness_lufs"))
    );
    let (st, v) = s.post(
        "/api/host/settings",
        &json!({"normalize": "album"}),
        Some(&s.guest("Mia")),
    );
    assert_eq!(st, 403, "a guest may not: {v}");
    let kept = json!({"normalize": "album", "loudness_lufs": -18, "crossfade_s": 0});
    assert_eq!(sound_of(&s), kept);
    drop(p);

    // Kept across a restart.
    assert!(s.stop().success());
    let s = Server::start(&db, &music, &[]);
    assert_eq!(sound_of(&s), kept, "after a restart");
    assert!(s.stop().success());

    // A key given in the configuration wins at start; the others stay the host's.
    let s = Server::start(&db, &music, &["--normalize", "off", "--crossfade-s=6"]);
    assert_eq!(
        sound_of(&s),
        json!({"normalize": "off", "loudness_lufs": -18, "crossfade_s": 6})
    );
    assert!(s.stop().success());
}

/// The `sound` of the admin topic (snapshot or update), when a message carries one.
fn sound_in(m: &Value) -> Option<&Value> {
    (m["topic"] == "admin").then(|| m.get("sound")).flatten()
}

/// Waits for a `sound` that says the background pass has measured all `n` tracks and what
/// plays has its measured gain; returns it.
async fn measured_all(p: &mut Phone, n: u64) -> Value {
    pass_through(p, n, Some("measured")).await
}

/// Waits for a `sound` whose pass has measured all `n` tracks (and whose play's gain comes
/// from `source`, if given); returns it.
async fn pass_through(p: &mut Phone, n: u64, source: Option<&str>) -> Value {
    let seen = p
        .until(|m| {
            sound_in(m).is_some_and(|v| {
                v["measured"] == n
                    && v["total"] == n
                    && source.is_none_or(|s| v["playing"]["source"] == s)
            })
        })
        .await;
    sound_in(seen.last().unwrap()).unwrap().clone()
}

/// `gain_db` is `target - track_lufs` (both shown to one decimal).
fn assert_gain(snd: &Value, target: f64) {
    let p = &snd["playing"];
    let (gain, lufs) = (
        p["gain_db"].as_f64().unwrap(),
        p["track_lufs"].as_f64().unwrap(),
    );
    assert!(
        (gain - (target - lufs)).abs() < 0.11,
        "target {target}: {snd}"
    );
}

#[tokio::test]
async fn the_host_sees_the_gain_of_what_plays_follow_the_settings() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    s.playing();
    let host = s.host();
    let mut p = Phone::connect(&s.addr, &host, &["admin"]).await;
    // The background pass measures the three tracks; what plays gets its measured gain.
    let snd = measured_all(&mut p, 3).await;
    assert_eq!(snd["failed"], 0, "{snd}");
    assert_eq!(snd["playing"]["album"], false, "{snd}");
    assert_gain(&snd, -14.0);
    assert_eq!(snd["underruns"], 0, "{snd}");
    assert!(snd["latency_ms"].is_u64(), "{snd}");
    let (_, st) = s.get("/api/state");
    assert_eq!(
        snd["playing"]["play_id"], st["now_playing"]["play_id"],
        "{st}"
    );

    // A new target moves the gain of what plays; off makes it 0 dB.
    for (fields, target) in [
        (json!({"loudness_lufs": -20}), Some(-20.0)),
        (json!({"normalize": "off"}), None),
    ] {
        let mut frame = fields.clone();
        frame["cmd"] = json!("settings");
        let (_, before) = p.ok(frame).await;
        let snd =
            before.iter().rev().find_map(sound_in).unwrap_or_else(|| {
                panic!("{fields}: no sound update before the reply: {before:?}")
            });
        match target {
            Some(t) => {
                assert_eq!(snd["playing"]["source"], "measured", "{fields}: {snd}");
                assert_gain(snd, t);
            }
            None => {
                assert_eq!(snd["playing"]["source"], "off", "{fields}: {snd}");
                assert_eq!(snd["playing"]["gain_db"], 0.0, "{fields}: {snd}");
            }
        }
    }
    assert!(s.stop().success());
}

/// `/healthz` reports the output's latency, and `now_playing.position_ms` is what is heard:
/// what the output has taken, less that latency. The `wav:` output runs its lead (200 ms)
/// ahead of real time as a device's buffer would, so the file holds that much more than has
/// been "heard"; the position is checked against the file's own length.
#[test]
fn healthz_reports_underruns_and_latency() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 2, 30.0);
    let wav = dir.path().join("out.wav");
    let cmd = Server::command(
        &dir.path().join("j.db"),
        &music,
        &format!("wav:{}", wav.display()),
        None,
        &[],
    );
    let s = Server::spawn(cmd, &dir.path().join("j.db"), &music);
    s.playing();
    let h = s.wait_health("audio playing", |h| h["audio"]["playing"] == true);
    assert_eq!(h["audio"]["underruns"], 0, "{h}");
    let latency = h["audio"]["latency_ms"].as_i64().expect("a latency");
    // The output's lead, and the limiter's 5 ms look-ahead before it.
    assert!((204..=206).contains(&latency), "the wav output's lead: {h}");
    // Each sample: the position the server reports, carried forward to when the file's length
    // is read, against the file's frames (16-bit stereo after a 44-byte header) less the
    // latency. The file lags what was written by at most the writer's 8 KiB buffer (46 ms)
    // and the output writes 1,024-frame chunks (23 ms); without the latency subtracted the
    // difference would be 200 ms.
    // The player reports where it is 250 ms after the start (once the output has its lead):
    // from then on the position is exact, whether the output was idle or running.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut diffs = Vec::new();
    for _ in 0..7 {
        let (_, st) = s.get("/api/state");
        let np = &st["now_playing"];
        let (pos, at) = (
            np["position_ms"].as_i64().unwrap(),
            np["server_time_ms"].as_i64().unwrap(),
        );
        let len = std::fs::metadata(&wav).unwrap().len() as i64;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let written_ms = (len - 44) / 4 * 1000 / 44_100;
        assert!(
            np["track"]["duration_ms"].as_i64().unwrap() > written_ms,
            "still the first track"
        );
        diffs.push((pos + (now - at)) - (written_ms - latency));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(
        diffs.iter().all(|d| d.abs() <= 110),
        "position - (written - latency), ms: {diffs:?}"
    );
    assert!(s.stop().success());
}

/// The RMS level (dBFS) of `wav` from `from` s for `secs` s, by ffmpeg's `astats`.
fn rms_db(wav: &std::path::Path, from: f64, secs: f64) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-ss"])
        .arg(from.to_string())
        .arg("-t")
        .arg(secs.to_string())
        .arg("-i")
        .arg(wav)
        .args(["-af", "astats=measure_perchannel=none", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter_map(|l| l.split("RMS level dB:").nth(1))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no RMS level from ffmpeg: {text}"))
}

/// A host's change of the levelling reaches the track playing at once: the output (a WAV
/// file, measured with ffmpeg) drops by the gain the host page shows.
#[tokio::test]
async fn a_live_change_of_the_levelling_reaches_what_plays() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    common::tone(
        &music,
        "a.flac",
        440,
        12.0,
        &[("title", "A"), ("artist", "X")],
    );
    let wav = dir.path().join("out.wav");
    let s = Server::start_with(
        &dir.path().join("j.db"),
        &music,
        &format!("wav:{}", wav.display()),
        Some(common::live::PIN),
        &["--normalize", "off"],
    );
    let first = s.playing()["play_id"].clone();
    let host = s.host();
    let mut p = Phone::connect(&s.addr, &host, &["admin"]).await;
    // Measured first (levelling is off, so that changes nothing yet): the gain is then fixed.
    pass_through(&mut p, 1, None).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_, before) = p
        .ok(json!({"cmd": "settings", "normalize": "track", "loudness_lufs": -30}))
        .await;
    let snd = before
        .iter()
        .rev()
        .find_map(sound_in)
        .unwrap_or_else(|| panic!("no sound update: {before:?}"))
        .clone();
    let gain = snd["playing"]["gain_db"].as_f64().unwrap();
    assert!(gain < -5.0, "{snd}");
    // Played to its end (the auto-DJ may play it again), then stopped: the WAV is finalised.
    s.wait_state("the track ended", |st| {
        (st["now_playing"]["play_id"] != first).then_some(())
    });
    assert!(s.stop().success());
    let (a, b) = (rms_db(&wav, 0.5, 2.0), rms_db(&wav, 7.0, 4.0));
    assert!(
        (b - a - gain).abs() < 0.5,
        "as mastered {a:.2} dB, then {b:.2} dB: {:.2} dB, the host was shown {gain} dB",
        b - a
    );
}

/// The next track is measured just in time: while the background pass is busy with a long
/// track (it goes folder by folder), the track the host queues next is measured ahead of it,
/// and starts with its measured gain.
#[tokio::test]
async fn the_next_track_is_measured_just_in_time_ahead_of_the_pass() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(music.join(sub)).unwrap();
    }
    // First in the pass's order, and long: about 40 s to measure in a debug build.
    common::tone(
        &music.join("a"),
        "long.flac",
        220,
        600.0,
        &[("title", "Long")],
    );
    for i in 1..=2 {
        common::tone(
            &music.join("b"),
            &format!("short{i}.flac"),
            330 * i,
            20.0,
            &[
                ("title", &format!("Short {i}")),
                ("artist", &format!("S{i}")),
            ],
        );
    }
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    let np = s.playing();
    let (_, found) = s.get("/api/search?q=short&limit=10");
    let next = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] != np["track"]["id"])
        .unwrap()
        .clone();
    let host = s.host();
    let mut p = Phone::connect(&s.addr, &host, &["admin"]).await;
    p.ok(json!({"cmd": "request", "track_id": next["id"]}))
        .await;
    // The requested track is the next one: it is measured while the long one is not yet. The
    // pass runs SCHED_IDLE, so on a machine busy with other tests it may wait its turn a while.
    // The track the auto-DJ had lined up before the request (the other short one, perhaps)
    // may be measured first, so which one the count stands for is read from the database,
    // where a measurement is before it is announced.
    let db = rusqlite::Connection::open_with_flags(
        dir.path().join("j.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let next_measured = || -> bool {
        db.query_row(
            "SELECT lufs IS NOT NULL FROM tracks WHERE id = ?1",
            [next["id"].as_str().unwrap()[1..].parse::<i64>().unwrap()],
            |r| r.get(0),
        )
        .unwrap()
    };
    let mut snd = None;
    for _ in 0..500 {
        let m = p.recv_within(std::time::Duration::from_secs(60)).await;
        if let Some(v) = sound_in(&m).filter(|v| v["measured"].as_u64() >= Some(1)) {
            if next_measured() {
                snd = Some(v.clone());
                break;
            }
        }
    }
    let snd = snd.expect("the requested track measured within 500 messages");
    assert_eq!(snd["total"], 3, "{snd}");
    assert_eq!(snd["failed"], 0, "{snd}");
    p.ok(json!({"cmd": "skip"})).await;
    let started = p
        .until(|m| {
            sound_in(m).is_some_and(|v| {
                !v["playing"].is_null() && v["playing"]["play_id"] != np["play_id"]
            })
        })
        .await;
    let snd = sound_in(started.last().unwrap()).unwrap().clone();
    let (_, st) = s.get("/api/state");
    assert_eq!(st["now_playing"]["track"]["id"], next["id"], "{st}");
    assert_eq!(
        snd["playing"]["source"], "measured",
        "it starts measured: {snd}"
    );
    assert_gain(&snd, -14.0);
    assert!(
        snd["measured"].as_u64().unwrap() < 3,
        "the long track is still being measured: {snd}"
    );
    assert!(s.stop().success());
}
