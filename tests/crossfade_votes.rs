//! Likes and skip votes while two tracks overlap in a crossfade (protocol §5 `now_playing`:
//! "the play changes when the crossfade starts"), against the real binary playing into the
//! `wav:` output, paced in real time: during the overlap, a like and a skip vote naming the
//! new play count for the new play; a like or a vote naming the outgoing one is `stale_play`;
//! and the outgoing play, as stored and in the `history` topic, keeps only its own likes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::live::{Phone, Server, PIN};
use common::media::run as ffmpeg;
use jukebox::store::{Db, PlayEnd, PlayReport};

/// The crossfade, in seconds (the `crossfade_s` configuration key).
const FADE_S: u64 = 4;
/// Each track's length: long enough for a 4 s crossfade (at least 3 × the fade).
const TRACK_S: u64 = 12;

/// A stereo sine of `freq` Hz at 0.3, tagged with `title`, `album` and `artist`.
fn sine(music: &Path, name: &str, freq: u32, tags: [(&str, &str); 3]) {
    let e = format!("0.3*sin(2*PI*{freq}*t)");
    let mut args: Vec<String> = [
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        &format!("aevalsrc='{e}|{e}':s=44100:d={TRACK_S}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in tags {
        args.push("-metadata".into());
        args.push(format!("{k}={v}"));
    }
    args.push(music.join(name).to_str().unwrap().into());
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The RMS level (dB) of `[a, b)` seconds of `wav` in a narrow band around `f` Hz.
fn band(wav: &Path, f: u32, a: f64, b: f64) -> f64 {
    let err = ffmpeg(&[
        "-i",
        wav.to_str().unwrap(),
        "-af",
        &format!(
            "atrim=start={a}:end={b},bandpass=f={f}:width_type=q:w=20,\
             aformat=sample_fmts=flt,astats=measure_perchannel=none"
        ),
        "-f",
        "null",
        "-",
    ]);
    let overall = err
        .split("Overall")
        .nth(1)
        .expect("astats printed its summary");
    overall
        .lines()
        .find_map(|l| l.split("RMS level dB: ").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RMS level: {overall}"))
}

/// Every play so far, from the database (read-only, as `jukebox export` reads it).
fn plays(db: &Path) -> Vec<PlayReport> {
    Db::open_readonly(db)
        .and_then(|d| d.plays_since(0))
        .unwrap_or_default()
}

/// Messages until one matches `pred`, within `limit` overall; returns them, the match last.
async fn until_within(p: &mut Phone, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = p.recv_within(left).await;
        let hit = pred(&v);
        seen.push(v);
        if hit {
            return seen;
        }
    }
}

/// The `now_playing` data a message carries (an update of that topic), if any.
fn now_playing(m: &Value) -> Option<&Value> {
    (m["cmd"] == "update" && m["topic"] == "now_playing").then(|| &m["data"])
}

/// The `history` item of play `id` that a message carries (a snapshot or a delta), if any.
fn history_item<'m>(m: &'m Value, id: &Value) -> Option<&'m Value> {
    if m["cmd"] != "update" || m["topic"] != "history" {
        return None;
    }
    if m["id"] == *id {
        return Some(&m["data"]);
    }
    m["items"].as_array()?.iter().find(|i| i["id"] == *id)
}

/// Reads `p`'s messages into `seen` (within 5 s) until the latest `now_playing` shows play
/// `id` with `likes` likes and one skip vote, and its latest `history` item has those likes.
async fn shown(p: &mut Phone, seen: &mut Vec<Value>, id: &Value, likes: u64) {
    let done = |seen: &[Value]| {
        let np = seen.iter().rev().find_map(now_playing);
        np.is_some_and(|np| np["play_id"] == *id && np["likes"] == likes && np["skip_votes"] == 1)
            && seen
                .iter()
                .rev()
                .find_map(|m| history_item(m, id))
                .is_some_and(|h| h["likes"] == likes)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{likes} likes and a skip vote of {id} not shown: {seen:?}"
        );
        seen.push(p.recv_within(left).await);
    }
}

