//! Durability: a child process (this test binary, re-run in "child" mode) applies a burst of
//! concurrent votes through the real hub and store, printing each vote the moment it is
//! acknowledged. The parent kills it with SIGKILL mid-burst, reopens the database, and checks
//! that every acknowledged vote is there and that the database is intact.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestHub;
use jukebox::hub::{Command, Reply};
use jukebox::party::{EntryId, GuestId, Settings, TrackId};
use jukebox::store::Db;

const CHILD_ENV: &str = "JUKEBOX_DURABILITY_CHILD";
const GUESTS: usize = 600;

#[test]
fn acknowledged_votes_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(std::path::Path::new(&dir));
        return;
    }
    let dir = common::tempdir();
    common::music(dir.path(), 3, 30.0);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "acknowledged_votes_survive_kill_9",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<(EntryId, GuestId)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill it somewhere in the middle of the burst.
    while acked.len() < 300 {
        assert!(
            Instant::now() < deadline,
            "the child did not get far enough"
        );
        let Some(Ok(line)) = lines.next() else {
            panic!("child ended early")
        };
        if let Some(rest) = line.strip_prefix("ACK ") {
            // "ACK r<entry> g_<guest>": the ids as they are spelled everywhere.
            let (e, g) = rest.split_once(' ').unwrap();
            acked.push((e.parse().unwrap(), g.parse().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL
                           // Lines already written before the kill were acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ACK ") {
            let ids = rest.split_once(' ').map(|(e, g)| (e.parse(), g.parse()));
            if let Some((Ok(e), Ok(g))) = ids {
                acked.push((e, g));
            }
        }
    }
    child.wait().unwrap();
    eprintln!("{} votes acknowledged before the kill", acked.len());
    assert!(acked.len() < GUESTS * 2, "the kill came mid-burst");

    // Reopen (recovering the WAL) and check.
    let db = Db::open(&dir.path().join("j.db")).unwrap();
    assert_eq!(db.integrity_check().unwrap(), "ok");
    let queued = db.queued().unwrap();
    let mut missing = 0;
    for (entry, guest) in &acked {
        let found = queued
            .iter()
            .any(|(e, _)| e.id == *entry && e.voters.contains(guest));
        if !found {
            missing += 1;
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged votes lost",
        acked.len()
    );
}

fn child(dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h =
            TestHub::start(&dir.join("j.db"), &dir.join("music"), Settings::default()).await;
        let np = h.playing().await.now_playing.unwrap();
        let tracks: Vec<TrackId> = h
            .store
            .read(|db| db.search("", 10, 0))
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .filter(|id| *id != np.track.id)
            .collect();
        let owner = h.guest("Owner").await;
        let mut entries = Vec::new();
        for t in tracks.iter().take(2) {
            match h
                .ok(Command::Request {
                    actor: owner,
                    track_id: *t,
                    dedication: None,
                })
                .await
            {
                Reply::Requested { entry_id, .. } => entries.push(entry_id),
                other => panic!("{other:?}"),
            }
        }
        let mut guests = Vec::new();
        for i in 0..GUESTS {
            match h
                .ok(Command::CreateGuest {
                    name: Some(format!("g{i}")),
                    host: false,
                })
                .await
            {
                Reply::Guest(g) => {
                    // Only a guest with a live socket votes.
                    guests.push(h.connect(&g).await)
                }
                other => panic!("{other:?}"),
            }
        }
        let out = Arc::new(Mutex::new(std::io::stdout()));
        // The burst: every guest votes on both entries, many votes in flight at once.
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::new();
        for g in guests {
            for &e in &entries {
                let (hub, out, sem) = (h.hub.clone(), out.clone(), sem.clone());
                tasks.push(tokio::spawn(async move {
                    let _permit = sem.acquire().await.unwrap();
                    let a = hub
                        .call(Command::Vote {
                            actor: g,
                            entry_id: e,
                            on: true,
                        })
                        .await;
                    if a.result.is_ok() {
                        let mut o = out.lock().unwrap();
                        writeln!(o, "ACK {e} {}", g.guest).unwrap();
                        o.flush().unwrap();
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        // Should not get here before the parent kills us; if it does, just idle until the
        // kill (not a wait for anything: the parent decides when this process ends).
        let _ = &mut h;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}
