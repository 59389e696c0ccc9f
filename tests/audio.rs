//! The real binary plays three real files of different formats through the `wav:` output.
//! The WAV must hold them in the order they were played (as the database recorded it), each
//! segment at its own frequency, with the right total length and no silent gaps.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use jukebox::store::{Db, PlayEnd};

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Energy of `freq` in `x` (Goertzel), normalised by the window length.
fn power(x: &[f32], rate: f32, freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s0 = v + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f32 * x.len() as f32)
}

fn dominant(x: &[f32], rate: f32, candidates: &[f32]) -> f32 {
    let mut best = (0.0, 0.0);
    for &f in candidates {
        let p = power(x, rate, f);
        if p > best.1 {
            best = (f, p);
        }
    }
    best.0
}

#[test]
fn three_formats_play_in_order_through_the_wav_output() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let freqs = [("a.mp3", 440u32), ("b.flac", 660), ("c.ogg", 880)];
    for (i, (name, f)) in freqs.iter().enumerate() {
        common::tone(
            &music,
            name,
            *f,
            3.0,
            &[("title", &format!("T{i}")), ("artist", &format!("A{i}"))],
        );
    }
    let db = dir.path().join("j.db");
    let wav = dir.path().join("out.wav");
    let child = std::process::Command::new(common::bin())
        .arg("--music")
        .arg(&music)
        .arg("--db")
        .arg(&db)
        .arg(format!("--output=wav:{}", wav.display()))
        .args(["--no-mdns", "--no-mpd", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killer(child);

    // Wait (bounded) until three plays have ended.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let done = Db::open_readonly(&db)
            .ok()
            .and_then(|d| d.plays_since(0).ok())
            .map_or(0, |p| p.iter().filter(|p| p.ended_ms.is_some()).count());
        if done >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "three plays did not finish in time"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "jukebox exited early"
        );
    }
    let pid = child.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "clean exit on SIGINT: {status:?}");

    let plays = Db::open_readonly(&db).unwrap().plays_since(0).unwrap();
    assert!(plays.len() >= 3);
    let order: Vec<u32> = plays
        .iter()
        .map(|p| {
            let name = p
                .track
                .path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            freqs.iter().find(|(n, _)| *n == name).unwrap().1
        })
        .collect();
    // The first three are three different tracks (no repeats while others are unplayed).
    let mut first3 = order[..3].to_vec();
    first3.sort();
    assert_eq!(first3, vec![440, 660, 880], "{order:?}");

    let mut reader = hound::WavReader::open(&wav).expect("the WAV was finalised");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 44_100, 16)
    );
    let samples: Vec<f32> = reader
        .samples::<i16>()
        .step_by(2) // left channel
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    let rate = 44_100.0;
    let secs = samples.len() as f32 / rate;

    // Total length: every finished play in full, plus where the last one was stopped.
    let expected: f32 = plays
        .iter()
        .map(|p| match p.end_reason {
            Some(PlayEnd::Finished) => p.track.duration_ms as f32 / 1000.0,
            _ => 0.0,
        })
        .sum::<f32>();
    let last_position = Db::open_readonly(&db)
        .unwrap()
        .open_play()
        .unwrap()
        .map_or(0.0, |p| p.position_ms as f32 / 1000.0);
    let expected = expected + last_position;
    assert!(
        (secs - expected).abs() / expected < 0.02,
        "wav {secs:.3} s, plays {expected:.3} s"
    );

    // Each 3 s segment carries its own track's frequency, in the recorded order.
    let cands = [440.0, 660.0, 880.0];
    for (i, f) in order.iter().take(3).enumerate() {
        for part in [0.2f32, 0.5, 0.8] {
            let at = ((i as f32 * 3.0 + part * 3.0) * rate) as usize;
            let win = &samples[at..at + 4410];
            assert_eq!(
                dominant(win, rate, &cands),
                *f as f32,
                "segment {i} at {part}"
            );
        }
    }

    // No silent gap: across the first three tracks, no 10 ms window is silent for more
    // than 30 ms in a row (encoder padding that gapless decoding could not remove).
    let win = 441;
    let mut silent_run = 0;
    let mut worst = 0;
    for w in samples[..(9.0 * rate) as usize - win].chunks(win) {
        let rms = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        if rms < 0.005 {
            silent_run += 1;
            worst = worst.max(silent_run);
        } else {
            silent_run = 0;
        }
    }
    eprintln!(
        "wav {secs:.3} s, expected {expected:.3} s, worst silent run {} ms, order {order:?}",
        worst * 10
    );
    assert!(worst <= 3, "a silent gap of {} ms", worst * 10);

    // The log said which output it chose.
    let err = stderr_of(&mut child);
    assert!(err.contains("audio output: wav file"), "{err}");
}

