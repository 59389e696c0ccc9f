//! The sound of the party, measured: real files made with ffmpeg, played by the real player
//! into the `wav:` output, measured with ffmpeg's `astats` and `ebur128` filters.
//!
//! Two kinds of test:
//! - the player on its own (the library's `Player`, fed commands the way the hub feeds it), for
//!   what needs exact control of the items: crossfades, gapless joins, levelling gain, the
//!   limiter;
//! - the real binary, for what a guest or the host does: pause, resume, skip, a starved
//!   process, a paused jukebox's idle thread. The last ones (marked "hub settings") drive the
//!   sound settings of protocol §11 over HTTP.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jukebox::config::OutputSpec;
use jukebox::player::{Join, PlayItem, Player, PlayerCommand, PlayerEvent};
use serde_json::json;

use common::live::Server;

const RATE: f64 = 44_100.0;

// ---------------------------------------------------------------------------------------------
// Files and meters (ffmpeg)

/// Runs ffmpeg with `args` (after the common flags); panics with its message on failure.
fn ffmpeg(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (scripts/test-deps.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg {args:?}: {err}");
    err
}

/// A file made from an ffmpeg `lavfi` source graph, with tags.
fn make(dir: &Path, name: &str, graph: &str, tags: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(name);
    let mut args: Vec<String> = ["-loglevel", "error", "-f", "lavfi", "-i", graph]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["-ar".into(), "44100".into()]);
    for (k, v) in tags {
        args.push("-metadata".into());
        args.push(format!("{k}={v}"));
    }
    args.push(path.to_str().unwrap().into());
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    path
}

/// Stereo pink noise (each channel its own), `secs` long, at `amplitude`.
fn pink(dir: &Path, name: &str, seed: u32, secs: f64, amplitude: f64) -> PathBuf {
    let graph = format!(
        "anoisesrc=color=pink:seed={seed}:duration={secs}:amplitude={amplitude}:sample_rate=44100[l];\
         anoisesrc=color=pink:seed={}:duration={secs}:amplitude={amplitude}:sample_rate=44100[r];\
         [l][r]join=inputs=2:channel_layout=stereo",
        seed + 1000
    );
    make(dir, name, &graph, &[])
}

/// A stereo sine at `amplitude`.
fn sine(
    dir: &Path,
    name: &str,
    freq: u32,
    secs: f64,
    amplitude: f64,
    tags: &[(&str, &str)],
) -> PathBuf {
    let e = format!("{amplitude}*sin(2*PI*{freq}*t)");
    make(
        dir,
        name,
        &format!("aevalsrc='{e}|{e}':s=44100:d={secs}"),
        tags,
    )
}

/// `astats` over [start, end) seconds of `path` (the whole file when `None`), as floats
/// (full scale 1.0): "Peak level dB", "RMS level dB", "Max difference", ….
fn astats(path: &Path, span: Option<(f64, f64)>) -> HashMap<String, f64> {
    let trim = span.map_or(String::new(), |(a, b)| format!("atrim=start={a}:end={b},"));
    astats_after(path, &trim)
}

/// `astats` after the filters `trim` (empty, or ending in a comma).
fn astats_after(path: &Path, trim: &str) -> HashMap<String, f64> {
    let err = ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-af",
        &format!("{trim}aformat=sample_fmts=flt,astats=measure_perchannel=none"),
        "-f",
        "null",
        "-",
    ]);
    let mut out = HashMap::new();
    let overall = err
        .split("Overall")
        .nth(1)
        .expect("astats printed its summary");
    for line in overall.lines() {
        let Some(kv) = line.split("] ").nth(1) else {
            continue;
        };
        if let Some((k, v)) = kv.split_once(": ") {
            if let Ok(v) = v.trim().parse::<f64>() {
                out.insert(k.trim().to_string(), v);
            }
        }
    }
    out
}

/// Integrated loudness (LUFS) of [start, end) seconds of `path`, by `ebur128`.
fn lufs(path: &Path, span: Option<(f64, f64)>) -> f64 {
    let trim = span.map_or(String::new(), |(a, b)| format!("atrim=start={a}:end={b},"));
    let err = ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-af",
        &format!("{trim}ebur128"),
        "-f",
        "null",
        "-",
    ]);
    let summary = err.rsplit("Summary:").next().unwrap();
    let i = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("I:"))
        .expect("ebur128 printed I");
    i.trim().trim_end_matches("LUFS").trim().parse().unwrap()
}

