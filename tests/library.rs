//! The library scanner against real files of every supported format, a corrupt file and an
//! unsupported one, with a real SQLite file; then an incremental rescan.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use jukebox::library::{scan, ScanProgress};
use jukebox::store::Store;

fn no_progress(_: ScanProgress) {}

static GO: AtomicBool = AtomicBool::new(false);

fn track_by_title(store: &Store, q: &str) -> Vec<jukebox::store::Track> {
    let q = q.to_string();
    store
        .read_blocking(move |db| db.search(&q, 50, 0))
        .expect("search")
}

#[test]
fn scans_every_format_skips_corrupt_files_and_rescans_incrementally() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    let sub = music.join("Artist/Album");
    std::fs::create_dir_all(&sub).unwrap();
    let formats = ["mp3", "flac", "ogg", "wav", "m4a"];
    for (i, ext) in formats.iter().enumerate() {
        common::tone(
            &sub,
            &format!("{i}.{ext}"),
            300 + 100 * i as u32,
            2.0,
            &[
                ("title", &format!("Song {ext}")),
                ("artist", "Zoë Tester"),
                ("album", "Formats"),
                ("track", &format!("{}", i + 1)),
            ],
        );
    }
    // No tags at all: the title comes from the file name.
    common::tone(&music, "Untagged_Tune.wav", 500, 1.0, &[]);
    // Garbage with an audio extension, and an empty file.
    std::fs::write(music.join("corrupt.mp3"), vec![0x5a; 4096]).unwrap();
    std::fs::write(music.join("empty.flac"), b"").unwrap();
    // No decoder here plays WMA: not listed (one log line sums such files up).
    common::tone(&music, "speech.wma", 400, 1.0, &[("title", "Wma")]);
    std::fs::write(music.join("notes.txt"), b"not music").unwrap();

    let (store, thread) = Store::open(&dir.path().join("j.db")).unwrap();
    let report = scan(&music, &store, &no_progress, &GO).unwrap();
    assert_eq!(report.files, 8, "{report:?}");
    assert_eq!(report.read, 6, "{report:?}");
    assert_eq!(report.skipped, 2, "{report:?}");
    assert_eq!(report.unplayable, 1, "{report:?}");
    assert_eq!(
        store.read_blocking(|db| db.track_count()).unwrap(),
        6,
        "five formats plus the untagged file"
    );

    for (i, ext) in formats.iter().enumerate() {
        let found = track_by_title(&store, &format!("song {ext}"));
        let t = found
            .iter()
            .find(|t| t.title == format!("Song {ext}"))
            .unwrap_or_else(|| panic!("{ext} not found: {found:?}"));
        assert_eq!(t.artist, "Zoë Tester");
        assert_eq!(t.album, "Formats");
        assert_eq!(t.track_no, Some(i as u32 + 1), "{ext}");
        let d = t.duration_ms as i64;
        assert!((d - 2000).abs() < 150, "{ext} duration {d}");
    }
    let untagged = track_by_title(&store, "untagged");
    assert_eq!(untagged.len(), 1);
    assert_eq!(untagged[0].title, "Untagged Tune");
    assert_eq!(untagged[0].artist, "");

    // Rescan with nothing changed: nothing is read again.
    let again = scan(&music, &store, &no_progress, &GO).unwrap();
    assert_eq!(
        (again.read, again.unchanged, again.removed),
        (0, 6, 0),
        "{again:?}"
    );

    // Change one file, delete one, add one.
    common::rewrite(&sub.join("0.mp3"), || {
        common::tone(
            &sub,
            "0.mp3",
            300,
            1.0,
            &[("title", "Song mp3 v2"), ("artist", "Zoë Tester")],
        );
    });
    std::fs::remove_file(sub.join("1.flac")).unwrap();
    common::tone(&music, "new.flac", 700, 1.0, &[("title", "Brand New")]);
    let third = scan(&music, &store, &no_progress, &GO).unwrap();
    assert_eq!((third.read, third.removed), (2, 1), "{third:?}");
    assert_eq!(store.read_blocking(|db| db.track_count()).unwrap(), 6);
    assert!(
        track_by_title(&store, "song flac").is_empty(),
        "a deleted file leaves search"
    );
    assert_eq!(track_by_title(&store, "brand new").len(), 1);
    assert_eq!(
        track_by_title(&store, "mp3 v2").len(),
        1,
        "a changed file is re-read"
    );
    // ... but stays in the database for history.
    let gone = sub.join("1.flac");
    let known = store.read_blocking(|db| db.known_files()).unwrap();
    assert_eq!(
        known
            .get(&jukebox::store::path_key(&gone))
            .map(|k| k.present),
        Some(false)
    );

    // A known file that turns into garbage leaves search on the next scan.
    let new = music.join("new.flac");
    common::rewrite(&new, || std::fs::write(&new, vec![0x42; 2048]).unwrap());
    let broken = scan(&music, &store, &no_progress, &GO).unwrap();
    assert_eq!((broken.skipped, broken.removed), (3, 1), "{broken:?}");
    assert!(track_by_title(&store, "brand new").is_empty());

    // The file comes back: it is listed again without being re-read.
    common::tone(&sub, "1.flac", 400, 2.0, &[("title", "Song flac")]);
    let fourth = scan(&music, &store, &no_progress, &GO).unwrap();
    assert_eq!(fourth.read, 1, "{fourth:?}");
    assert_eq!(track_by_title(&store, "song flac").len(), 1);

    drop(store);
    thread.join().unwrap();
}

#[test]
fn a_missing_music_folder_is_an_error_naming_it() {
    let dir = common::tempdir();
    let (store, _t) = Store::open(&dir.path().join("j.db")).unwrap();
    let err = scan(Path::new("/nonexistent/music"), &store, &no_progress, &GO).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/music"), "{err}");
}

#[test]
fn cover_art_is_found() {
    let dir = common::tempdir();
    // Make a tiny PNG with ffmpeg and embed it as the cover of an mp3.
    let png = dir.path().join("c.png");
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=8x8",
            "-frames:v",
            "1",
        ])
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success());
    let audio = common::tone(dir.path(), "plain.mp3", 440, 1.0, &[("title", "Art")]);
    let with_art = dir.path().join("art.mp3");
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(&audio)
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
            "-metadata:s:v",
            "comment=Cover (front)",
        ])
        .arg(&with_art)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = jukebox::library::read_file(&with_art, 0, 0).unwrap();
    assert!(t.has_art);
    let (bytes, mime) = jukebox::library::cover_art(&with_art).unwrap();
    assert_eq!(mime, "image/png");
    assert!(bytes.starts_with(b"\x89PNG"));
    assert!(!jukebox::library::read_file(&audio, 0, 0).unwrap().has_art);
}

#[test]
fn a_cancelled_scan_keeps_what_it_read_and_marks_nothing_absent() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 1.0);
    let (store, _t) = Store::open(&dir.path().join("j.db")).unwrap();
    scan(&music, &store, &no_progress, &GO).unwrap();
    let stop = AtomicBool::new(true);
    let err = scan(&music, &store, &no_progress, &stop).unwrap_err();
    assert!(
        matches!(err, jukebox::library::LibraryError::Cancelled),
        "{err}"
    );
    assert_eq!(store.read_blocking(|db| db.track_count()).unwrap(), 3);
}
