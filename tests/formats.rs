//! Opus, Opus in `.ogg`, ALAC and AIFF files made by ffmpeg, played by the real binary into the
//! `wav:` output and measured with sox and ffmpeg; the Opus header gain heard as a level
//! difference; Opus, ALAC and AIFF levelled to the target like any other file; WMA, WavPack
//! and AC-3-in-.m4a files left out of the library with one log line; an .m4a damaged after the
//! scan refused at play without taking the jukebox down.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::live::{Phone, Server, PIN};
use common::media;
use jukebox::store::{Db, PlayReport};
use serde_json::{json, Value};

/// The real binary on 127.0.0.1:0 with `output`, and none of the settings that change the
/// level: it is part of what these tests measure.
fn start(music: &Path, db: &Path, output: &str) -> Server {
    start_levelled(music, db, output, "off", None, &[])
}

/// The same with levelling `normalize` (the setting's variable), the host PIN `pin` and the
/// flags `extra`.
fn start_levelled(
    music: &Path,
    db: &Path,
    output: &str,
    normalize: &str,
    pin: Option<&str>,
    extra: &[&str],
) -> Server {
    let mut cmd = Server::command(db, music, output, pin, extra);
    // The log at its default level: the tests read its lines.
    cmd.env("JUKEBOX_NORMALIZE", normalize)
        .env_remove("JUKEBOX_LOG");
    Server::spawn(cmd, db, music)
}

/// Stops it as systemd would and returns its log.
fn stop(server: Server) -> String {
    let log = server.log.clone();
    assert!(server.stop().success(), "a clean exit");
    // The reader thread sees the end of the pipe right after the exit.
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap().clone();
    log
}

/// Runs ffmpeg on a 48 kHz stereo sine and writes `name` with `codec`.
fn ffmpeg_tone(dir: &Path, name: &str, freq: u32, secs: f64, codec: &[&str]) -> PathBuf {
    let stem = Path::new(name).file_stem().unwrap().to_str().unwrap();
    let mut cmd = media::ffmpeg();
    media::sine(&mut cmd, freq, secs, 48_000);
    media::tags(&mut cmd, &[("title", stem)]).args(codec);
    media::write(&mut cmd, &dir.join(name))
}

/// Waits (bounded) until `n` plays have ended; returns their file names in play order.
fn wait_plays(db: &Path, n: usize, jukebox: &mut Server) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let plays = Db::open_readonly(db)
            .ok()
            .and_then(|d| d.plays_since(0).ok())
            .unwrap_or_default();
        let ended: Vec<String> = plays
            .iter()
            .filter(|p| p.ended_ms.is_some())
            .map(|p| {
                let name = p.track.path.file_name().unwrap().to_str().unwrap();
                name.to_string()
            })
            .collect();
        if ended.len() >= n {
            return ended[..n].to_vec();
        }
        assert!(Instant::now() < deadline, "{n} plays did not end in time");
        assert!(
            jukebox.child.try_wait().unwrap().is_none(),
            "the jukebox exited early: {}",
            jukebox.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// sox's rough frequency of the left channel over `[at, at + len)` seconds of `wav`.
fn sox_frequency(wav: &Path, at: f64, len: f64) -> f64 {
    let out = Command::new("sox")
        .arg(wav)
        .args([
            "-n",
            "remix",
            "1",
            "trim",
            &format!("{at}"),
            &format!("{len}"),
        ])
        .arg("stat")
        .output()
        .expect("sox runs (scripts/deps.sh test installs it)");
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with("Rough   frequency:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no frequency from sox: {text}"))
}

/// ffmpeg's integrated loudness (EBU R128) of `[at, at + len)` seconds of `wav`.
fn ffmpeg_lufs(wav: &Path, at: f64, len: f64) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats"])
        .args(["-ss", &format!("{at}"), "-t", &format!("{len}"), "-i"])
        .arg(wav)
        .args(["-af", "ebur128", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let text = String::from_utf8_lossy(&out.stderr);
    let summary = text.split("Summary:").nth(1).expect("an ebur128 summary");
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("I:"))
        .and_then(|v| v.trim().trim_end_matches("LUFS").trim().parse().ok())
        .unwrap_or_else(|| panic!("no integrated loudness: {summary}"))
}

/// ffmpeg's integrated loudness (EBU R128) of a whole file.
fn file_lufs(path: &Path) -> f64 {
    ffmpeg_lufs(path, 0.0, 1e6)
}