/// Frames in a WAV file (its header).
fn frames(path: &Path) -> u32 {
    hound::WavReader::open(path)
        .expect("a finalised WAV")
        .duration()
}

// ---------------------------------------------------------------------------------------------
// The player on its own

/// The player writing to a WAV file, and every event it sent, with when.
struct Rig {
    player: Player,
    events: tokio::sync::mpsc::UnboundedReceiver<PlayerEvent>,
    seen: Vec<(Instant, PlayerEvent)>,
    wav: PathBuf,
}

impl Rig {
    fn new(wav: PathBuf) -> Rig {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let player = Player::spawn(OutputSpec::Wav(wav.clone()), tx).unwrap();
        // Full volume: the levels in the file are the levels of the mix.
        player.send(PlayerCommand::SetVolume(100));
        Rig {
            player,
            events,
            seen: Vec::new(),
            wav,
        }
    }

    fn send(&self, c: PlayerCommand) {
        self.player.send(c);
    }

    /// Waits (bounded) for an event matching `pred`; returns when it came.
    fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&PlayerEvent) -> bool,
    ) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            while let Ok(e) = self.events.try_recv() {
                let now = Instant::now();
                let hit = pred(&e);
                self.seen.push((now, e));
                if hit {
                    return now;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the player (finalising the WAV); returns the underruns it counted.
    fn finish(mut self) -> (PathBuf, u64) {
        let underruns = self.player.stats().underruns();
        self.player.shutdown();
        (self.wav, underruns)
    }
}

fn item(key: u64, path: &Path, gain_db: f32, join: Join) -> PlayItem {
    PlayItem {
        key,
        path: path.to_owned(),
        start_ms: 0,
        gain_db,
        join,
    }
}

fn finished(key: u64) -> impl Fn(&PlayerEvent) -> bool {
    move |e| matches!(e, PlayerEvent::Finished { key: k, .. } if *k == key)
}

/// Two pink-noise tracks of different albums, crossfaded over 4 s: the output is 4 s shorter
/// than the two (±20 ms), the level through the fade stays within ±1.5 dB of the tracks' own
/// (equal power: a linear fade would dip 3 dB in the middle), and the play changes when the
/// fade starts: `Finished{A, next: B}` then `Started{B}`, 8 s after A started.
#[test]
fn a_crossfade_overlaps_two_tracks_at_equal_power() {
    let dir = common::tempdir();
    let a = pink(dir.path(), "a.flac", 1, 12.0, 0.25);
    let b = pink(dir.path(), "b.flac", 2, 12.0, 0.25);
    let mut rig = Rig::new(dir.path().join("out.wav"));
    rig.send(PlayerCommand::SetCrossfade(Duration::from_secs(4)));
    rig.send(PlayerCommand::Load(item(1, &a, 0.0, Join::Mix)));
    rig.send(PlayerCommand::Preload(Some(item(2, &b, 0.0, Join::Mix))));
    let started_a = rig.wait("A started", Duration::from_secs(10), |e| {
        matches!(e, PlayerEvent::Started { key: 1, .. })
    });
    let finished_a = rig.wait("A finished", Duration::from_secs(20), finished(1));
    let started_b = rig.wait("B started", Duration::from_secs(1), |e| {
        matches!(e, PlayerEvent::Started { key: 2, .. })
    });
    rig.wait("B finished", Duration::from_secs(20), finished(2));
    let order: Vec<_> = rig.seen.iter().map(|(_, e)| e.clone()).collect();
    let (wav, underruns) = rig.finish();

    assert!(
        order.contains(&PlayerEvent::Finished {
            key: 1,
            next: Some(2)
        }),
        "{order:?}"
    );
    let at = (finished_a - started_a).as_secs_f64();
    assert!(
        (7.5..8.6).contains(&at),
        "the play changed {at:.2} s after A started"
    );
    assert!(started_b >= finished_a);

    let len = f64::from(frames(&wav)) / RATE;
    assert!((len - 20.0).abs() <= 0.02, "output {len:.3} s, want 20 s");
    let level = |a, b| astats(&wav, Some((a, b)))["RMS level dB"];
    let alone = (level(1.0, 7.0) + level(13.0, 19.0)) / 2.0;
    for s in [8.0, 9.0, 9.5, 10.0, 11.0] {
        let l = level(s, s + 1.0);
        assert!(
            (l - alone).abs() <= 1.5,
            "{l:.2} dB at {s}..{} s, the tracks alone {alone:.2} dB",
            s + 1.0
        );
    }
    assert_eq!(underruns, 0);
}

/// A continuous sine cut into two files, joined `Gapless` while a crossfade is set: the output
/// is exactly the two (no overlap, no trim, ±1 frame) and the join adds no step beyond the
/// sine's own. The same pair joined `Mix` is crossfaded (so the gapless rule is what kept it
/// exact).
#[test]
fn a_gapless_join_stays_sample_exact_with_a_crossfade_set() {
    let dir = common::tempdir();
    let whole = sine(dir.path(), "whole.wav", 441, 6.0, 0.5, &[]);
    let cut = 132_317; // not on a chunk boundary
    let w = whole.to_str().unwrap();
    let one = dir.path().join("one.flac");
    let two = dir.path().join("two.flac");
    ffmpeg(&[
        "-loglevel",
        "error",
        "-i",
        w,
        "-af",
        &format!("atrim=end_sample={cut}"),
        one.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-loglevel",
        "error",
        "-i",
        w,
        "-af",
        &format!("atrim=start_sample={cut}"),
        two.to_str().unwrap(),
    ]);
    let own_step = astats(&whole, None)["Max difference"];

    // Both parts are 3 s: a 0.9 s crossfade is short enough (a third of each) to apply.
    for (join, want_s) in [(Join::Gapless, 6.0), (Join::Mix, 5.1)] {
        let mut rig = Rig::new(dir.path().join(format!("{join:?}.wav")));
        rig.send(PlayerCommand::SetCrossfade(Duration::from_millis(900)));
        rig.send(PlayerCommand::Load(item(1, &one, 0.0, Join::Mix)));
        rig.send(PlayerCommand::Preload(Some(item(2, &two, 0.0, join))));
        rig.wait(
            "the second part finished",
            Duration::from_secs(20),
            finished(2),
        );
        let (wav, underruns) = rig.finish();
        let got = frames(&wav);
        let want = (want_s * RATE) as u32;
        assert!(
            got.abs_diff(want) <= 1,
            "{join:?}: {got} frames, want {want}"
        );
        if join == Join::Gapless {
            let step = astats(&wav, None)["Max difference"];
            // The 16-bit output rounds each sample by at most half a step of 1/32768.
            assert!(
                step <= own_step + 2.0 / 32768.0,
                "the join adds a step: {step} vs the sine's {own_step}"
            );
        }
        assert_eq!(underruns, 0, "{join:?}");
    }
}

/// +12 dB of levelling gain on quiet noise with −1 dBFS clicks: the limiter keeps every sample
/// below −1 dBFS (a 16-bit file never holds ±32767; without it the clicks would hit +11 dBFS),
/// and the music is still 12 dB louder (within 1 LU): the clicks are short and rare, so the
/// wall touches little else.
#[test]
fn the_limiter_holds_whatever_the_gain() {
    let dir = common::tempdir();
    let click = "if(lt(mod(t\\,2)\\,0.0001)\\,0.891\\,0.05*(2*random(N)-1))";
    let graph = format!(
        "aevalsrc='{}|{}':s=44100:d=6",
        click.replace('N', "0"),
        click.replace('N', "1")
    );
    let track = make(dir.path(), "clicks.flac", &graph, &[]);
    let source_peak = astats(&track, None)["Peak level dB"];
    assert!(
        (-1.1..=-0.9).contains(&source_peak),
        "source peak {source_peak}"
    );
    let source_lufs = lufs(&track, None);

    let mut rig = Rig::new(dir.path().join("out.wav"));
    rig.send(PlayerCommand::Load(item(1, &track, 12.0, Join::Mix)));
    rig.wait("the track finished", Duration::from_secs(20), finished(1));
    let (wav, underruns) = rig.finish();

    let out = astats(&wav, None);
    let peak = out["Peak level dB"];
    assert!(peak <= -0.95, "output peak {peak} dBFS");
    let max_sample = hound::WavReader::open(&wav)
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap().unsigned_abs())
        .max()
        .unwrap();
    assert!(max_sample < 32767, "{max_sample}");
    let gained = lufs(&wav, None) - source_lufs;
    assert!((gained - 12.0).abs() <= 1.0, "loudness +{gained:.2} LU");
    assert_eq!(frames(&wav), 6 * 44_100);
    assert_eq!(underruns, 0);
}

