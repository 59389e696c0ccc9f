//! FTS search latency at 50,000 tracks: p50 / p99 over prefix queries of one and two words.
//!   cargo bench --bench search

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jukebox::store::{ScannedTrack, Store};

fn main() {
    let n = 50_000;
    let (dir, _keep) = common::workdir("search");
    let db = dir.join("search.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let (store, thread) = Store::open(&db).unwrap();
    let w = common::WORDS;
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let chunk = chunk.to_vec();
        store
            .write_blocking(move |db| {
                for i in chunk {
                    db.upsert_track(&ScannedTrack {
                        path: PathBuf::from(format!("/music/{i}.mp3")),
                        size: 1,
                        mtime_ns: 1,
                        title: format!("{} {} {}", w[i % 30], w[(i / 30) % 30], i),
                        artist: format!("{} band {}", w[(i / 7) % 30], i % 997),
                        album: format!("{} album", w[(i / 11) % 30]),
                        track_no: Some((i % 12) as u32),
                        duration_ms: 200_000,
                        has_art: false,
                        tag_levels: Default::default(),
                        details: Default::default(),
                    })?;
                }
                Ok(())
            })
            .unwrap();
    }
    println!("indexed {n} tracks in {:.1} s", t.elapsed().as_secs_f64());

    let queries: Vec<String> = (0..2000)
        .map(|i| {
            let a = w[(i * 7) % 30];
            let b = w[(i * 13 + 5) % 30];
            match i % 4 {
                0 => a[..2.min(a.len())].to_string(),
                1 => a.to_string(),
                2 => format!("{a} {}", &b[..3.min(b.len())]),
                _ => format!("{} band {}", b, i % 997),
            }
        })
        .collect();
    let mut times: Vec<Duration> = Vec::with_capacity(queries.len());
    let mut by_kind: [Vec<Duration>; 4] = Default::default();
    let mut hits = 0;
    for (i, q) in queries.into_iter().enumerate() {
        let t = Instant::now();
        let r = store.read_blocking(move |db| db.search(&q, 20, 0)).unwrap();
        times.push(t.elapsed());
        by_kind[i % 4].push(t.elapsed());
        hits += r.len();
    }
    for (kind, mut t) in [
        "2-letter prefix",
        "one word",
        "word + 3-letter prefix",
        "word band number",
    ]
    .into_iter()
    .zip(by_kind)
    {
        t.sort();
        println!(
            "  {kind:<24} p50 {:?}, p99 {:?}",
            common::percentile(&t, 0.5),
            common::percentile(&t, 0.99)
        );
    }
    times.sort();
    println!(
        "search over {n} tracks, {} queries (20 results each, {hits} hits): p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        common::percentile(&times, 0.5),
        common::percentile(&times, 0.99),
        times.last().unwrap()
    );
    drop(store);
    thread.join().unwrap();
}
