//! Loudness levelling against real files made with ffmpeg: the measurement agrees with
//! ffmpeg's own EBU R128 meter (`ebur128` filter), tags reach the tracks through the real
//! scan, and the background pass measures a library in a real SQLite file, survives a stop and
//! a restart without measuring anything twice, measures a changed file again, and goes past
//! silent and corrupt files.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::live::Server;
use common::media;
use jukebox::library::{scan, ScanProgress};
use jukebox::loudness::{measure, Levels, MeasureError, Pass};
use jukebox::party::TrackId;
use jukebox::store::{Store, Track};

static GO: AtomicBool = AtomicBool::new(false);

fn no_progress(_: ScanProgress) {}

/// Stereo pink noise (two independent channels) at about `lufs`, as a file of the kind its
/// extension names. Loud ones go through a limiter, as loud masters do.
fn pink(dir: &Path, name: &str, lufs: f32, secs: f32, seed: u32, tags: &[(&str, &str)]) -> PathBuf {
    // Unit-amplitude pink noise from two sources measures about -11.7 LUFS.
    let gain = lufs + 11.7 + if lufs > -10.0 { 0.8 } else { 0.0 };
    let graph = format!(
        "anoisesrc=color=pink:amplitude=1:sample_rate=44100:duration={secs}:seed={seed}[a];\
         anoisesrc=color=pink:amplitude=1:sample_rate=44100:duration={secs}:seed={s2}[b];\
         [a][b]amerge=inputs=2,volume={gain}dB,alimiter=limit=0.9:attack=2:release=30:level=0",
        s2 = seed + 1000
    );
    let path = dir.join(name);
    let mut cmd = media::ffmpeg();
    cmd.arg("-filter_complex").arg(graph);
    media::tags(&mut cmd, tags).args(media::lossy_codec(&path));
    media::write(&mut cmd, &path)
}