/// A new levelling gain for the playing track ramps: the level drops by the 12 dB asked, and
/// no sample-to-sample step in the file exceeds the tone's own (a jump in gain would be one).
#[test]
fn a_gain_change_while_playing_is_ramped() {
    let dir = common::tempdir();
    let tone = sine(dir.path(), "tone.flac", 100, 5.0, 0.8, &[]);
    let own_step = astats(&tone, None)["Max difference"];
    let mut rig = Rig::new(dir.path().join("out.wav"));
    rig.send(PlayerCommand::Load(item(7, &tone, 0.0, Join::Mix)));
    rig.wait("started", Duration::from_secs(10), |e| {
        matches!(e, PlayerEvent::Started { .. })
    });
    std::thread::sleep(Duration::from_millis(2000));
    rig.send(PlayerCommand::SetGain {
        key: 7,
        gain_db: -12.0,
    });
    rig.wait("finished", Duration::from_secs(10), finished(7));
    let (wav, _) = rig.finish();
    let before = astats(&wav, Some((0.5, 1.5)))["RMS level dB"];
    let after = astats(&wav, Some((3.5, 4.5)))["RMS level dB"];
    assert!(
        (before - after - 12.0).abs() < 0.3,
        "{before:.2} → {after:.2} dB"
    );
    let step = astats(&wav, None)["Max difference"];
    assert!(
        step <= own_step * 1.02 + 2.0 / 32768.0,
        "step {step} vs the tone's {own_step}"
    );
}