fn wav_seconds(wav: &Path) -> f64 {
    let r = hound::WavReader::open(wav).expect("a finalised WAV");
    let spec = r.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 44_100));
    f64::from(r.duration()) / 44_100.0
}

#[test]
fn opus_ogg_opus_alac_and_aiff_play_at_their_frequency_and_length() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    const SECS: f64 = 3.0;
    let files: [(&str, u32, &[&str]); 5] = [
        ("opus.opus", 330, &["-c:a", "libopus", "-b:a", "96k"]),
        ("opus-in-ogg.ogg", 550, &["-c:a", "libopus", "-f", "ogg"]),
        ("alac.m4a", 770, &["-c:a", "alac"]),
        ("pcm.aiff", 990, &["-c:a", "pcm_s16be"]),
        ("pcm24.aifc", 1210, &["-c:a", "pcm_s24be", "-f", "aiff"]),
    ];
    for (name, freq, codec) in &files {
        ffmpeg_tone(&music, name, *freq, SECS, codec);
    }
    let db = dir.path().join("j.db");
    let wav = dir.path().join("out.wav");
    let mut jukebox = start(&music, &db, &format!("wav:{}", wav.display()));
    let order = wait_plays(&db, files.len(), &mut jukebox);
    let log = stop(jukebox);
    assert!(!log.contains("cannot play"), "{log}");

    let mut sorted = order.clone();
    sorted.sort();
    let mut names: Vec<String> = files.iter().map(|f| f.0.to_string()).collect();
    names.sort();
    assert_eq!(sorted, names, "each file played once, in some order");

    // The whole run is the tracks back to back (plus where the next one was stopped).
    let secs = wav_seconds(&wav);
    let expected = SECS * files.len() as f64;
    assert!(
        secs >= expected * 0.98 && secs < expected + SECS + 0.5,
        "wav {secs:.3} s for {expected} s of tracks"
    );
    // Each track is in its slot, at its frequency, from 60 ms after the slot starts to 60 ms
    // before it ends: a track 2% (60 ms) too long or short shows in the next slot's window.
    for (i, name) in order.iter().enumerate() {
        let freq = f64::from(files.iter().find(|f| f.0 == name).unwrap().1);
        let slot = i as f64 * SECS;
        for at in [slot + 0.06, slot + SECS / 2.0, slot + SECS - 0.1] {
            let got = sox_frequency(&wav, at, 0.04);
            eprintln!("{name} at {at:.2} s: {got} Hz (want {freq} Hz)");
            assert!(
                (got - freq).abs() / freq <= 0.02,
                "{name} at {at:.2} s: {got} Hz, not {freq} Hz (order {order:?})"
            );
        }
    }
}

