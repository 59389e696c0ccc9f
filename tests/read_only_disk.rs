//! The database's filesystem turns read-only mid-party, as the kernel does to an SD card that
//! fails (ext4's `errors=remount-ro`): the database lives on an ext4 image mounted through a
//! loop device, and the test has ext4 report an error (`/sys/fs/ext4/DEV/trigger_fs_error`),
//! after which ext4 aborts its journal and remounts itself read-only. The real binary must
//! refuse the changes it cannot save with a clear error (never acknowledge one), keep playing
//! and serving, and lose nothing it acknowledged before. Needs root (a loop device and a
//! mount), as CI has, and `mkfs.ext4` and `losetup` (Debian's e2fsprogs and mount, in every
//! Debian system).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::live::{Phone, Server, PIN};
use jukebox::party::GuestId;
use jukebox::store::Db;
use serde_json::{json, Value};

/// An ext4 image mounted on a loop device, with `errors=remount-ro`; undone when dropped.
struct Disk {
    mount: PathBuf,
    device: String,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed (this test needs root for a loop device and a mount): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Disk {
    fn new(dir: &Path) -> Disk {
        let image = dir.join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image));
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount).unwrap();
        let disk = Disk { mount, device };
        run(Command::new("mount")
            .args(["-o", "errors=remount-ro", &disk.device])
            .arg(&disk.mount));
        disk
    }

    /// What a failing card makes the kernel do: ext4 records an error, aborts its journal and
    /// remounts the filesystem read-only.
    fn fail(&self) {
        let name = Path::new(&self.device).file_name().unwrap();
        let knob = Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error");
        std::fs::write(&knob, "the test fails the card").expect("ext4's error knob");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::write(self.mount.join("probe"), "x").is_ok() {
            assert!(Instant::now() < deadline, "ext4 did not turn read-only");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn wav_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[test]
fn a_database_turned_read_only_refuses_clearly_keeps_playing_and_loses_nothing() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let disk = Disk::new(dir.path());
    let db = disk.mount.join("j.db");
    let wav = dir.path().join("out.wav");
    let server = Server::start_with(
        &db,
        &music,
        &format!("wav:{}", wav.display()),
        Some(PIN),
        &[],
    );
    let addr = server.addr.clone();
    let np = server.playing();

    let guest = |name: &str| -> (String, GuestId) {
        let (s, v) = server.post("/api/guest", &json!({ "name": name }), None);
        assert_eq!(s, 201, "{v}");
        let id = v["guest_id"].as_str().unwrap().parse().unwrap();
        (v["token"].as_str().unwrap().to_string(), id)
    };
    let (ada, _) = guest("Ada");
    let voters: Vec<(String, GuestId)> = (0..8).map(|i| guest(&format!("V{i}"))).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (entry, acked, refused) = rt.block_on(async {
        let topics = ["now_playing", "queue"];
        let mut asker = Phone::connect(&addr, &ada, &topics).await;
        let (reply, _) = asker
            .ok(json!({"cmd": "request", "track_id": server.other_track(&np)}))
            .await;
        let entry = reply["data"]["entry_id"].as_str().unwrap().to_string();
        let mut phones = Vec::new();
        for (token, id) in &voters {
            phones.push((Phone::connect(&addr, token, &topics).await, *id));
        }
        let vote = |e: &str| json!({"cmd": "vote", "entry_id": e, "on": true});
        // Half vote while the card works.
        let mut acked = Vec::new();
        for (p, id) in &mut phones[..4] {
            p.ok(vote(&entry)).await;
            acked.push(*id);
        }
        disk.fail();
        // The other half after it failed: refused, clearly, and never acknowledged.
        let mut refused = Vec::new();
        for (p, id) in &mut phones[4..] {
            let rid = p.request(vote(&entry)).await;
            let (reply, _) = p.reply(rid).await;
            assert_eq!(
                reply["ok"], false,
                "acknowledged on a read-only disk: {reply}"
            );
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("could not save") && message.contains("read-only"),
                "{reply}"
            );
            refused.push(*id);
        }
        // A like, and a new guest: refused the same way.
        let like = json!({"cmd": "like", "play_id": np["play_id"], "on": true});
        let rid = phones[0].0.request(like).await;
        let (reply, _) = phones[0].0.reply(rid).await;
        assert_eq!(reply["ok"], false, "{reply}");
        (entry, acked, refused)
    });
    let (status, body) = server.post("/api/guest", &json!({"name": "Late"}), None);
    assert!(
        status >= 500,
        "a guest made on a read-only disk: {status} {body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("read-only"), "{body}");

    // Still serving, and still playing: the WAV output grows.
    let before = wav_len(&wav);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        wav_len(&wav) > before + 44_100,
        "the music stopped: {} → {} bytes",
        before,
        wav_len(&wav)
    );
    let (status, state) = server.get("/api/state");
    assert_eq!(status, 200);
    let order: Vec<Value> = state["queue"]["order"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(order.iter().any(|e| e == entry.as_str()), "{state}");
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("read-only"), "no line says why: {log}");
    server.stop();

    // What it acknowledged is on the card: the database, copied off the read-only
    // filesystem (opening it there would need to write its index), has every acknowledged
    // vote and none of the refused ones.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["j.db", "j.db-wal"] {
        if disk.mount.join(f).exists() {
            std::fs::copy(disk.mount.join(f), copy.join(f)).unwrap();
        }
    }
    let saved = Db::open(&copy.join("j.db")).unwrap();
    assert_eq!(saved.integrity_check().unwrap(), "ok");
    let queued = saved.queued().unwrap();
    let (e, _) = queued
        .iter()
        .find(|(e, _)| e.id.to_string() == entry)
        .expect("the acknowledged request is saved");
    for g in &acked {
        assert!(e.voters.contains(g), "acknowledged vote of {g} lost");
    }
    for g in &refused {
        assert!(!e.voters.contains(g), "refused vote of {g} saved anyway");
    }
}