// ---------------------------------------------------------------------------------------------
// The real binary

fn start(dir: &Path, music: &Path, wav: &Path, extra: &[&str]) -> Server {
    Server::start_with(
        &dir.join("j.db"),
        music,
        &format!("wav:{}", wav.display()),
        Some(common::live::PIN),
        extra,
    )
}

fn host_post(s: &Server, token: &str, action: &str, body: serde_json::Value) {
    let (st, v) = s.post(&format!("/api/host/{action}"), &body, Some(token));
    assert_eq!(st, 200, "{action}: {v}");
}

/// Waits (bounded) until `n` plays have started (the database says).
fn wait_plays(db: &Path, n: usize) -> Vec<jukebox::store::PlayReport> {
    common::wait::wait_for_blocking(Duration::from_secs(30), &format!("{n} plays"), || {
        jukebox::store::Db::open_readonly(db)
            .ok()
            .and_then(|d| d.plays_since(0).ok())
            .filter(|p| p.len() >= n)
    })
}

/// Pause, resume and skip with a loud low tone playing: each fades (about 150 ms) instead of
/// cutting, so the largest sample-to-sample step anywhere in the output stays within the
/// tone's own.
///
/// The bound: a sine of amplitude A at f Hz moves at most 2πfA/44100 per sample (A is the
/// output's peak, by astats, so the volume and the levelling gain do not matter); a fade of
/// 150 ms (6615 frames) adds at most A/6615; 16-bit rounding adds 1/32768; 5% for the limiter's
/// and the ramps' rounding. A hard cut of the same tone steps by up to A, about 40 times the
/// bound for this 100 Hz tone.
#[test]
fn pause_resume_and_skip_leave_no_click() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    sine(
        &music,
        "low.flac",
        100,
        30.0,
        0.8,
        &[("title", "Low"), ("artist", "A"), ("album", "X")],
    );
    sine(
        &music,
        "low2.flac",
        100,
        30.0,
        0.8,
        &[("title", "Low too"), ("artist", "B"), ("album", "Y")],
    );
    let wav = dir.path().join("out.wav");
    let s = start(dir.path(), &music, &wav, &[]);
    let host = s.host();
    s.playing();
    std::thread::sleep(Duration::from_millis(1500));
    host_post(&s, &host, "pause", json!({}));
    std::thread::sleep(Duration::from_millis(1000));
    host_post(&s, &host, "play", json!({}));
    std::thread::sleep(Duration::from_millis(1500));
    host_post(&s, &host, "skip", json!({}));
    wait_plays(&s.db, 2);
    std::thread::sleep(Duration::from_millis(1500));
    let log = s.log.clone();
    let health = s.get("/healthz").1;
    assert!(s.stop().success());

    let secs = f64::from(frames(&wav)) / RATE;
    assert!(secs > 3.5, "{secs} s written");
    let amplitude = 10f64.powf(astats(&wav, None)["Peak level dB"] / 20.0);
    let own = 2.0 * std::f64::consts::PI * 100.0 / RATE * amplitude;
    let bound = (own + amplitude / 6615.0 + 1.0 / 32768.0) * 1.05;
    let whole = astats(&wav, None);
    assert!(
        whole["Max difference"] <= bound,
        "a click: step {} > bound {bound} (tone amplitude {amplitude})",
        whole["Max difference"]
    );
    // A normal run has no underruns.
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("ran dry"), "{log}");
    assert_eq!(health["audio"]["underruns"], 0, "{health}");
}