#[test]
fn the_opus_header_gain_is_heard() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    const SECS: f64 = 3.0;
    let plain = ffmpeg_tone(&music, "plain.opus", 500, SECS, &["-c:a", "libopus"]);
    // The same stream with +6 dB in its header (Q7.8 at bytes 16..18 of OpusHead): ffmpeg
    // has no option to write one, so the copy is patched, and its page checksum redone.
    let mut bytes = std::fs::read(&plain).unwrap();
    let at = bytes.windows(8).position(|w| w == b"OpusHead").unwrap();
    bytes[at + 16..at + 18].copy_from_slice(&(6i16 * 256).to_le_bytes());
    media::fix_ogg_crc(&mut bytes, at);
    std::fs::write(music.join("louder.opus"), &bytes).unwrap();
    // ffmpeg reads the patched header too: the file is valid and says +6 dB.
    let probe = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-i"])
        .arg(music.join("louder.opus"))
        .args(["-af", "volumedetect", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(probe.status.success(), "ffmpeg reads the patched file");

    let db = dir.path().join("j.db");
    let wav = dir.path().join("out.wav");
    let mut jukebox = start(&music, &db, &format!("wav:{}", wav.display()));
    let order = wait_plays(&db, 2, &mut jukebox);
    stop(jukebox);
    assert!(wav_seconds(&wav) >= 2.0 * SECS * 0.98);

    // Each play's middle, away from the seams.
    let level = |name: &str| {
        let i = order.iter().position(|n| n == name).unwrap() as f64;
        ffmpeg_lufs(&wav, i * SECS + 0.3, SECS - 0.6)
    };
    let (quiet, loud) = (level("plain.opus"), level("louder.opus"));
    let diff = loud - quiet;
    eprintln!("plain {quiet:.2} LUFS, +6 dB header {loud:.2} LUFS: {diff:.2} dB");
    assert!((diff - 6.0).abs() <= 0.5, "{diff:.2} dB apart, not 6");
}

#[test]
fn wma_wavpack_and_ac3_in_m4a_are_reported_once_and_never_offered() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    ffmpeg_tone(&music, "Windows_Media.wma", 440, 1.0, &["-c:a", "wmav2"]);
    ffmpeg_tone(&music, "Pack_Of_Waves.wv", 440, 1.0, &["-c:a", "wavpack"]);
    // An extension we play, holding a codec we do not: found out at the scan, not at play.
    ffmpeg_tone(&music, "Dolby_Digital.m4a", 440, 1.0, &["-c:a", "ac3"]);
    ffmpeg_tone(&music, "Control_Tune.flac", 440, 1.0, &["-c:a", "flac"]);
    let db = dir.path().join("j.db");
    let jukebox = start(&music, &db, "null");

    let deadline = Instant::now() + Duration::from_secs(20);
    while jukebox.get("/api/state").1["room"]["library_size"] != 1 {
        assert!(Instant::now() < deadline, "the scan did not list the FLAC");
        std::thread::sleep(Duration::from_millis(100));
    }
    let results = |q: &str| jukebox.get(&format!("/api/search?q={q}")).1["results"].clone();
    assert_eq!(results("control").as_array().unwrap().len(), 1);
    for q in ["windows", "media", "waves", "pack", "dolby", "digital"] {
        assert_eq!(results(q).as_array().unwrap().len(), 0, "{q}");
    }
    // The scan is over (the library size is final); its summary line is in the log.
    let log = stop(jukebox);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["Windows_Media.wma", "Pack_Of_Waves.wv", "Dolby_Digital.m4a"]
                .iter()
                .any(|f| l.contains(f))
        })
        .collect();
    assert_eq!(lines.len(), 1, "one line names them: {lines:#?}\n{log}");
    let line = lines[0];
    for part in [
        "left out 3 audio files",
        "1 wma",
        "1 wv",
        "1 m4a (a codec we cannot decode)",
        "Windows_Media.wma",
        "Pack_Of_Waves.wv",
        "Dolby_Digital.m4a",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
}

/// Stereo pink noise (each channel its own), 8 s, mastered by the ffmpeg filter `master`, and
/// written as `name` with `codec` and the tags `title`, `album` and `artist`.
fn pink(
    dir: &Path,
    name: &str,
    seed: u32,
    master: &str,
    codec: &[&str],
    tags: [&str; 3],
) -> PathBuf {
    let graph = format!(
        "anoisesrc=color=pink:seed={seed}:duration={LEVELLED_SECS}:amplitude=0.5:sample_rate=44100[l];\
         anoisesrc=color=pink:seed={}:duration={LEVELLED_SECS}:amplitude=0.5:sample_rate=44100[r];\
         [l][r]join=inputs=2:channel_layout=stereo",
        seed + 1000
    );
    let mut cmd = media::ffmpeg();
    cmd.args(["-f", "lavfi", "-i", &graph, "-af", master]);
    let [title, album, artist] = tags;
    media::tags(
        &mut cmd,
        &[("title", title), ("album", album), ("artist", artist)],
    )
    .args(codec);
    media::write(&mut cmd, &dir.join(name))
}

/// Each levelled test track's length, in seconds.
const LEVELLED_SECS: f64 = 8.0;

/// The `sound` of an `admin` message (snapshot or update), when it carries one.
fn sound_in(m: &Value) -> Option<&Value> {
    (m["topic"] == "admin").then(|| m.get("sound")).flatten()
}

