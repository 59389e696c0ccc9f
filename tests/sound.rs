//! The sound of the party, measured: real files made with ffmpeg, played by the real player
//! into the `wav:` output, measured with ffmpeg's `astats`, `ebur128` and `silencedetect`
//! filters.
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
use common::media::{astats, astats_after, run as ffmpeg};

const RATE: f64 = 44_100.0;

// ---------------------------------------------------------------------------------------------
// Files and meters (ffmpeg)

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

/// A stereo `freq` Hz tone at half scale, `secs` long, after `lead` and before `trail` seconds
/// of digital silence (exact zeros, ffmpeg's `adelay` and `apad`), as a WAV: every length is
/// exact to the frame. The tone starts at a phase of 1 rad, and `freq × secs` is whole, so its
/// first and last frames are loud (about −7.5 dBFS) and no run of it is below −60 dBFS for
/// longer than one frame: where its silence ends and begins is exact, and so is what a trim of
/// that silence leaves.
fn padded_tone(dir: &Path, name: &str, freq: u32, lead: u32, secs: u32, trail: u32) -> PathBuf {
    let e = format!("0.5*sin(2*PI*{freq}*t+1)");
    let r = RATE as u32;
    let graph = format!(
        "aevalsrc='{e}|{e}':s=44100:d={secs},adelay=delays={}S:all=1,apad=pad_len={}",
        lead * r,
        trail * r
    );
    let path = make(dir, name, &graph, &[]);
    assert_eq!(frames(&path), (lead + secs + trail) * r, "{name}");
    path
}

/// The stretches of `path` below −60 dBFS on every channel (the product's "digital silence")
/// at least `min_s` long, as (start, duration) in seconds, by ffmpeg's `silencedetect`.
fn silences(path: &Path, min_s: f64) -> Vec<(f64, f64)> {
    let err = ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-af",
        &format!("silencedetect=noise=-60dB:duration={min_s}"),
        "-f",
        "null",
        "-",
    ]);
    let num = |s: &str| s.split_whitespace().next().unwrap().parse::<f64>();
    let mut out = Vec::new();
    let mut start = None;
    for line in err.lines() {
        if let Some(v) = line.split("silence_start: ").nth(1) {
            start = Some(num(v).unwrap());
        }
        if let Some(v) = line.split("silence_duration: ").nth(1) {
            out.push((
                start.take().expect("a start before a duration"),
                num(v).unwrap(),
            ));
        }
    }
    if let Some(s) = start {
        // Silent to the end, and not reported as ended.
        out.push((s, f64::from(frames(path)) / RATE - s));
    }
    out
}