/// A jukebox stopped for a second (SIGSTOP) cannot feed its output: it reports the periods it
/// missed (the log, and `/healthz` `audio.underruns` where the server reports it).
#[test]
fn a_starved_player_counts_underruns() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    sine(&music, "long.flac", 300, 30.0, 0.3, &[("title", "Long")]);
    let wav = dir.path().join("out.wav");
    let s = start(dir.path(), &music, &wav, &[]);
    s.playing();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !s.log.lock().unwrap().contains("ran dry"),
        "an underrun before the stop"
    );
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(1000));
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    common::wait::wait_until_blocking(Duration::from_secs(10), "the underrun logged", || {
        s.log.lock().unwrap().contains("ran dry")
    });
    let health = s.get("/healthz").1;
    let u = health["audio"]["underruns"]
        .as_u64()
        .expect("healthz audio.underruns");
    // One second missed, in periods of 1024 frames (23 ms): about 43.
    assert!(u >= 20, "{health}");
    let log = s.log.lock().unwrap().clone();
    let line = log.lines().find(|l| l.contains("ran dry")).unwrap();
    assert!(line.contains("periods"), "{line}");
    assert!(s.stop().success());
}

/// Paused, the player thread sleeps: it is not woken (no context switches) for seconds, where
/// a polling loop would wake several times a second.
#[test]
fn a_paused_player_does_not_wake_up() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    sine(&music, "t.flac", 300, 30.0, 0.3, &[("title", "T")]);
    let wav = dir.path().join("out.wav");
    let s = start(dir.path(), &music, &wav, &[]);
    let host = s.host();
    s.playing();
    host_post(&s, &host, "pause", json!({}));
    std::thread::sleep(Duration::from_millis(700));
    let pid = s.child.id();
    let player = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "player")
        })
        .expect("a thread named player")
        .path();
    let switches = || {
        let status = std::fs::read_to_string(player.join("status")).unwrap();
        status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    let before = switches();
    std::thread::sleep(Duration::from_secs(3));
    let woke = switches() - before;
    assert!(
        woke <= 1,
        "the paused player thread woke {woke} times in 3 s"
    );
    assert!(s.stop().success());
}

// ---------------------------------------------------------------------------------------------
// With the hub's sound settings (protocol §11)

