//! `jukebox export` through the real binary, on a database made by a real party.

mod common;

use common::TestHub;
use jukebox::hub::{Change, Command, NowPlayingView, Reply};
use jukebox::party::Settings;

/// A party on three tracks, playing: the hub, what plays first, and another track.
async fn party(
    dir: &tempfile::TempDir,
    db: &std::path::Path,
) -> (TestHub, NowPlayingView, jukebox::store::Track) {
    let music = common::music(dir.path(), 3, 30.0);
    let mut h = TestHub::start(db, &music, Settings::default()).await;
    let first = h.playing().await.now_playing.unwrap();
    let first_id = first.track.id;
    let other = h
        .store
        .read(move |db| db.search("", 10, 0))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id != first_id)
        .unwrap();
    (h, first, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_tonights_plays_with_requesters_and_likes() {
    let dir = common::tempdir();
    let db = dir.path().join("j.db");
    let (mut h, first, track) = party(&dir, &db).await;
    let host = h.host().await;
    let mia = h.guest("Mia, \"the\" DJ").await;
    let sam = h.guest("Sam").await;
    h.ok(Command::Request {
        actor: mia,
        track_id: track.id,
        dedication: Some("=Anna, \"my\" love".into()),
    })
    .await;
    h.ok(Command::Like {
        actor: sam,
        play_id: first.play_id,
        on: true,
    })
    .await;
    h.ok(Command::Skip {
        host: host.as_host().unwrap(),
        play_id: None,
    })
    .await;
    let p = h
        .wait_for(
            "Mia's song",
            |c| matches!(c, Change::NowPlaying(Some(n)) if n.track.id == track.id),
        )
        .await;
    let Change::NowPlaying(Some(now)) = &p.change else {
        unreachable!()
    };
    h.ok(Command::Like {
        actor: sam,
        play_id: now.play_id,
        on: true,
    })
    .await;
    match h
        .ok(Command::Like {
            actor: mia,
            play_id: now.play_id,
            on: true,
        })
        .await
    {
        Reply::Done => {}
        other => panic!("{other:?}"),
    }
    h.stop().await;

    let out = std::process::Command::new(common::bin())
        .args(["export", "--format", "csv", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let headers = r.headers().unwrap().clone();
    assert_eq!(&headers[1], "title");
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(&rows[0][1], first.track.title);
    assert_eq!(&rows[0][5], "", "auto-DJ: nobody requested it");
    assert_eq!(&rows[0][7], "1");
    assert_eq!(&rows[0][8], "skipped");
    assert_eq!(&rows[1][1], track.title);
    assert_eq!(&rows[1][5], "Mia, \"the\" DJ", "quoted correctly");
    assert_eq!(&rows[1][7], "2");
    assert_eq!(&rows[1][8], "playing");
    assert_eq!(&headers[10], "dedication");
    assert_eq!(&rows[0][10], "", "no dedication");
    assert_eq!(
        &rows[1][10], "'=Anna, \"my\" love",
        "a cell a spreadsheet will not run"
    );

    let out = std::process::Command::new(common::bin())
        .args(["export", "--format", "m3u", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let m3u = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = m3u.lines().collect();
    assert_eq!(lines[0], "#EXTM3U");
    assert!(
        lines.contains(&track.path.display().to_string().as_str()),
        "{m3u}"
    );
    assert!(
        m3u.contains(&format!("#EXTINF:30,{} - {}", track.artist, track.title)),
        "{m3u}"
    );
    assert!(
        m3u.contains("requested by Mia, \"the\" DJ; 2 likes; for =Anna, \"my\" love\n"),
        "{m3u}"
    );

    // A database that does not exist is a clear error, not a new empty file.
    let missing = dir.path().join("nope.db");
    let out = std::process::Command::new(common::bin())
        .args(["export", "--db"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.db"));
    assert!(!missing.exists());
}

/// A guest named like a spreadsheet formula must reach the host's spreadsheet as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_that_look_like_formulas_stay_text() {
    let dir = common::tempdir();
    let db = dir.path().join("j.db");
    let (mut h, _, track) = party(&dir, &db).await;
    let host = h.host().await;
    let evil = h.guest("=HYPERLINK(\"http://x\",\"y\")").await;
    h.ok(Command::Request {
        actor: evil,
        track_id: track.id,
        dedication: None,
    })
    .await;
    h.ok(Command::Skip {
        host: host.as_host().unwrap(),
        play_id: None,
    })
    .await;
    h.wait_for(
        "the requested song",
        |c| matches!(c, Change::NowPlaying(Some(n)) if n.track.id == track.id),
    )
    .await;
    h.stop().await;

    let out = std::process::Command::new(common::bin())
        .args(["export", "--format", "csv", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(&rows[1][5], "'=HYPERLINK(\"http://x\",\"y\")", "{csv}");
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} would run as a formula"
            );
        }
    }
}