/// Integrated loudness of a file by ffmpeg's `ebur128` filter (its summary, 0.1 LU steps).
fn ffmpeg_lufs(path: &Path) -> f32 {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args(["-af", "ebur128", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("I:"))
        .filter_map(|v| v.trim().trim_end_matches("LUFS").trim().parse::<f32>().ok())
        .next()
        .unwrap_or_else(|| panic!("no loudness from ffmpeg for {}: {text}", path.display()))
}

/// A FLAC that the scan accepts (its header is whole) but whose audio is garbage.
fn corrupt_flac(dir: &Path, name: &str) -> PathBuf {
    let path = pink(dir, name, -18.0, 3.0, 99, &[("title", "Broken")]);
    let mut data = std::fs::read(&path).unwrap();
    let first_frame = data
        .windows(2)
        .skip(42)
        .position(|w| w == [0xff, 0xf8])
        .expect("a FLAC frame")
        + 42;
    for (k, b) in data.iter_mut().enumerate().skip(first_frame) {
        *b = (k.wrapping_mul(73) & 0xff) as u8;
    }
    std::fs::write(&path, data).unwrap();
    path
}

fn silent_flac(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("anullsrc=r=44100:cl=stereo")
        .args(["-t", "3", "-metadata", "title=Silence"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    path
}

fn all_tracks(store: &Store) -> Vec<Track> {
    store.read_blocking(|db| db.search("", 100, 0)).unwrap()
}

fn by_title(tracks: &[Track], title: &str) -> Track {
    tracks
        .iter()
        .find(|t| t.title == title)
        .unwrap_or_else(|| panic!("no track {title:?}"))
        .clone()
}

#[test]
fn measurement_agrees_with_ffmpeg_for_mp3_flac_and_ogg() {
    let dir = common::tempdir();
    for (i, ext) in ["mp3", "flac", "ogg"].iter().enumerate() {
        for (j, target) in [-7.0f32, -18.0, -26.0].iter().enumerate() {
            let seed = (i * 3 + j) as u32;
            let path = pink(
                dir.path(),
                &format!("{ext}{j}.{ext}"),
                *target,
                12.0,
                seed,
                &[],
            );
            let theirs = ffmpeg_lufs(&path);
            assert!(
                (theirs - target).abs() < 1.0,
                "{ext} at {target}: the fixture measures {theirs} by ffmpeg"
            );
            let ours = measure(&path).unwrap_or_else(|e| panic!("{ext} {target}: {e}"));
            assert!(
                (ours.lufs - theirs).abs() <= 0.2,
                "{ext} at {target}: ours {} vs ffmpeg {theirs}",
                ours.lufs
            );
            assert!(
                ours.peak > 0.05 && ours.peak < 1.5,
                "{ext}: peak {}",
                ours.peak
            );
            let secs = ours.frames as f32 / ours.rate as f32;
            assert!((secs - 12.0).abs() < 0.1, "{ext}: {secs} s measured");
        }
    }
}

#[test]
fn silent_and_corrupt_files_are_clear_errors() {
    let dir = common::tempdir();
    let silent = silent_flac(dir.path(), "silent.flac");
    assert_eq!(measure(&silent), Err(MeasureError::Silent));
    let corrupt = corrupt_flac(dir.path(), "corrupt.flac");
    match measure(&corrupt) {
        Err(MeasureError::Empty) | Err(MeasureError::Decode(_)) => {}
        other => panic!("corrupt file: {other:?}"),
    }
}

#[test]
fn replaygain_and_r128_tags_reach_the_tracks_through_the_scan() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    // ReplayGain 2 in ID3v2 TXXX (mp3), Vorbis comments (flac) and an MP4 freeform atom;
    // R128 (Q7.8, -23 LUFS reference) in Vorbis comments (ogg).
    pink(
        &music,
        "rg.mp3",
        -18.0,
        2.0,
        1,
        &[
            ("title", "RG mp3"),
            ("REPLAYGAIN_TRACK_GAIN", "-7.03 dB"),
            ("REPLAYGAIN_ALBUM_GAIN", "-6.50 dB"),
        ],
    );
    pink(
        &music,
        "rg.flac",
        -18.0,
        2.0,
        2,
        &[("title", "RG flac"), ("REPLAYGAIN_TRACK_GAIN", "+2.00 dB")],
    );
    let m4a = pink(&music, "rg.m4a", -18.0, 2.0, 3, &[("title", "RG m4a")]);
    // ffmpeg writes no iTunes freeform atoms; lofty does (as foobar2000 and iTunes do).
    {
        use lofty::config::WriteOptions;
        use lofty::prelude::*;
        let mut tagged = lofty::read_from_path(&m4a).unwrap();
        let tag = tagged.primary_tag_mut().expect("an ilst tag");
        tag.insert_text(ItemKey::ReplayGainTrackGain, "-3.00 dB".into());
        tag.save_to_path(&m4a, WriteOptions::default()).unwrap();
        let back = lofty::read_from_path(&m4a).unwrap();
        let raw = std::fs::read(&m4a).unwrap();
        assert!(
            raw.windows(21)
                .any(|w| w.eq_ignore_ascii_case(b"replaygain_track_gain")),
            "the fixture holds a freeform atom"
        );
        drop(back);
    }
    pink(
        &music,
        "r128.ogg",
        -18.0,
        2.0,
        4,
        &[
            ("title", "R128 ogg"),
            ("R128_TRACK_GAIN", "-1792"),
            ("R128_ALBUM_GAIN", "256"),
        ],
    );
    pink(&music, "plain.flac", -18.0, 2.0, 5, &[("title", "Plain")]);
    let (store, thread) = Store::open(&dir.path().join("j.db")).unwrap();
    scan(&music, &store, &no_progress, &GO).unwrap();
    let tracks = all_tracks(&store);
    let table: &[(&str, Option<f32>, Option<f32>)] = &[
        ("RG mp3", Some(-10.97), Some(-11.5)),
        ("RG flac", Some(-20.0), None),
        ("RG m4a", Some(-15.0), None),
        ("R128 ogg", Some(-16.0), Some(-24.0)),
        ("Plain", None, None),
    ];
    for &(title, track, album) in table {
        let l = by_title(&tracks, title).levels;
        let close = |a: Option<f32>, b: Option<f32>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 0.01,
            (None, None) => true,
            _ => false,
        };
        assert!(close(l.tag_track_lufs, track), "{title}: {l:?}");
        assert!(close(l.tag_album_lufs, album), "{title}: {l:?}");
        assert_eq!(l.track_lufs, None, "{title}: not measured yet");
    }
    drop(store);
    thread.join().unwrap();
}

/// What a pass reported, in order.
type Reports = mpsc::Receiver<(TrackId, Levels)>;

fn start_pass(store: &Store) -> (Pass, Reports) {
    let (tx, rx) = mpsc::channel();
    let pass = Pass::spawn(store.clone(), move |id, levels| {
        let _ = tx.send((id, levels));
    })
    .unwrap();
    (pass, rx)
}

/// Waits until the pass has dealt with every present track; returns what it reported.
fn until_done(pass: &Pass, rx: &Reports, what: &str) -> Vec<(TrackId, Levels)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = Vec::new();
    loop {
        while let Ok(r) = rx.try_recv() {
            got.push(r);
        }
        let p = pass.progress();
        if p.total > 0 && p.measured + p.failed == p.total {
            // The counts move after the callbacks of the same track: collect the last ones.
            std::thread::sleep(Duration::from_millis(50));
            got.extend(rx.try_iter());
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the pass never finished: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn open(db: &Path) -> (Store, std::thread::JoinHandle<()>) {
    Store::open(db).unwrap()
}

fn close(store: Store, thread: std::thread::JoinHandle<()>) {
    drop(store);
    thread.join().unwrap();
}

#[test]
fn the_pass_measures_the_library_resumes_after_a_restart_and_measures_changes() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    let album = music.join("Band/Record");
    std::fs::create_dir_all(&album).unwrap();
    let loose = music.join("singles");
    std::fs::create_dir_all(&loose).unwrap();
    // An album of three tracks at different levels, four singles (WAV: the same length gives
    // the same size, used below), a silent file and a corrupt one.
    let album_levels = [-12.0f32, -20.0, -16.0];
    for (i, l) in album_levels.iter().enumerate() {
        pink(
            &album,
            &format!("{}.flac", i + 1),
            *l,
            6.0,
            10 + i as u32,
            &[
                ("title", &format!("Album {}", i + 1)),
                ("album", "Record"),
                ("track", &format!("{}", i + 1)),
            ],
        );
    }
    let single_levels = [-9.0f32, -14.0, -22.0, -25.0];
    for (i, l) in single_levels.iter().enumerate() {
        pink(&loose, &format!("s{i}.wav"), *l, 6.0, 20 + i as u32, &[]);
    }
    silent_flac(&loose, "silence.flac");
    corrupt_flac(&loose, "zz-corrupt.flac");
    let db = dir.path().join("j.db");
    let (store, thread) = open(&db);
    scan(&music, &store, &no_progress, &GO).unwrap();
    let total = all_tracks(&store).len() as u64;
    assert_eq!(total, 9, "the scan takes every file, the broken ones too");

    // First run: a single asked for first (as the hub does for the next track), then stopped
    // as soon as it is measured.
    let single = by_title(&all_tracks(&store), "s3");
    let (pass, rx) = start_pass(&store);
    pass.prioritize(single.id);
    let mut first_run: Vec<(TrackId, Levels)> = Vec::new();
    while !first_run.iter().any(|(id, _)| *id == single.id) {
        first_run.push(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("a first measurement"),
        );
    }
    pass.stop();
    first_run.extend(rx.try_iter());
    let counts = store.read_blocking(|db| db.loudness_counts()).unwrap();
    assert!(
        counts.measured + counts.failed < total,
        "stopped midway: {counts:?}"
    );
    let measured_before: HashMap<TrackId, f32> = all_tracks(&store)
        .into_iter()
        .filter_map(|t| Some((t.id, t.levels.track_lufs?)))
        .collect();
    assert!(measured_before.contains_key(&single.id));
    close(store, thread);

    // Prove that nothing measured is measured again: quietly swap the content of the measured
    // WAV for a much louder one of the same size, and keep its modification time. A pass
    // that measured it again would store the new loudness.
    let swapped = Some(single.id);
    {
        let p = &single.path;
        let meta = std::fs::metadata(p).unwrap();
        let louder = pink(dir.path(), "louder.wav", -6.0, 6.0, 77, &[]);
        assert_eq!(std::fs::metadata(&louder).unwrap().len(), meta.len());
        std::fs::copy(&louder, p).unwrap();
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(meta.modified().unwrap())
            .unwrap();
        assert!((measure(p).unwrap().lufs - measured_before[&single.id]).abs() > 10.0);
    }

    // Second run, after a restart of the store: the rest, and only the rest.
    let (store, thread) = open(&db);
    let (pass, rx) = start_pass(&store);
    let second = until_done(&pass, &rx, "second run");
    let tracks = all_tracks(&store);
    for (id, lufs) in &measured_before {
        let now = tracks.iter().find(|t| t.id == *id).unwrap();
        assert_eq!(
            now.levels.track_lufs,
            Some(*lufs),
            "{:?} was measured again",
            now.path
        );
    }
    let progress = pass.progress();
    assert_eq!(progress.total, total);
    assert_eq!(
        progress.failed, 2,
        "the silent and the corrupt file: {progress:?}"
    );
    assert_eq!(progress.measured, total - 2);
    // Everything the second run reported as newly measured was not measured before.
    let reported: HashSet<TrackId> = second.iter().map(|(id, _)| *id).collect();
    for t in &tracks {
        if t.levels.track_lufs.is_some() && !measured_before.contains_key(&t.id) {
            assert!(
                reported.contains(&t.id),
                "{:?} measured but not reported",
                t.path
            );
        }
    }
    // Each measurement is close to ffmpeg's view of the file.
    for t in &tracks {
        let Some(l) = t.levels.track_lufs else {
            continue;
        };
        if Some(t.id) == swapped {
            continue;
        }
        let theirs = ffmpeg_lufs(&t.path);
        assert!(
            (l - theirs).abs() <= 0.2,
            "{:?}: {l} vs ffmpeg {theirs}",
            t.path
        );
        assert!(t.levels.track_peak.is_some_and(|p| p > 0.0));
    }
    // The failures are recorded with their reason, and not tried again.
    let silent = by_title(&tracks, "Silence");
    assert_eq!(silent.levels.track_lufs, None);
    let why = store
        .read_blocking(move |db| db.loudness_error(silent.id))
        .unwrap()
        .expect("a reason");
    assert!(why.contains("silent"), "{why}");
    let broken = by_title(&tracks, "Broken");
    assert!(store
        .read_blocking(move |db| db.loudness_error(broken.id))
        .unwrap()
        .is_some());

    // The album's loudness: on each of its tracks, the length-weighted energy mean of theirs
    // (equal lengths here), and reported for each of them.
    let album_tracks: Vec<Track> = (1..=3)
        .map(|i| by_title(&tracks, &format!("Album {i}")))
        .collect();
    let energies: f32 = album_tracks
        .iter()
        .map(|t| 10f32.powf(t.levels.track_lufs.unwrap() / 10.0))
        .sum::<f32>()
        / 3.0;
    let want = 10.0 * energies.log10();
    for t in &album_tracks {
        let a = t.levels.album_lufs.expect("album loudness");
        assert!((a - want).abs() < 0.05, "{a} vs {want}");
        let last = second
            .iter()
            .rev()
            .chain(first_run.iter().rev())
            .find(|(id, _)| *id == t.id);
        assert_eq!(
            last.map(|(_, l)| l.album_lufs),
            Some(Some(a)),
            "album value reported"
        );
    }
    for t in tracks.iter().filter(|t| t.album.is_empty()) {
        assert_eq!(t.levels.album_lufs, None, "a single is no album");
    }
    let loud = album_levels[0];
    let a = album_tracks[0].levels.album_lufs.unwrap();
    assert!(a < loud && a > album_levels[1], "{a}");

    // A changed file loses its measurement at the scan and is measured again; the pass
    // waits for the scan to end.
    let changed = by_title(&tracks, "Album 2");
    let old = changed.levels.track_lufs.unwrap();
    common::rewrite(&changed.path, || {
        pink(
            &album,
            "2.flac",
            -10.0,
            6.0,
            55,
            &[("title", "Album 2"), ("album", "Record"), ("track", "2")],
        );
    });
    {
        let _hold = pass.scan_hold();
        scan(&music, &store, &no_progress, &GO).unwrap();
        let t = by_title(&all_tracks(&store), "Album 2");
        assert_eq!(
            t.levels.track_lufs, None,
            "the scan cleared the measurement"
        );
        assert_eq!(t.levels.album_lufs, None);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            by_title(&all_tracks(&store), "Album 2").levels.track_lufs,
            None,
            "nothing is measured while the scan holds the pass"
        );
    }
    let mut third: Vec<(TrackId, Levels)> = Vec::new();
    while !third.iter().any(|(id, _)| *id == changed.id) {
        third.push(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("the changed file measured"),
        );
    }
    third.extend(until_done(&pass, &rx, "after the change"));
    let t = by_title(&all_tracks(&store), "Album 2");
    let new = t.levels.track_lufs.expect("measured again");
    assert!((new - old).abs() > 5.0, "{old} -> {new}");
    assert!((new - ffmpeg_lufs(&t.path)).abs() <= 0.2);
    assert!(third
        .iter()
        .any(|(id, l)| *id == t.id && l.track_lufs == Some(new)));
    let album_after = by_title(&all_tracks(&store), "Album 1")
        .levels
        .album_lufs
        .unwrap();
    assert!(
        album_after > a + 1.0,
        "the album got louder: {a} -> {album_after}"
    );
    drop(pass);
    close(store, thread);
}

/// The scheduling policy of every thread named "loudness" in this process (there is one per
/// running pass), once there is one.
fn wait_for_pass_threads() -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != "loudness" {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the ")" that closes the name start at field 3.
            let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
            if let Some(p) = after
                .split_whitespace()
                .nth(41 - 3)
                .and_then(|v| v.parse().ok())
            {
                out.push(p);
            }
        }
        if !out.is_empty() {
            return out;
        }
        assert!(Instant::now() < deadline, "no loudness thread");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_prioritized_track_is_measured_first_even_while_a_scan_holds_the_pass() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    for i in 0..6 {
        pink(
            &music,
            &format!("{i}.flac"),
            -18.0 + i as f32,
            8.0,
            i,
            &[("title", &format!("T{i}"))],
        );
    }
    let (store, thread) = open(&dir.path().join("j.db"));
    scan(&music, &store, &no_progress, &GO).unwrap();
    let last = by_title(&all_tracks(&store), "T5");
    let (pass, rx) = start_pass(&store);
    let hold = pass.scan_hold();
    pass.prioritize(last.id);
    // The pass's thread runs at the lowest priority there is: SCHED_IDLE (policy 5, field 41
    // of /proc/<pid>/task/<tid>/stat).
    let policies = wait_for_pass_threads();
    assert!(
        policies.iter().all(|p| *p == 5),
        "loudness thread policies {policies:?}"
    );
    // The pass starts on the first track in folder order at once; the hold stops it within
    // one chunk, so that track ("T0") can only have been finished if this thread was held up
    // for longer than measuring 8 s of audio takes. Anything else measured before the hold is
    // released is the prioritized track.
    let mut before_release = Vec::new();
    while !before_release.iter().any(|(id, _)| *id == last.id) {
        let r: (TrackId, Levels) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("measured just in time");
        before_release.push(r);
    }
    let first = by_title(&all_tracks(&store), "T0");
    for (id, levels) in &before_release {
        assert!(
            *id == last.id || *id == first.id,
            "{id:?} measured during the hold"
        );
        assert!(levels.track_lufs.is_some());
    }
    std::thread::sleep(Duration::from_millis(300));
    let measured: Vec<TrackId> = all_tracks(&store)
        .iter()
        .filter(|t| t.levels.track_lufs.is_some())
        .map(|t| t.id)
        .collect();
    assert!(
        measured.iter().all(|id| *id == last.id || *id == first.id),
        "the background work waits for the scan: {measured:?}"
    );
    drop(hold);
    let rest = until_done(&pass, &rx, "after the hold");
    let all: Vec<TrackId> = before_release
        .iter()
        .chain(&rest)
        .map(|(id, _)| *id)
        .collect();
    let unique: HashSet<TrackId> = all.iter().copied().collect();
    assert_eq!(all.len(), 6, "each track reported once: {all:?}");
    assert_eq!(unique.len(), 6);
    drop(pass);
    close(store, thread);
}