/// Hub settings: `crossfade_s` = 4 between two tracks of different albums: the play changes
/// when the fade starts (8 s into a 12 s track), and both tones sound together in the overlap.
#[test]
fn hub_settings_crossfade_between_albums() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    sine(
        &music,
        "a.flac",
        440,
        12.0,
        0.3,
        &[("title", "A"), ("album", "X"), ("artist", "P")],
    );
    sine(
        &music,
        "b.flac",
        660,
        12.0,
        0.3,
        &[("title", "B"), ("album", "Y"), ("artist", "Q")],
    );
    let wav = dir.path().join("out.wav");
    let s = start(dir.path(), &music, &wav, &[]);
    let host = s.host();
    host_post(&s, &host, "settings", json!({"crossfade_s": 4}));
    let plays = wait_plays(&s.db, 2);
    // Until B has played past the overlap.
    std::thread::sleep(Duration::from_millis(5000));
    assert!(s.stop().success());
    let gap = plays[1].started_ms - plays[0].started_ms;
    assert!((7_500..=8_700).contains(&gap), "B started {gap} ms after A");
    let band = |f: u32, a: f64, b: f64| {
        let err = ffmpeg(&[
            "-i",
            wav.to_str().unwrap(),
            "-af",
            &format!("atrim=start={a}:end={b},bandpass=f={f}:width_type=q:w=20,aformat=sample_fmts=flt,astats=measure_perchannel=none"),
            "-f",
            "null",
            "-",
        ]);
        let overall = err.split("Overall").nth(1).unwrap();
        overall
            .lines()
            .find_map(|l| l.split("RMS level dB: ").nth(1))
            .unwrap()
            .trim()
            .parse::<f64>()
            .unwrap()
    };
    let (first, second) = if plays[0].track.title == "A" {
        (440, 660)
    } else {
        (660, 440)
    };
    // Alone, then both at once in the middle of the overlap.
    assert!(band(first, 2.0, 6.0) - band(second, 2.0, 6.0) > 20.0);
    let mid = (band(first, 9.5, 10.5), band(second, 9.5, 10.5));
    assert!((mid.0 - mid.1).abs() < 6.0, "in the overlap {mid:?}");
}

/// Hub settings: three tracks mastered at about −7, −18 and −26 LUFS (pink noise, of three
/// albums, ReplayGain-tagged so the gain is known before any measurement): in `track` and in
/// `auto` (different albums: track gain) each plays at −14 ± 1 LU (the volume at 100); `off`
/// leaves each as mastered (± 0.5 LU: only the limiter touches the loudest). No sample reaches
/// full scale in any mode.
#[test]
fn hub_settings_level_three_masters() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let mut loudness = Vec::new();
    // A loud modern master (raised and limited), a moderate one, a quiet one.
    let masters = [
        "volume=12dB,alimiter=limit=0.9:level=0",
        "volume=0dB",
        "volume=-8dB",
    ];
    for (i, master) in masters.iter().enumerate() {
        let raw = pink(dir.path(), &format!("raw{i}.flac"), i as u32 + 5, 8.0, 0.5);
        let mastered = dir.path().join(format!("m{i}.flac"));
        ffmpeg(&[
            "-loglevel",
            "error",
            "-i",
            raw.to_str().unwrap(),
            "-af",
            master,
            mastered.to_str().unwrap(),
        ]);
        let l = lufs(&mastered, None);
        let gain = -18.0 - l;
        let name = music.join(format!("t{i}.flac"));
        ffmpeg(&[
            "-loglevel",
            "error",
            "-i",
            mastered.to_str().unwrap(),
            "-metadata",
            &format!("title=T{i}"),
            "-metadata",
            &format!("album=Album {i}"),
            "-metadata",
            &format!("REPLAYGAIN_TRACK_GAIN={gain:.2} dB"),
            name.to_str().unwrap(),
        ]);
        loudness.push((name, l));
    }
    assert!(
        loudness[0].1 > -9.0 && loudness[2].1 < -24.0,
        "{loudness:?}"
    );
    std::thread::scope(|scope| {
        for mode in ["track", "auto", "off"] {
            let (dir, music, loudness) = (dir.path(), &music, &loudness);
            scope.spawn(move || level_three_masters(dir, music, loudness, mode));
        }
    });
}