#[tokio::test]
async fn votes_during_a_crossfade_name_the_incoming_play() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    // Two albums: a crossfade joins them (one album's tracks would join gaplessly).
    sine(
        &music,
        "a.flac",
        440,
        [("title", "Alpha"), ("album", "First"), ("artist", "P")],
    );
    sine(
        &music,
        "b.flac",
        660,
        [("title", "Beta"), ("album", "Second"), ("artist", "Q")],
    );
    let db = dir.path().join("j.db");
    let wav = dir.path().join("out.wav");
    // The crossfade is configured, so it is in force from the first play; one vote must not
    // skip the new play (it would end the overlap), so five are needed.
    let s = Server::start_with(
        &db,
        &music,
        &format!("wav:{}", wav.display()),
        Some(PIN),
        &[
            "--crossfade-s",
            &FADE_S.to_string(),
            "--skip-min-votes",
            "5",
        ],
    );
    let topics = ["now_playing", "history", "me"];
    let mut mia = Phone::connect(&s.addr, &s.guest("Mia"), &topics).await;
    let mut sam = Phone::connect(&s.addr, &s.guest("Sam"), &["now_playing"]).await;

    // The first play, and Sam's like of it while it plays alone.
    let seen = until_within(&mut mia, Duration::from_secs(30), |m| {
        now_playing(m).is_some_and(|np| !np.is_null())
    })
    .await;
    let first = now_playing(seen.last().unwrap()).unwrap().clone();
    let old_id = first["play_id"].clone();
    let old_title = first["track"]["title"].as_str().unwrap().to_string();
    sam.ok(json!({"cmd": "like", "play_id": old_id})).await;

    // The play changes when the crossfade starts, 8 s into the 12 s track: from the event on.
    let seen = until_within(&mut mia, Duration::from_secs(TRACK_S + 10), |m| {
        m["cmd"] == "event" && m["name"] == "track_started" && m["data"]["play_id"] != old_id
    })
    .await;
    let changed_at = Instant::now();
    let new_id = seen.last().unwrap()["data"]["play_id"].clone();
    // Its `now_playing` came before the event (the play is set, then announced).
    let np = seen
        .iter()
        .rev()
        .find_map(now_playing)
        .filter(|np| np["play_id"] == new_id)
        .unwrap_or_else(|| panic!("no now_playing of {new_id} before its track_started: {seen:?}"))
        .clone();
    let start_pos = np["position_ms"].as_u64().unwrap();
    assert_ne!(np["track"]["title"], old_title.as_str(), "{np}");
    let old_in_history = seen
        .iter()
        .rev()
        .find_map(|m| history_item(m, &old_id))
        .unwrap_or_else(|| panic!("no history item of {old_id}: {seen:?}"));
    assert_eq!(old_in_history["ended"], "finished", "{old_in_history}");
    assert_eq!(old_in_history["likes"], 1, "{old_in_history}");

    // While the two overlap: the new play's like and skip vote count; the old one's are late.
    // Everything Mia receives from here on is kept, to read what it said of either play.
    let mut after = Vec::new();
    let (_, before) = mia.ok(json!({"cmd": "like", "play_id": new_id})).await;
    after.extend(before);
    let (_, before) = mia.ok(json!({"cmd": "vote_skip", "play_id": new_id})).await;
    after.extend(before);
    for cmd in ["like", "vote_skip"] {
        let rid = mia.request(json!({"cmd": cmd, "play_id": old_id})).await;
        let (reply, before) = mia.reply(rid).await;
        after.extend(before);
        assert_eq!(
            reply["error"]["code"], "stale_play",
            "{cmd} naming the outgoing play: {reply}"
        );
    }
    let acted_ms = start_pos + changed_at.elapsed().as_millis() as u64;
    eprintln!("the new play started at {start_pos} ms; all four answered by {acted_ms} ms");
    // All four answered before the outgoing track fell silent (a margin of 0.5 s).
    assert!(
        acted_ms + 500 < FADE_S * 1000,
        "the votes were answered {acted_ms} ms into the new play: not during the overlap"
    );

    // `now_playing` shows them on the new play (the like count may come with the next tick),
    // and the new play's history item has the like.
    shown(&mut mia, &mut after, &new_id, 1).await;
    let np = after.iter().rev().find_map(now_playing).unwrap();
    assert_eq!(np["skip_needed"], 5, "{np}");

    // Halfway through the fade (by the new play's position as the server reports it), Sam's
    // like of the new play counts too, and his like of the old one is just as late.
    let (mid_pos, polled_at) = s.wait_state("halfway through the fade", |st| {
        let np = &st["now_playing"];
        let pos = np["position_ms"].as_u64()?;
        (np["play_id"] == new_id && pos >= FADE_S * 1000 / 2).then(|| (pos, Instant::now()))
    });
    sam.ok(json!({"cmd": "like", "play_id": new_id})).await;
    let late = sam.refused(json!({"cmd": "like", "play_id": old_id})).await;
    assert_eq!(late, "stale_play", "Sam's like of the outgoing play");
    let sam_ms = mid_pos + polled_at.elapsed().as_millis() as u64;
    eprintln!("Sam's likes answered by {sam_ms} ms into the new play");
    assert!(
        sam_ms + 500 < FADE_S * 1000,
        "Sam's likes were answered {sam_ms} ms into the new play: not during the overlap"
    );
    shown(&mut mia, &mut after, &new_id, 2).await;

    // Nothing Mia received said the old play gained a like or a vote, or came back.
    for m in &after {
        if let Some(item) = history_item(m, &old_id) {
            assert_eq!(item["likes"], 1, "the old play's history item changed: {m}");
        }
        assert!(
            now_playing(m).is_none_or(|np| np["play_id"] != old_id),
            "the old play came back: {m}"
        );
        if m["cmd"] == "event" && ["liked", "skip_vote"].contains(&m["name"].as_str().unwrap()) {
            assert_eq!(m["data"]["play_id"], new_id, "{m}");
        }
    }

    // The store: the old play finished with Sam's first like only; the new one has both of
    // the likes meant for it.
    let stored = plays(&db);
    assert_eq!(stored.len(), 2, "{stored:?}");
    let (old, new) = (&stored[0], &stored[1]);
    assert_eq!(old.play_id.to_string(), old_id.as_str().unwrap());
    assert_eq!(new.play_id.to_string(), new_id.as_str().unwrap());
    assert_eq!(old.end_reason, Some(PlayEnd::Finished), "{old:?}");
    assert_eq!(old.likes, 1, "the old play got the new one's like: {old:?}");
    assert_eq!(new.likes, 2, "{new:?}");
    assert_eq!(new.ended_ms, None, "the new play was skipped: {new:?}");
    // The play changed when the fade started: 8 s after the first play started.
    let gap = new.started_ms - old.started_ms;
    eprintln!("the new play started {gap} ms after the old");
    let change_ms = ((TRACK_S - FADE_S) * 1000) as i64;
    assert!(
        (change_ms - 500..=change_ms + 700).contains(&gap),
        "the new play started {gap} ms after the old"
    );
    // The export the host downloads says the same.
    let host = s.host();
    let csv = ureq::get(s.url("/api/host/export?format=csv"))
        .header("Authorization", format!("Bearer {host}"))
        .call()
        .expect("the export")
        .body_mut()
        .read_to_string()
        .unwrap();
    let likes_of = |title: &str| {
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "likes").unwrap();
        let row = csv
            .lines()
            .find(|l| l.split(',').nth(1) == Some(title))
            .unwrap_or_else(|| panic!("no row of {title}: {csv}"));
        row.split(',').nth(col).unwrap().to_string()
    };
    let new_title = new.track.title.clone();
    assert_eq!(
        (likes_of(&old_title), likes_of(&new_title)),
        ("1".into(), "2".into()),
        "{csv}"
    );

    // Let the overlap end, then read the file: the two tones really sounded together where
    // the votes came (the middle of the fade), and the first alone before it.
    s.wait_state("the new play past the overlap", |st| {
        let np = &st["now_playing"];
        (np["play_id"] == new_id && np["position_ms"].as_u64()? > FADE_S * 1000 + 500).then_some(())
    });
    assert!(s.stop().success());
    let (f_old, f_new) = if old_title == "Alpha" {
        (440, 660)
    } else {
        (660, 440)
    };
    let fade_at = (TRACK_S - FADE_S) as f64;
    assert!(band(&wav, f_old, 2.0, 6.0) - band(&wav, f_new, 2.0, 6.0) > 20.0);
    let mid = fade_at + FADE_S as f64 / 2.0;
    let both = (
        band(&wav, f_old, mid - 0.5, mid + 0.5),
        band(&wav, f_new, mid - 0.5, mid + 0.5),
    );
    eprintln!("in the middle of the overlap: {both:?} dB");
    assert!((both.0 - both.1).abs() < 6.0, "in the overlap {both:?} dB");
}
