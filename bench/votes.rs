//! A burst of 1,000 votes through the hub with durability on (every acknowledged vote is
//! committed with synchronous=FULL): acknowledged votes per second and ack latency.
//!   cargo bench --bench votes

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jukebox::config::OutputSpec;
use jukebox::hub::{Actor, Command, Hub, HubConfig, Reply};
use jukebox::party::Settings;
use jukebox::store::Store;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let votes = 1000;
    let (dir, _keep) = common::workdir("votes");
    let music = dir.join("music");
    if !music.exists() {
        common::wav_library(&music, 4, 60_000);
    }
    let db = dir.join("votes.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let (store, thread) = Store::open(&db).unwrap();
    let (hub, task) = Hub::start(
        HubConfig {
            name: "bench".into(),
            music: music.clone(),
            output: OutputSpec::Null,
            settings: Settings::default(),
            explicit_settings: vec![],
            guest_limits: Default::default(),
            snapcast_rpc: None,
        },
        store.clone(),
    )
    .await
    .unwrap();
    // Wait for the library and a playing track.
    let deadline = Instant::now() + Duration::from_secs(30);
    let playing = loop {
        if let Ok(Reply::Snapshot(s)) = hub
            .call(Command::Snapshot {
                guest: None,
                admin: false,
                history: false,
            })
            .await
            .result
        {
            if let Some(n) = s.now_playing {
                break n;
            }
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let track = store
        .read(|db| db.search("", 10, 0))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id != playing.track.id)
        .unwrap();
    let mut guests = Vec::new();
    let mut sockets = Vec::new();
    for i in 0..votes {
        let Ok(Reply::Guest(g)) = hub
            .call(Command::CreateGuest {
                name: Some(format!("g{i}")),
                host: false,
            })
            .await
            .result
        else {
            panic!()
        };
        // Only a guest with a live socket votes: counted by `Connect`, uncounted when its
        // guard goes (kept to the end, as the websocket layer keeps it).
        let Ok(Reply::Identity(Some(_))) = hub
            .call(Command::Connect {
                token: g.token.clone(),
                addr: None,
            })
            .await
            .result
        else {
            panic!()
        };
        sockets.push(hub.connection(g.guest_id, None));
        guests.push(Actor {
            guest: g.guest_id,
            host: false,
        });
    }
    // The host requests (the demo tracks share one artist, which guests would be refused).
    let Ok(Reply::Guest(host)) = hub
        .call(Command::CreateGuest {
            name: None,
            host: true,
        })
        .await
        .result
    else {
        panic!()
    };
    let host = Actor {
        guest: host.guest_id,
        host: true,
    };
    let answer = hub
        .call(Command::Request {
            actor: host,
            track_id: track.id,
            dedication: None,
        })
        .await;
    let Ok(Reply::Requested { entry_id, .. }) = answer.result else {
        panic!("{:?}", answer.result)
    };

    let start = Instant::now();
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(votes)));
    let mut tasks = Vec::new();
    for g in guests.iter().skip(1).copied() {
        let (hub, lat) = (hub.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let a = hub
                .call(Command::Vote {
                    actor: g,
                    entry_id,
                    on: true,
                })
                .await;
            assert!(a.result.is_ok());
            lat.lock().unwrap().push(t.elapsed());
        }));
    }
    // One more from the requester's side to make it an even 1,000.
    let t = Instant::now();
    hub.call(Command::Vote {
        actor: guests[1],
        entry_id,
        on: false,
    })
    .await
    .result
    .unwrap();
    lat.lock().unwrap().push(t.elapsed());
    for t in tasks {
        t.await.unwrap();
    }
    let took = start.elapsed();
    let mut lat = lat.lock().unwrap().clone();
    lat.sort();
    println!(
        "{} votes acknowledged in {:.3} s: {:.0} votes/s; ack latency p50 {:?}, p99 {:?}",
        lat.len(),
        took.as_secs_f64(),
        lat.len() as f64 / took.as_secs_f64(),
        common::percentile(&lat, 0.5),
        common::percentile(&lat, 0.99)
    );
    // Sequential: one vote at a time (the worst case for group commit).
    let t = Instant::now();
    for g in guests.iter().take(200) {
        hub.call(Command::Vote {
            actor: *g,
            entry_id,
            on: false,
        })
        .await
        .result
        .unwrap();
    }
    let took = t.elapsed();
    println!(
        "200 votes one after another: {:.0} votes/s ({:?} each)",
        200.0 / took.as_secs_f64(),
        took / 200
    );
    hub.shutdown(task).await;
    drop(hub);
    drop(store);
    thread.join().unwrap();
}
