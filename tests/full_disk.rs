//! A full disk: the database lives on a tiny tmpfs that the test fills up. Changes that cannot
//! be saved are refused with a clear error and never acknowledged; the music goes on; once
//! there is room again everything works; nothing acknowledged is lost and the database is
//! intact. Needs root (or CAP_SYS_ADMIN) to mount the tmpfs, as CI has.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;

use common::TestHub;
use jukebox::hub::{Command, Reply};
use jukebox::party::Settings;
use jukebox::store::Db;

struct Mount(PathBuf);
impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let out = Proc::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(dir.to_owned())
    }
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Proc::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    for _ in 0..100_000 {
        if f.write_all(&block).and_then(|_| f.flush()).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_changes_clearly_and_loses_nothing() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let disk = dir.path().join("disk");
    let _mount = Mount::tmpfs(&disk, "3m");
    let db = disk.join("j.db");
    let mut h = TestHub::start(&db, &music, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();

    let mut acked = Vec::new();
    for i in 0..5 {
        if let Reply::Guest(g) = h
            .ok(Command::CreateGuest {
                name: Some(format!("before-{i}")),
                host: false,
            })
            .await
        {
            acked.push(g);
        }
    }

    let filler = fill(&disk);
    let mut refused = Vec::new();
    for i in 0..40 {
        let name = format!("full-{i}");
        let a = h
            .call(Command::CreateGuest {
                name: Some(name.clone()),
                host: false,
            })
            .await;
        match a.result {
            Ok(Reply::Guest(g)) => acked.push(g),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert_eq!(e.code(), "internal");
                let msg = e.to_string();
                assert!(msg.contains("could not save"), "{msg}");
                assert!(msg.contains("full") || msg.contains("disk"), "{msg}");
                refused.push(name);
            }
        }
    }
    assert!(!refused.is_empty(), "the disk never filled up");
    // Still serving, still playing.
    let s = h.snapshot().await;
    assert_eq!(s.now_playing.map(|n| n.play_id), Some(np.play_id));

    // Room again: everything works.
    std::fs::remove_file(&filler).unwrap();
    for i in 0..3 {
        match h
            .call(Command::CreateGuest {
                name: Some(format!("after-{i}")),
                host: false,
            })
            .await
            .result
        {
            Ok(Reply::Guest(g)) => acked.push(g),
            other => panic!("after freeing space: {other:?}"),
        }
    }
    h.stop().await;

    let db = Db::open(&db).unwrap();
    assert_eq!(db.integrity_check().unwrap(), "ok");
    let guests = db.guests().unwrap();
    for g in &acked {
        assert!(
            guests
                .iter()
                .any(|r| r.id == g.guest_id && r.token == jukebox::store::token_digest(&g.token)),
            "acknowledged guest {} lost",
            g.name
        );
    }
    for name in &refused {
        assert!(
            !guests.iter().any(|r| &r.name == name),
            "refused guest {name} was saved anyway"
        );
    }
}
