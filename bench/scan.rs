//! Library scan: 10,000 generated tagged files, cold (new database) and warm (rescan).
//!   cargo bench --bench scan

#[path = "common.rs"]
mod common;

use std::time::Instant;

use jukebox::library::scan;
use jukebox::store::Store;

fn main() {
    let n: usize = std::env::var("JUKEBOX_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (dir, _keep) = common::workdir("scan");
    let music = dir.join("music");
    if !music.join("Artist 0000").exists() {
        let t = Instant::now();
        common::wav_library(&music, n, 50);
        println!("generated {n} files in {:.1} s", t.elapsed().as_secs_f64());
    }
    let db = dir.join("scan.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    // Truly cold: drop the page cache first when allowed (root on Linux).
    let dropped = std::process::Command::new("sh")
        .args(["-c", "sync && echo 3 > /proc/sys/vm/drop_caches"])
        .status()
        .is_ok_and(|s| s.success());
    println!("page cache dropped before the cold scan: {dropped}");
    let (store, thread) = Store::open(&db).unwrap();
    let cold = scan(
        &music,
        &store,
        &|_| {},
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    let secs = cold.elapsed.as_secs_f64();
    println!(
        "cold scan: {} files, {} read, {:.2} s, {:.0} tracks/s",
        cold.files,
        cold.read,
        secs,
        cold.read as f64 / secs
    );
    let warm = scan(
        &music,
        &store,
        &|_| {},
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    println!(
        "warm rescan: {} files, {} unchanged, {} ms",
        warm.files,
        warm.unchanged,
        warm.elapsed.as_millis()
    );
    assert_eq!(warm.read, 0);
    drop(store);
    thread.join().unwrap();
}