/// Opus, ALAC and AIFF through the levelling of the same pipeline (`normalize` = `track`, the
/// default target of −14 LUFS, the volume at 100): three masters of pink noise at about −8,
/// −21 and −26 LUFS each play at −14 ± 1 LU, measured by ffmpeg's `ebur128` over each track's
/// own span of the WAV output.
///
/// Nothing plays until the background pass has measured all three (the auto-DJ's pool is a
/// folder that does not exist; the host's requests pass the content rules), and the host's
/// view of each play says its gain is the measured one, `−14 − track_lufs`, where
/// `track_lufs` agrees with ffmpeg's reading of the file: so the test cannot pass on the
/// fallback gain (−3 dB for every track) or on tags (there are none).
#[tokio::test]
async fn opus_alac_and_aiff_are_levelled_to_the_target() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    // A loud modern master (raised and limited), a quieter one, a quiet one.
    let files = [
        pink(
            &music,
            "loud.opus",
            7,
            "volume=10dB,alimiter=limit=0.9:level=0",
            &["-c:a", "libopus", "-b:a", "160k", "-ar", "48000"],
            ["Loud Opus", "Opus Album", "Artist O"],
        ),
        pink(
            &music,
            "middle.m4a",
            8,
            "volume=-3dB",
            &["-c:a", "alac"],
            ["Middle Alac", "Alac Album", "Artist A"],
        ),
        pink(
            &music,
            "quiet.aiff",
            9,
            "volume=-8dB",
            &["-c:a", "pcm_s16be", "-write_id3v2", "1"],
            ["Quiet Aiff", "Aiff Album", "Artist F"],
        ),
    ];
    let mastered: Vec<f64> = files.iter().map(|f| file_lufs(f)).collect();
    eprintln!("mastered at {mastered:.2?} LUFS");
    assert!(
        mastered[0] > -10.0 && mastered[1] < -18.0 && mastered[2] < -23.0,
        "the masters are not apart enough to need levelling: {mastered:?}"
    );

    let db = dir.path().join("j.db");
    let wav = dir.path().join("out.wav");
    let flags = [
        "--volume",
        "100",
        "--crossfade-s",
        "0",
        "--pool",
        "nothing-here",
    ];
    let output = format!("wav:{}", wav.display());
    let mut jukebox = start_levelled(&music, &db, &output, "track", Some(PIN), &flags);
    let host = jukebox.host();
    let mut p = Phone::connect(&jukebox.addr, &host, &["admin"]).await;

    // The background pass measures the three; nothing plays meanwhile (bounded: it runs at
    // idle priority).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = p.recv_within(left).await;
        if let Some(snd) = sound_in(&m) {
            assert!(snd["playing"].is_null(), "something plays already: {snd}");
            if snd["total"] == 3 && snd["measured"] == 3 {
                break;
            }
            assert_eq!(snd["failed"].as_u64().unwrap_or(0), 0, "{snd}");
        }
    }
    let (_, state) = jukebox.get("/api/state");
    assert!(state["now_playing"].is_null(), "{state}");

    // The host asks for all three; they play one after the other.
    let (_, found) = jukebox.get("/api/search?limit=10");
    let tracks = found["results"].as_array().unwrap().clone();
    assert_eq!(tracks.len(), 3, "{found}");
    // The host's view of each play while it plays (the first starts before the replies
    // come), until all three have ended.
    let mut sounds: Vec<Value> = Vec::new();
    let mut keep = |m: &Value| {
        if let Some(snd) = sound_in(m).filter(|s| !s["playing"].is_null()) {
            sounds.push(snd["playing"].clone());
        }
    };
    for t in &tracks {
        let (_, before) = p.ok(json!({"cmd": "request", "track_id": t["id"]})).await;
        before.iter().for_each(&mut keep);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let plays: Vec<PlayReport> = loop {
        let plays = Db::open_readonly(&db)
            .ok()
            .and_then(|d| d.plays_since(0).ok())
            .unwrap_or_default();
        if plays.iter().filter(|p| p.ended_ms.is_some()).count() >= 3 {
            break plays;
        }
        assert!(Instant::now() < deadline, "three plays did not end in time");
        assert!(
            jukebox.child.try_wait().unwrap().is_none(),
            "the jukebox exited early: {}",
            jukebox.log.lock().unwrap()
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), p.recv()).await {
            keep(&m);
        }
    };
    drop(p);
    let log = stop(jukebox);
    assert!(!log.contains("cannot play"), "{log}");
    assert_eq!(plays.len(), 3, "{plays:?}");

    // Back to back, no gap and no fade (different albums, no crossfade): each track's span of
    // the output starts where the ones before it end.
    let mut at = 0.0;
    for play in &plays {
        let i = files
            .iter()
            .position(|f| *f == play.track.path)
            .expect("a play of one of the three");
        let name = play.track.path.file_name().unwrap().to_str().unwrap();
        let id = json!(play.play_id.to_string());
        let views: Vec<&Value> = sounds.iter().filter(|s| s["play_id"] == id).collect();
        assert!(!views.is_empty(), "{name}: the host never saw it play");
        for v in &views {
            assert_eq!(v["source"], "measured", "{name}: {v}");
            assert_eq!(v["album"], false, "{name}: {v}");
            let (gain, lufs) = (
                v["gain_db"].as_f64().unwrap(),
                v["track_lufs"].as_f64().unwrap(),
            );
            assert!((gain - (-14.0 - lufs)).abs() < 0.11, "{name}: {v}");
            assert!(
                (lufs - mastered[i]).abs() <= 0.5,
                "{name}: measured {lufs} LUFS, ffmpeg {:.2} LUFS",
                mastered[i]
            );
        }
        let secs = play.track.duration_ms as f64 / 1000.0;
        assert!((secs - LEVELLED_SECS).abs() < 0.1, "{name}: {secs} s");
        let l = ffmpeg_lufs(&wav, at + 0.5, secs - 1.0);
        eprintln!(
            "{name}: mastered {:.2} LUFS, gain {} dB, played {l:.2} LUFS",
            mastered[i], views[0]["gain_db"]
        );
        assert!(
            (l + 14.0).abs() <= 1.0,
            "{name} played at {l:.2} LUFS (mastered {:.2}), not -14 ± 1",
            mastered[i]
        );
        at += secs;
    }
    let secs = wav_seconds(&wav);
    assert!(
        (secs - at).abs() < 0.1,
        "wav {secs:.3} s for {at:.3} s of tracks"
    );
    // The limiter: no sample at full scale, whatever the gain.
    let peak = hound::WavReader::open(&wav)
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap().unsigned_abs())
        .max()
        .unwrap();
    assert!(peak < 32767, "a sample at full scale: {peak}");
}