/// The RMS level (linear, full scale 1.0) of each consecutive `window`-frame slice of `path`,
/// by ffmpeg's `astats` reset on every slice (`asetnsamples` cuts them, and pads the last one
/// with silence: the file has ended there).
fn rms_windows(path: &Path, window: usize) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-loglevel", "error"])
        .arg("-i")
        .arg(path)
        .args([
            "-af",
            &format!(
                "asetnsamples=n={window}:p=1,aformat=sample_fmts=flt,\
                 astats=metadata=1:reset=1:measure_perchannel=none,\
                 ametadata=mode=print:key=lavfi.astats.Overall.RMS_level:file=-"
            ),
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let levels: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("lavfi.astats.Overall.RMS_level="))
        .map(|v| match v.trim() {
            "-inf" => 0.0,
            db => 10f64.powf(db.parse::<f64>().unwrap() / 20.0),
        })
        .collect();
    let whole = (frames(path) as usize).div_ceil(window);
    assert_eq!(levels.len(), whole, "{text}");
    levels
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

/// `first` loaded and `second` preloaded after it, with `crossfade` set, played into `wav`
/// until the second finishes (within a minute: these play at most 30 s of audio); returns the
/// WAV, the underruns, and how long after the first started its `Finished` came (when the
/// play changed).
fn play_two(
    wav: PathBuf,
    crossfade: Duration,
    first: PlayItem,
    second: PlayItem,
) -> (PathBuf, u64, f64) {
    let (a, b) = (first.key, second.key);
    let mut rig = Rig::new(wav);
    rig.send(PlayerCommand::SetCrossfade(crossfade));
    rig.send(PlayerCommand::Load(first));
    rig.send(PlayerCommand::Preload(Some(second)));
    let started = rig.wait(
        "the first started",
        Duration::from_secs(10),
        |e| matches!(e, PlayerEvent::Started { key, .. } if *key == a),
    );
    let changed = rig.wait("the first finished", Duration::from_secs(60), finished(a));
    rig.wait("the second finished", Duration::from_secs(60), finished(b));
    let went_on = rig.seen.iter().any(|(_, e)| {
        *e == PlayerEvent::Finished {
            key: a,
            next: Some(b),
        }
    });
    assert!(went_on, "the player did not go on: {:?}", rig.seen);
    let (wav, underruns) = rig.finish();
    (wav, underruns, (changed - started).as_secs_f64())
}

/// Digital silence at a `Mix` seam is trimmed (engine.rs: the loaded track's and the next
/// one's leading silence, up to 5 s; the trailing silence the player has decoded ahead, which
/// is the crossfade + 3 s). Tones between exact runs of zeros (see [`padded_tone`]), so every
/// expected length is exact to the frame, and ffmpeg's `silencedetect` shows what silence is
/// left:
/// - two tracks of different albums, 2 s of silence, 8 s of tone, 2 s of silence each, no
///   crossfade: the output is the two tones, 16 s to the frame (24 s untrimmed), with no silence
///   in it at all (not at the start, at the join, or at the end);
/// - the same with 14 s tones and a 4 s crossfade (both long enough to fade): 14 + 14 − 4 s
///   to the frame, with no silence in it: the fade overlaps tone with tone;
/// - 5 s of trailing silence and no crossfade: only the last 3 s of it are trimmed, within one
///   chunk. The player decodes 3 s ahead (`TRIM_AHEAD`), and trims what it holds once it reaches
///   the end: it tops that up by one 1,024-frame chunk per chunk played, so it holds between
///   3 s − 1,024 frames and 3 s − 1 frame then. So 2 s to 2 s + 1,024 frames of silence stay
///   at 8 s, and the output is that much longer than the two tones.
///
/// It fails if a seam keeps silence the rule trims (lengths 2 s too long, a silence found), if
/// trimming eats into the music (too short), or if the trailing trim is not limited (16 s).
#[test]
fn silence_at_a_mixed_join_is_trimmed() {
    let dir = common::tempdir();
    let d = dir.path();
    let r = RATE as u32;
    struct Case {
        name: &'static str,
        crossfade_s: u64,
        a: (u32, u32, u32),
        b: (u32, u32, u32),
        /// The frames the output may have.
        want: std::ops::RangeInclusive<u32>,
        /// Where silence is left, and how long it may be.
        left: Option<(f64, std::ops::RangeInclusive<f64>)>,
    }
    let cases = [
        Case {
            name: "no-crossfade",
            crossfade_s: 0,
            a: (2, 8, 2),
            b: (2, 8, 2),
            want: 16 * r..=16 * r,
            left: None,
        },
        Case {
            name: "crossfade",
            crossfade_s: 4,
            a: (2, 14, 2),
            b: (2, 14, 2),
            want: 24 * r..=24 * r,
            left: None,
        },
        Case {
            name: "long-tail",
            crossfade_s: 0,
            a: (0, 8, 5),
            b: (0, 8, 0),
            want: (16 + 2) * r..=(16 + 2) * r + 1024,
            left: Some((8.0, 2.0..=2.0 + 1024.0 / RATE)),
        },
    ];
    std::thread::scope(|scope| {
        for c in &cases {
            scope.spawn(move || {
                let (la, sa, ta) = c.a;
                let (lb, sb, tb) = c.b;
                let a = padded_tone(d, &format!("{}-a.wav", c.name), 440, la, sa, ta);
                let b = padded_tone(d, &format!("{}-b.wav", c.name), 660, lb, sb, tb);
                let (wav, underruns, _) = play_two(
                    d.join(format!("{}.wav", c.name)),
                    Duration::from_secs(c.crossfade_s),
                    item(1, &a, 0.0, Join::Mix),
                    item(2, &b, 0.0, Join::Mix),
                );
                let got = frames(&wav);
                assert!(
                    c.want.contains(&got),
                    "{}: {got} frames ({:.4} s), want {:?}",
                    c.name,
                    f64::from(got) / RATE,
                    c.want
                );
                // Down to 1 ms: a trim that left a few frames of silence is seen too.
                let quiet = silences(&wav, 0.001);
                match &c.left {
                    None => assert!(quiet.is_empty(), "{}: silence left {quiet:?}", c.name),
                    Some((at, long)) => {
                        assert!(
                            quiet.len() == 1
                                && (quiet[0].0 - at).abs() < 0.001
                                && long.contains(&quiet[0].1),
                            "{}: silence left {quiet:?}, want one at {at} s, {long:?} s long",
                            c.name
                        );
                        // What is left is what the length says is left (±1 ms: silencedetect
                        // prints six digits).
                        let extra = f64::from(got - 16 * r) / RATE;
                        assert!((quiet[0].1 - extra).abs() < 0.001, "{}: {quiet:?}", c.name);
                    }
                }
                assert_eq!(underruns, 0, "{}", c.name);
            });
        }
    });
}

/// At a `Gapless` seam (the next track of the same album) nothing is trimmed: a track ending
/// in 2 s of silence and the next one starting with 2 s of it play as the sum of the two, to
/// the frame (20 s), with the 4 s of silence between them where the album has it (8 s in). The
/// same two files joined `Mix` lose both silences (16 s, no silence left): so it is the join,
/// not the files, that keeps it. Fails if the gapless seam trims (16 s) or pads, or if the mixed
/// one does not trim.
#[test]
fn a_gapless_join_trims_nothing() {
    let dir = common::tempdir();
    let d = dir.path();
    let r = RATE as u32;
    let one = padded_tone(d, "one.wav", 440, 0, 8, 2);
    let two = padded_tone(d, "two.wav", 660, 2, 8, 0);
    std::thread::scope(|scope| {
        for (join, want, left) in [
            (Join::Gapless, 20 * r, vec![(8.0, 4.0)]),
            (Join::Mix, 16 * r, vec![]),
        ] {
            let (one, two) = (&one, &two);
            scope.spawn(move || {
                let (wav, underruns, _) = play_two(
                    d.join(format!("{join:?}.wav")),
                    Duration::ZERO,
                    item(1, one, 0.0, Join::Mix),
                    item(2, two, 0.0, join),
                );
                assert_eq!(frames(&wav), want, "{join:?}");
                let quiet = silences(&wav, 0.001);
                assert_eq!(quiet.len(), left.len(), "{join:?}: {quiet:?}");
                for ((at, long), (want_at, want_long)) in quiet.iter().zip(&left) {
                    assert!(
                        (at - want_at).abs() < 0.001 && (long - want_long).abs() < 0.001,
                        "{join:?}: silence {quiet:?}, want {left:?}"
                    );
                }
                assert_eq!(underruns, 0, "{join:?}");
            });
        }
    });
}

/// With a 4 s crossfade, a track shorter than 3 × 4 s is not faded, on either side of the
/// seam: 10 s then 13 s, and 13 s then 10 s, join end to end (23 s to the frame, and the play
/// changes when the first one ends), while 13 s then 13 s overlap by the 4 s (22 s to the
/// frame; the play changes 9 s in). Tones from edge to edge of their files, so nothing is
/// trimmed and every length is exact. Fails if the short tracks are faded (19 s) or the long
/// ones are not (26 s). A 12 s file that starts with 2 s of silence has 10 s of music: its
/// silence is trimmed and it is not faded either (23 s, not 19 s), first or second.
#[test]
fn tracks_shorter_than_three_crossfades_are_not_faded() {
    let dir = common::tempdir();
    let d = dir.path();
    let r = RATE as u32;
    let ten = padded_tone(d, "ten.wav", 440, 0, 10, 0);
    let thirteen = padded_tone(d, "thirteen.wav", 660, 0, 13, 0);
    let thirteen_too = padded_tone(d, "thirteen-too.wav", 550, 0, 13, 0);
    // 12 s files, but 10 s of music after 2 s of digital silence: the rule counts the music.
    let quiet_start = padded_tone(d, "quiet-start.wav", 330, 2, 10, 0);
    std::thread::scope(|scope| {
        for (name, a, b, want_s, change_s) in [
            ("short-first", &ten, &thirteen, 23, 10.0),
            ("short-second", &thirteen, &ten, 23, 13.0),
            ("both-long", &thirteen, &thirteen_too, 22, 9.0),
            (
                "silence-then-short-first",
                &quiet_start,
                &thirteen,
                23,
                10.0,
            ),
            (
                "silence-then-short-second",
                &thirteen,
                &quiet_start,
                23,
                13.0,
            ),
        ] {
            scope.spawn(move || {
                let (wav, underruns, changed) = play_two(
                    d.join(format!("{name}.wav")),
                    Duration::from_secs(4),
                    item(1, a, 0.0, Join::Mix),
                    item(2, b, 0.0, Join::Mix),
                );
                assert_eq!(frames(&wav), want_s * r, "{name}");
                // Event times are wall-clock: the output runs up to 200 ms ahead of real time,
                // and a busy machine delays the thread a little.
                assert!(
                    (change_s - 0.5..=change_s + 0.6).contains(&changed),
                    "{name}: the play changed {changed:.2} s in, want {change_s} s"
                );
                assert_eq!(underruns, 0, "{name}");
            });
        }
    });
}

/// The largest sample-to-sample step a fade may leave in a sine of peak `amplitude` at `freq`
/// Hz in the 16-bit output: the sine's own (2π·f·A / 44100 per sample at most), what a fade
/// of 150 ms (6,615 frames) adds (A / 6615 at most), 16-bit rounding (1/32768), and 5% for the
/// limiter's and the ramps' rounding. A cut at the sine's peak steps by A, 40 times this bound
/// for a 100 Hz tone.
fn fade_step_bound(amplitude: f64, freq: f64) -> f64 {
    let own = 2.0 * std::f64::consts::PI * freq / RATE * amplitude;
    (own + amplitude / 6615.0 + 1.0 / 32768.0) * 1.05
}

/// 10 ms windows: one period of a 100 Hz tone, so a window's RMS follows the tone's envelope
/// alone (not where in the period the window starts).
const WINDOW: usize = 441;

/// A fade in `levels` (RMS of [`WINDOW`]s), read from `from` towards `to` (from the tone to
/// the silence; backwards for a fade-in): asserts the level falls monotonically from 90% of
/// `reference` to below 5% of it, over 100 ms to 180 ms. A linear 150 ms ramp takes 127.5 ms
/// from 90% to 5%; reading it in 10 ms windows moves each end by up to a window. A cut takes
/// 0 or 10 ms. Monotonic: each window at most 2% above the one before it (rounding). A ramp
/// moves the level by 1/15 of the full level per window, at least 6.7% of where it is; a
/// levelling gain ramping at the same time (a new measurement: a few tenths of a dB over
/// 300 ms here) moves it by well under 1% per window. Returns the fall in ms.
fn assert_fade(what: &str, levels: &[f64], from: usize, to: usize, reference: f64) -> f64 {
    let order: Vec<usize> = if from <= to {
        (from..=to).collect()
    } else {
        (to..=from).rev().collect()
    };
    let at = |i: usize| levels[order[i]];
    let full = (0..order.len())
        .rev()
        .find(|&i| at(i) >= 0.9 * reference)
        .unwrap_or_else(|| panic!("{what}: never at 90% of {reference}: {levels:?}"));
    let gone = (full..order.len())
        .find(|&i| at(i) < 0.05 * reference)
        .unwrap_or_else(|| panic!("{what}: never below 5% of {reference}: {levels:?}"));
    let fall: Vec<f64> = (full..=gone).map(at).collect();
    assert!(
        fall.windows(2).all(|w| w[1] <= w[0] * 1.02),
        "{what}: not a monotonic fall (10 ms RMS, reference {reference:.4}): {fall:.4?}"
    );
    let ms = (gone - full) as f64 * 10.0;
    assert!(
        (100.0..=180.0).contains(&ms),
        "{what}: faded from 90% to 5% in {ms} ms, want about 130 ms (a 150 ms ramp): \
         {fall:.4?}"
    );
    ms
}

/// A host stop (`PlayerCommand::Stop`, what the hub sends when nothing is left to play) while a
/// loud 100 Hz tone plays fades out in about 150 ms: the output ends (a stopped output is given
/// nothing more) after a monotonic fall of the 10 ms RMS from the tone's level to silence over
/// 100–180 ms ([`assert_fade`]), and no sample step in the file exceeds [`fade_step_bound`].
/// Fails on a cut (the fall takes 0–10 ms and the last window is loud; a cut at the very end
/// of the file leaves no step in it, so the fall is what shows it), on a fade much shorter or
/// longer than 150 ms, and on a Stop that is not obeyed (the whole 6 s track in the file).
#[test]
fn a_stop_fades_out_in_about_150_ms() {
    let dir = common::tempdir();
    let tone = sine(dir.path(), "tone.wav", 100, 6.0, 0.8, &[]);
    let mut rig = Rig::new(dir.path().join("out.wav"));
    rig.send(PlayerCommand::Load(item(1, &tone, 0.0, Join::Mix)));
    rig.wait("started", Duration::from_secs(10), |e| {
        matches!(e, PlayerEvent::Started { .. })
    });
    std::thread::sleep(Duration::from_millis(1200));
    rig.send(PlayerCommand::Stop);
    // Stopped: the file stops growing (it is flushed at the stop). Bounded: 5 s.
    let len = || std::fs::metadata(&rig.wav).map_or(0, |m| m.len());
    let mut last = (len(), Instant::now());
    common::wait::wait_until_blocking(Duration::from_secs(5), "the output to stop", || {
        let now = len();
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(400)
    });
    let (wav, underruns) = rig.finish();

    let secs = f64::from(frames(&wav)) / RATE;
    assert!(
        (1.0..3.0).contains(&secs),
        "{secs:.3} s written of a 6 s track"
    );
    let amplitude = 10f64.powf(astats(&wav, None)["Peak level dB"] / 20.0);
    let step = astats(&wav, None)["Max difference"];
    let bound = fade_step_bound(amplitude, 100.0);
    assert!(step <= bound, "a click: step {step} > bound {bound}");
    let levels = rms_windows(&wav, WINDOW);
    let n = levels.len();
    // The tone's level: the windows between 0.2 s and 0.5 s before the end.
    let reference = levels[n - 50..n - 20].iter().cloned().fold(0.0, f64::max);
    assert!(reference > 0.3, "the tone at {reference}");
    assert_fade("the stop", &levels, n - 40, n - 1, reference);
    // The file ends in silence: the last window holds at most the fade's last 10 ms, the
    // zeros after it and the padding after the end.
    assert!(
        levels[n - 1] < 0.05 * reference,
        "the last 10 ms at {:.4}, the tone at {reference:.4}",
        levels[n - 1]
    );
    assert_eq!(underruns, 0);
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

/// Milliseconds since the epoch: the clock the jukebox stamps plays with.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Pause, resume and skip with a loud low tone playing: each fades (about 150 ms) instead of
/// cutting, so the largest sample-to-sample step anywhere in the output stays within the
/// tone's own ([`fade_step_bound`]: a hard cut of the same tone steps by up to its amplitude,
/// about 40 times the bound).
///
/// And they happened, as the file shows them (10 ms RMS windows by astats, silence by
/// silencedetect):
/// - the tone goes silent twice before the end (the pause, the skip), and at the end it fades
///   (the closing fade of a SIGTERM) rather than stopping at full level;
/// - at the pause, a fall of ~150 ms ([`assert_fade`]) to silence, then a rise of ~150 ms back
///   to the tone; at the skip a fall of ~150 ms, then the next track at once (from its first
///   sample, which is where a sine is 0);
/// - the silence between the pause's fall and rise is short (the rest of the chunk the fade
///   ended in: 1,024 frames, 23 ms, and the ramps' last frames below −60 dBFS): the `wav:`
///   output, like a device, is given nothing while paused, so a pause is not a stretch of
///   zeros in the file but time missing from it. That time is measured: the first play lasted
///   (the database's start times of the two plays, the jukebox's clock) longer than its audio
///   in the file (up to the skip's silence) by the time it was paused less 550 ms. The 550 ms:
///   the output writes 200 ms ahead of real time; at the pause it has 200 ms written ahead and
///   then writes the 150 ms fade, so the file holds 350 ms that were heard during the pause;
///   after the resume it again writes 200 ms ahead, so the skip's fade starts 200 ms further
///   into the file than the skip command was into the play. The paused time is bracketed by
///   the host's two HTTP calls; ±120 ms for the chunk steps (23 ms) at each end and the
///   events' way to the hub on a busy machine. A pause that wrote silence instead would miss
///   nothing (−0.55 s); one that did not pause would have no silence at all.
#[test]
fn pause_resume_and_skip_leave_no_click() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    // ReplayGain-tagged with their loudness (by ffmpeg's ebur128): the gain is the tags' from
    // the start, and the background pass's measurement moves it by a tenth of a dB or so, not
    // by the 8 dB from the fallback gain. A levelling ramp that large next to a fade would
    // hide the fade's shape (not make a click: that bound holds either way).
    let probe = sine(dir.path(), "probe.flac", 100, 30.0, 0.8, &[]);
    let rg = format!("{:.2} dB", -18.0 - lufs(&probe, None));
    sine(
        &music,
        "low.flac",
        100,
        30.0,
        0.8,
        &[
            ("title", "Low"),
            ("artist", "A"),
            ("album", "X"),
            ("REPLAYGAIN_TRACK_GAIN", &rg),
        ],
    );
    sine(
        &music,
        "low2.flac",
        100,
        30.0,
        0.8,
        &[
            ("title", "Low too"),
            ("artist", "B"),
            ("album", "Y"),
            ("REPLAYGAIN_TRACK_GAIN", &rg),
        ],
    );
    let wav = dir.path().join("out.wav");
    let s = start(dir.path(), &music, &wav, &[]);
    let host = s.host();
    s.playing();
    std::thread::sleep(Duration::from_millis(1500));
    let pause_sent = wall_ms();
    host_post(&s, &host, "pause", json!({}));
    let pause_done = wall_ms();
    std::thread::sleep(Duration::from_millis(1000));
    let play_sent = wall_ms();
    host_post(&s, &host, "play", json!({}));
    let play_done = wall_ms();
    std::thread::sleep(Duration::from_millis(1500));
    host_post(&s, &host, "skip", json!({}));
    let plays = wait_plays(&s.db, 2);
    std::thread::sleep(Duration::from_millis(1500));
    let log = s.log.clone();
    let health = s.get("/healthz").1;
    assert!(s.stop().success());

    let secs = f64::from(frames(&wav)) / RATE;
    assert!(secs > 3.5, "{secs} s written");
    let whole = astats(&wav, None);
    let amplitude = 10f64.powf(whole["Peak level dB"] / 20.0);
    let bound = fade_step_bound(amplitude, 100.0);
    assert!(
        whole["Max difference"] <= bound,
        "a click: step {} > bound {bound} (tone amplitude {amplitude})",
        whole["Max difference"]
    );

    // Where the tone is gone: runs of windows below 5% of the tone's level 200–300 ms before
    // them (the level moves when the levelling gain does), but for the end.
    let levels = rms_windows(&wav, WINDOW);
    let n = levels.len();
    let around = |i: usize, lo: isize, hi: isize| {
        let a = (i as isize + lo).max(0) as usize;
        let b = ((i as isize + hi).max(0) as usize).min(n);
        levels[a..b].iter().cloned().fold(0.0, f64::max)
    };
    let mut gone: Vec<(usize, usize)> = Vec::new();
    for (i, l) in levels.iter().enumerate() {
        if *l >= 0.05 * around(i.max(30), -30, -20) {
            continue;
        }
        match gone.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => gone.push((i, i)),
        }
    }
    let at_end = gone.last().filter(|g| g.1 == n - 1).copied();
    gone.retain(|g| g.1 != n - 1);
    assert_eq!(
        gone.len(),
        2,
        "silent at the pause and the skip only (10 ms windows, {n} of them): {gone:?}"
    );
    let (pause, skip) = (gone[0], gone[1]);
    assert!(pause.0 > 40 && skip.0 > pause.1 + 60, "{gone:?}");
    // The pause: down, a moment, up; the tone's level 200–300 ms either side.
    assert_fade(
        "the pause's fade-out",
        &levels,
        pause.0 - 40,
        pause.1,
        around(pause.0, -30, -20),
    );
    assert_fade(
        "the resume's fade-in",
        &levels,
        pause.1 + 40,
        pause.0,
        around(pause.1, 20, 30),
    );
    // The skip: down, then the next track at once, at the same level (the same tone): within
    // two windows after the silence (the first may still hold some of it), where a fade-in
    // would be at 13% at most.
    let before_skip = around(skip.0, -30, -20);
    assert_fade(
        "the skip's fade-out",
        &levels,
        skip.0 - 40,
        skip.1,
        before_skip,
    );
    assert!(
        levels[skip.1 + 1].max(levels[skip.1 + 2]) > 0.8 * before_skip,
        "the next track starts at once: {:.4?}",
        &levels[skip.0..skip.1 + 3]
    );
    // The end (SIGTERM): faded, not cut (the last window holds at most the fade's last 10 ms).
    let before_end = around(n - 1, -30, -20);
    assert!(
        at_end.is_some() || levels[n - 1] < 0.1 * before_end,
        "the end is cut: {:.4?}",
        &levels[n - 20..]
    );
    // The silences themselves, by silencedetect (down to 9 frames): the pause's and the
    // skip's are each under 30 ms (the rest of one chunk, and the ramps' last millisecond or
    // so below −60 dBFS).
    let quiet = silences(&wav, 0.0002);
    let near = |window: usize| {
        let t = window as f64 * WINDOW as f64 / RATE;
        quiet
            .iter()
            .filter(|(at, _)| (at - t).abs() < 0.05)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .copied()
            .unwrap_or_else(|| panic!("no silence near {t:.3} s: {quiet:?}"))
    };
    let (pause_quiet, skip_quiet) = (near(pause.0), near(skip.0));
    assert!(pause_quiet.1 < 0.03, "the pause {pause_quiet:?}: {quiet:?}");
    assert!(skip_quiet.1 < 0.03, "the skip {skip_quiet:?}: {quiet:?}");

    // The time the pause took out of the file.
    let skip_in_file_ms = (skip_quiet.0 + skip_quiet.1) * 1000.0;
    let first_play_ms = (plays[1].started_ms - plays[0].started_ms) as f64;
    let missing = first_play_ms - skip_in_file_ms;
    let paused = (
        (play_sent - pause_done) as f64,
        (play_done - pause_sent) as f64,
    );
    assert!(
        (paused.0 - 550.0 - 120.0..=paused.1 - 550.0 + 120.0).contains(&missing),
        "the first play lasted {first_play_ms} ms, {skip_in_file_ms:.0} ms of it in the file: \
         {missing:.0} ms missing, for a pause of {paused:?} ms"
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
    // The loudness pass measuring the paused track then hands its gain to the player, which
    // wakes it for that command: on a busy machine that can fall in the window watched below.
    let db = dir.path().join("j.db");
    common::wait::wait_until_blocking(Duration::from_secs(120), "the track measured", || {
        jukebox::store::Db::open_readonly(&db)
            .ok()
            .and_then(|d| d.loudness_counts().ok())
            .is_some_and(|c| c.measured + c.failed == c.total && c.total == 1)
    });
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

/// The `sound` of the admin topic (snapshot or update), when a message carries one.
fn sound_in(m: &serde_json::Value) -> Option<&serde_json::Value> {
    (m["topic"] == "admin").then(|| m.get("sound")).flatten()
}

/// Hub settings: `auto` with two tracks of one album (track 1 and 2), mastered 12 dB apart: both
/// get the album's gain, so the quiet one stays 12 dB below the loud one (± 0.5 dB, where
/// `track` mode would level them to 0.7 dB apart), and the join is sample-exact.
///
/// The gain is the album's, not the fallback (which, being one gain for every unmeasured
/// track, would keep the 12 dB too): the test measures a Quiet → Loud pair of plays (the
/// auto-DJ alternates the two tracks) only once the host's sound view (the `admin` topic) has
/// shown, for every update of either play, a gain measured, from the album, and equal to
/// −14 LUFS less the album loudness the store holds (to the view's tenth of a dB). Fails if the
/// album's loudness is never known (bounded: 150 s), if either play of the pair plays at
/// another gain, or if the output does not keep the levels.
#[tokio::test]
async fn hub_settings_auto_keeps_an_albums_relative_levels() {
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
    let host = s.host();
    let mut phone = common::live::Phone::connect(&s.addr, &host, &["admin"]).await;
    // Every sound view shown per play, in order.
    let mut shown: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(150);
    let (k, plays, album_gain) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no Quiet → Loud pair played at the album's gain in 150 s: {shown:?}"
        );
        let m = phone.recv_within(left).await;
        let Some(v) = sound_in(&m) else {
            continue;
        };
        let Some(id) = v["playing"]["play_id"].as_str() else {
            continue;
        };
        shown
            .entry(id.to_string())
            .or_default()
            .push(v["playing"].clone());
        // What the store knows: the album's loudness once both are measured.
        let db = jukebox::store::Db::open_readonly(&s.db).unwrap();
        let tracks = db.all_tracks().unwrap();
        let Some(album_lufs) = tracks
            .iter()
            .map(|t| t.levels.album_lufs)
            .collect::<Option<Vec<f32>>>()
            .filter(|a| a.len() == 2)
            .map(|a| f64::from(a[0]))
        else {
            continue;
        };
        let gain = (-14.0 - album_lufs).clamp(-20.0, 12.0);
        let at_album_gain = |p: &jukebox::store::PlayReport| {
            shown.get(&p.play_id.to_string()).is_some_and(|views| {
                views.iter().all(|v| {
                    v["source"] == "measured"
                        && v["album"] == true
                        && (v["gain_db"].as_f64().unwrap() - gain).abs() <= 0.051
                })
            })
        };
        let plays = db.plays_since(0).unwrap();
        // A pair that has been played through: the play after it has been shown (so every
        // view of the pair has been read: a play's views come before the next one's).
        let pair = (0..plays.len().saturating_sub(2)).find(|&k| {
            shown.contains_key(&plays[k + 2].play_id.to_string())
                && plays[k].track.title == "Quiet"
                && plays[k + 1].track.title == "Loud"
                && at_album_gain(&plays[k])
                && at_album_gain(&plays[k + 1])
        });
        if let Some(k) = pair {
            break (k, plays, gain);
        }
    };
    drop(phone);
    assert!(s.stop().success());
    // Every play is 8 s of the output (a seam that is not gapless is a mix with nothing
    // trimmed: both tones fill their files to the edges; and not faded: 8 s is less than
    // 3 × the crossfade), so play k is [8k, 8k + 8) s of it.
    assert!(
        frames(&wav) >= 352_800 * (k as u32 + 2),
        "plays {k} and {} played whole: {plays:?}",
        k + 1
    );
    // Sample-exact: the second track is a sine that starts at exactly 0, so the first frame of
    // play k + 1 is 0 between two that are not. A gap would put zeros after it; an overlap or
    // a lost frame, a sample of the first track on it. Read with astats, one frame at a time.
    let peak_at = |frame: u32| {
        let trim = format!("atrim=start_sample={frame}:end_sample={},", frame + 1);
        astats_after(&wav, &trim)["Peak level dB"]
    };
    let join = 352_800 * (k as u32 + 1);
    let seam = [peak_at(join - 1), peak_at(join), peak_at(join + 1)];
    assert!(
        seam[0] > -80.0 && seam[1] == f64::NEG_INFINITY && seam[2] > -80.0,
        "not sample-exact at the join: peaks {seam:?} dB at frames {}..={}",
        join - 1,
        join + 1
    );
    let level = |i: usize| {
        let at = 8.0 * i as f64;
        astats(&wav, Some((at + 1.0, at + 7.0)))["RMS level dB"]
    };
    let (q, l) = (level(k), level(k + 1));
    assert!(
        (l - q - 12.04).abs() <= 0.5,
        "quiet {q:.2} dB, loud {l:.2} dB at the album's gain {album_gain:.1} dB: the album's \
         levels were not kept"
    );
}