/// One run of [`hub_settings_level_three_masters`] in `mode`, in a database of its own.
fn level_three_masters(dir: &Path, music: &Path, loudness: &[(PathBuf, f64)], mode: &str) {
    let run = dir.join(mode);
    std::fs::create_dir_all(&run).unwrap();
    let wav = run.join("out.wav");
    // Configured (the settings table's flags), so the very first play is levelled.
    let flags = [
        "--normalize",
        mode,
        "--loudness-lufs",
        "-14",
        "--crossfade-s",
        "0",
        "--volume",
        "100",
    ];
    let s = start(&run, music, &wav, &flags);
    let plays = wait_ended(&s.db, 3);
    assert!(s.stop().success());
    // Joined without a gap or a fade, each 8 s: segment i is [8i, 8i + 8) s of the output,
    // in the order the auto-DJ chose.
    for (i, play) in plays.iter().take(3).enumerate() {
        let at = 8.0 * i as f64;
        let l = lufs(&wav, Some((at + 0.5, at + 7.5)));
        let mastered = loudness
            .iter()
            .find(|(p, _)| *p == play.track.path)
            .map(|(_, l)| *l)
            .expect("a play of one of the three");
        if mode == "off" {
            assert!(
                (l - mastered).abs() <= 0.5,
                "{mode} segment {i}: {l:.2} LUFS, mastered {mastered:.2}"
            );
        } else {
            assert!(
                (l + 14.0).abs() <= 1.0,
                "{mode} segment {i}: {l:.2} LUFS (mastered {mastered:.2})"
            );
        }
    }
    let peak = astats(&wav, None)["Peak level dB"];
    assert!(peak < -0.9, "{mode}: peak {peak} dBFS");
}

/// Waits (bounded) until `n` plays have ended; returns every play so far, in order.
fn wait_ended(db: &Path, n: usize) -> Vec<jukebox::store::PlayReport> {
    common::wait::wait_for_blocking(Duration::from_secs(60), &format!("{n} plays ended"), || {
        jukebox::store::Db::open_readonly(db)
            .ok()
            .and_then(|d| d.plays_since(0).ok())
            .filter(|p| p.iter().filter(|p| p.ended_ms.is_some()).count() >= n)
    })
}

/// Hub settings: `auto` with two tracks of one album (track 1 and 2), mastered 12 dB apart: both
/// get the album's gain, so the quiet one stays 12 dB below the loud one (± 0.5 dB, where
/// `track` mode would level them), and the join is sample-exact.
#[test]
fn hub_settings_auto_keeps_an_albums_relative_levels() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let album = |title: &'static str, n: &'static str| {
        [
            ("title", title),
            ("album", "Suite"),
            ("artist", "P"),
            ("track", n),
        ]
    };
    sine(&music, "1-quiet.flac", 330, 8.0, 0.05, &album("Quiet", "1"));
    sine(&music, "2-loud.flac", 330, 8.0, 0.2, &album("Loud", "2"));
    let wav = dir.path().join("out.wav");
    let flags = [
        "--normalize",
        "auto",
        "--volume",
        "100",
        "--crossfade-s",
        "4",
    ];
    let s = start(dir.path(), &music, &wav, &flags);
    let plays = wait_ended(&s.db, 2);
    assert!(s.stop().success());
    // Sample-exact: each track is 8 s at 44.1 kHz (the output's rate), a sine that starts at
    // exactly 0, so frame 352,800 of the output is the second track's first sample (0) between
    // two that are not. A gap would put zeros after it; an overlap or a lost frame, a sample
    // of the first track on it. Read with astats, one frame at a time.
    let peak_at = |frame: u32| {
        let trim = format!("atrim=start_sample={frame}:end_sample={},", frame + 1);
        astats_after(&wav, &trim)["Peak level dB"]
    };
    assert!(frames(&wav) > 2 * 352_800, "both tracks played whole");
    let seam = [peak_at(352_799), peak_at(352_800), peak_at(352_801)];
    assert!(
        seam[0] > -80.0 && seam[1] == f64::NEG_INFINITY && seam[2] > -80.0,
        "not sample-exact at the join: peaks {seam:?} dB at frames 352,799..=352,801"
    );
    let level = |i: usize| {
        let at = 8.0 * i as f64;
        astats(&wav, Some((at + 1.0, at + 7.0)))["RMS level dB"]
    };
    let (first, second) = (level(0), level(1));
    let (q, l) = if plays[0].track.title == "Quiet" {
        (first, second)
    } else {
        (second, first)
    };
    assert!(
        (l - q - 12.04).abs() <= 0.5,
        "quiet {q:.2} dB, loud {l:.2} dB: the album's levels were not kept"
    );
}