/// An .m4a whose sample table claims 4 billion entries (what the `audio_file` fuzz target
/// found): the MP4 demuxer would ask for 34 GB, and the allocation's failure aborts the whole
/// process, which no panic handler can stop. The tag reader refuses such a file at the scan,
/// but a file can change after it: here a good .m4a is listed, then damaged, then requested.
/// The player refuses it with a line that names it, and the party plays on.
#[test]
fn an_m4a_damaged_after_the_scan_is_refused_at_play_and_the_party_goes_on() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let m4a = ffmpeg_tone(&music, "Damaged_Table.m4a", 440, 1.0, &["-c:a", "aac"]);
    ffmpeg_tone(&music, "Control_Tune.flac", 440, 1.0, &["-c:a", "flac"]);
    let db = dir.path().join("j.db");
    // Any song may be requested again at once.
    let again = ["--no-repeat-minutes", "0", "--artist-spacing", "0"];
    let mut jukebox = start_levelled(&music, &db, "null", "off", Some(PIN), &again);
    let deadline = Instant::now() + Duration::from_secs(20);
    while jukebox.get("/api/state").1["room"]["library_size"] != 2 {
        assert!(
            Instant::now() < deadline,
            "the scan did not list both files"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let found = jukebox.get("/api/search?q=damaged").1;
    let track = found["results"][0]["id"].as_str().unwrap().to_string();

    let mut bytes = std::fs::read(&m4a).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"stts")
        .expect("ffmpeg writes an stts table");
    // After the box type: version and flags, then the entry count, all ones as in the
    // fuzzer's file.
    bytes[at + 4..at + 12].copy_from_slice(&u64::MAX.to_be_bytes());
    std::fs::write(&m4a, &bytes).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut phone = Phone::connect(&jukebox.addr, &jukebox.guest("Ada"), &["queue"]).await;
        // Refused while it is the song playing (it was damaged under the player): asked
        // again. Gone from the library: the player already found it damaged.
        for _ in 0..50 {
            let rid = phone
                .request(json!({"cmd": "request", "track_id": track}))
                .await;
            let (reply, _) = phone.reply(rid).await;
            if reply["ok"] == true || reply["error"]["code"] == "not_found" {
                return;
            }
            assert_eq!(reply["error"]["data"]["playing_now"], true, "{reply}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the request was never taken");
    });
    // Opened again (for the request, or by the player's own choice) and refused by name.
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let log = jukebox.log.lock().unwrap().clone();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("Damaged_Table.m4a") && l.contains("stts"))
        {
            break l.to_string();
        }
        assert!(
            jukebox.child.try_wait().unwrap().is_none(),
            "the jukebox died: {log}"
        );
        assert!(Instant::now() < deadline, "no line names the file:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(line.contains("claims"), "{line}");
    // And the music goes on: two more plays end.
    let plays_now = Db::open_readonly(&db)
        .unwrap()
        .plays_since(0)
        .unwrap()
        .iter()
        .filter(|p| p.ended_ms.is_some())
        .count();
    wait_plays(&db, plays_now + 2, &mut jukebox);
    stop(jukebox);
}