#[test]
fn sigterm_stops_cleanly_and_leaves_a_valid_wav() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    common::tone(&music, "long.flac", 500, 20.0, &[("title", "Long")]);
    let db = dir.path().join("j.db");
    let wav = dir.path().join("out.wav");
    let child = std::process::Command::new(common::bin())
        .arg("--music")
        .arg(&music)
        .arg("--db")
        .arg(&db)
        .arg(format!("--output=wav:{}", wav.display()))
        .args(["--no-mdns", "--no-mpd", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killer(child);
    // Wait (bounded) until the play is recorded, then let it run a little.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Db::open_readonly(&db)
        .ok()
        .and_then(|d| d.open_play().ok().flatten())
        .is_none()
    {
        assert!(Instant::now() < deadline, "nothing played");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let reader = hound::WavReader::open(&wav).expect("a finalised WAV");
    let secs = reader.duration() as f32 / 44_100.0;
    assert!(secs > 1.0 && secs < 10.0, "{secs}");
    // The position was saved at shutdown, close to what was written.
    let pos = Db::open_readonly(&db)
        .unwrap()
        .open_play()
        .unwrap()
        .unwrap()
        .position_ms as f32
        / 1000.0;
    assert!((pos - secs).abs() < 0.5, "position {pos} vs wav {secs}");
    // Stopping the service fades the music out (about 150 ms) instead of cutting it: the
    // tone plays 0.4 s before the end, is at least 12 dB down over the last 30 ms (a linear
    // or equal-power ramp over 150 ms is 20 dB down or more there), and the last 2 ms peak
    // 20 dB below the tone's level (a ramp's last 2 ms are about 34 dB down; a cut would end
    // on the tone's own peak, 3 dB above its RMS).
    let secs = f64::from(secs);
    let before = common::media::astats(&wav, Some((secs - 0.5, secs - 0.3)));
    let last = common::media::astats(&wav, Some((secs - 0.03, secs)));
    let (full, tail) = (before["RMS level dB"], last["RMS level dB"]);
    assert!(full > -40.0, "the tone before the stop: {full} dB");
    assert!(
        tail < full - 12.0,
        "the last 30 ms: {tail} dB against {full} dB"
    );
    let end = common::media::astats(&wav, Some((secs - 0.002, secs)));
    assert!(
        end["Peak level dB"] < full - 20.0,
        "the last 2 ms: {end:?}, the tone {full} dB"
    );
}

/// The real ALSA path: ALSA's own `file` plugin stands in for a sound card (this machine has
/// none), so the PCM that rodio hands to ALSA lands in a WAV file, resampled to 48 kHz.
#[test]
fn the_alsa_device_output_gets_the_music() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    common::tone(&music, "a.flac", 440, 2.0, &[("title", "A")]);
    let captured = dir.path().join("alsa.wav");
    let conf = dir.path().join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            "pcm.nullsink {{ type null }}\n\
             pcm.filesink {{ type file slave.pcm \"nullsink\" file \"{}\" format \"wav\" }}\n\
             pcm.!default {{ type plug slave {{ pcm \"filesink\" format S16_LE rate 48000 channels 2 }} \
             hint {{ show on description \"Test sink\" }} }}\n",
            captured.display()
        ),
    )
    .unwrap();
    let mut child = Killer(
        std::process::Command::new(common::bin())
            .arg("--music")
            .arg(&music)
            .arg("--db")
            .arg(dir.path().join("j.db"))
            .args([
                "--no-mdns",
                "--no-mpd",
                "--listen",
                "127.0.0.1:0",
                "--output",
                "default",
            ])
            .env("ALSA_CONFIG_PATH", &conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The file plugin is not paced: a few hundred ms are plenty.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&captured).map_or(0, |m| m.len()) < 48_000 * 4 * 3 {
        assert!(Instant::now() < deadline, "nothing reached ALSA");
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = stop_cleanly(&mut child);
    assert!(
        err.contains("audio output: ALSA device default (48000 Hz, 2 channels)"),
        "{err}"
    );

    // ALSA's file plugin leaves the header sizes unset; read the raw PCM after the header.
    let bytes = std::fs::read(&captured).unwrap();
    let data_at = bytes.windows(4).position(|w| w == b"data").unwrap() + 8;
    let left: Vec<f32> = bytes[data_at..]
        .chunks_exact(4)
        .map(|f| f32::from(i16::from_le_bytes([f[0], f[1]])) / 32768.0)
        .collect();
    // The file plugin takes samples faster than real time, so the mixer fills the gaps with
    // silence: look at stretches of continuous sound only. Each must be our 440 Hz tone,
    // resampled to 48 kHz.
    let block = 64;
    let loud = |b: &[f32]| b.iter().map(|v| v * v).sum::<f32>() / b.len() as f32 > 1e-4;
    let mut verdicts = Vec::new();
    let mut i = 0;
    while i + 1024 <= left.len() && verdicts.len() < 20 {
        let win = &left[i..i + 1024];
        if win.chunks(block).all(loud) {
            verdicts.push(dominant(win, 48_000.0, &[220.0, 440.0, 660.0, 880.0]));
            i += 1024;
        } else {
            i += block;
        }
    }
    assert!(
        verdicts.len() >= 5,
        "too little continuous sound: {verdicts:?}"
    );
    // The very first window straddles the start of the sound; the rest is the tone.
    assert!(verdicts[1..].iter().all(|f| *f == 440.0), "{verdicts:?}");
}

/// Plays `ogg` once through the `wav:` output with `extra` flags; returns the log (stderr).
fn log_of_one_play(dir: &std::path::Path, music: &std::path::Path, extra: &[&str]) -> String {
    let db = dir.join(format!("log-{}.db", extra.len()));
    let wav = dir.join(format!("log-{}.wav", extra.len()));
    let mut child = Killer(
        std::process::Command::new(common::bin())
            .arg("--music")
            .arg(music)
            .arg("--db")
            .arg(&db)
            .arg(format!("--output=wav:{}", wav.display()))
            .args(["--no-mdns", "--no-mpd", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("JUKEBOX_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait (bounded) until the play has ended: the Ogg stream was opened and read to its end.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Db::open_readonly(&db)
        .ok()
        .and_then(|d| d.plays_since(0).ok())
        .is_none_or(|p| p.iter().all(|p| p.ended_ms.is_none()))
    {
        assert!(Instant::now() < deadline, "the Ogg track did not finish");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "jukebox exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_cleanly(&mut child)
}

/// The default log has our INFO lines and none of the libraries' (symphonia announces every Ogg
/// stream at INFO); naming a library in `--log` brings its lines back.
#[test]
fn the_default_log_has_our_info_lines_and_not_the_decoders() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    common::tone(&music, "short.ogg", 440, 1.0, &[("title", "Short")]);

    let quiet = log_of_one_play(dir.path(), &music, &[]);
    assert!(quiet.contains("audio output: wav file"), "{quiet}");
    assert!(quiet.contains("host PIN: "), "{quiet}");
    for chatter in ["starting new physical stream", "selected vorbis mapper"] {
        assert!(!quiet.contains(chatter), "{chatter:?} in the log:\n{quiet}");
    }

    // Asked for by name, symphonia's lines are there: the run above did open an Ogg stream,
    // and the filter is what kept them out.
    let asked = log_of_one_play(dir.path(), &music, &["--log", "info,symphonia=info"]);
    assert!(asked.contains("audio output: wav file"), "{asked}");
    assert!(asked.contains("starting new physical stream"), "{asked}");
}

/// Stops the jukebox as systemd would (SIGINT), checks it exited cleanly, and returns what it
/// logged.
fn stop_cleanly(child: &mut Killer) -> String {
    let pid = child.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(child.0.wait().unwrap().success());
    stderr_of(child)
}

/// Everything the exited jukebox logged.
fn stderr_of(child: &mut Killer) -> String {
    let mut err = String::new();
    use std::io::Read;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}