/// The real binary killed (SIGKILL) in the middle of its pass, then started again on the same
/// database: what was recorded stays measured and is not measured again; the rest is measured
/// once. The pass logs each track it records (at debug level), so the second run's lines are
/// counted against what the first left in the database.
#[test]
fn a_jukebox_killed_mid_pass_resumes_where_it_stopped() {
    const TRACKS: usize = 30;
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    // One 20 s master copied: the pass measures each file, the copies cost no encoding.
    let master = pink(dir.path(), "master.wav", -16.0, 20.0, 7, &[]);
    for i in 0..TRACKS {
        std::fs::copy(&master, music.join(format!("{i:02}.wav"))).unwrap();
    }
    let db = dir.path().join("j.db");
    let counts = || {
        jukebox::store::Db::open_readonly(&db)
            .ok()
            .and_then(|d| d.loudness_counts().ok())
    };
    let start = || {
        let mut cmd = Server::command(&db, &music, "null", None, &[]);
        cmd.env("JUKEBOX_LOG", "info,jukebox::loudness=debug");
        Server::spawn(cmd, &db, &music)
    };
    let measured_lines = |s: &Server| s.log.lock().unwrap().matches("loudness: measured ").count();

    let mut first = start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts().is_none_or(|c| c.measured < 3) {
        assert!(Instant::now() < deadline, "the pass measured nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let before = counts().unwrap();
    assert!(
        before.measured >= 3 && (before.measured as usize) < TRACKS,
        "killed mid-pass: {before:?}"
    );
    // Its log is read by a thread of its own, which may still be draining the pipe. A record
    // is logged just after its commit, so the kill may have fallen between the last commit and
    // its line: every record but that one has its line.
    common::wait::wait_until_blocking(
        Duration::from_secs(10),
        "a log line for every track measured before the kill but the last",
        || measured_lines(&first) as u64 + 1 >= before.measured,
    );
    drop(first);

    let second = start();
    let deadline = Instant::now() + Duration::from_secs(180);
    while counts().is_none_or(|c| (c.measured as usize) < TRACKS) {
        assert!(
            Instant::now() < deadline,
            "the pass did not finish: {:?}",
            counts()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The last record is logged just after it is written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while measured_lines(&second) < TRACKS - before.measured as usize {
        assert!(
            Instant::now() < deadline,
            "fewer measurements than tracks left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        measured_lines(&second),
        TRACKS - before.measured as usize,
        "the second run measures only what the first did not record"
    );
    assert_eq!(counts().unwrap().failed, 0);
}
