//! Playback planning under fire: very short tracks end while requests, votes, removals,
//! moves, skips and pauses race them. Afterwards the music must still be going, and the hub's
//! queue must equal the database's.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::TestHub;
use std::sync::Arc;

use jukebox::hub::{Actor, Change, Command, Event, Published, Reply, Snapshot};
use jukebox::party::{EntryId, Settings, TrackId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_music_never_stops_under_a_storm_of_commands() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 8, 0.4);
    let settings = Settings {
        no_repeat_minutes: 0,
        artist_spacing: 0,
        request_limit: 5,
        ..Settings::default()
    };
    let db = dir.path().join("j.db");
    let mut h = TestHub::start(&db, &music, settings).await;
    h.playing().await;
    let tracks: Vec<TrackId> = h
        .store
        .read(|db| db.search("", 20, 0))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    let host = h.host().await;
    let mut guests = Vec::new();
    for i in 0..6 {
        guests.push(h.guest(&format!("g{i}")).await);
    }
    let mut rx = h.hub.subscribe();
    let seed = std::env::var("JUKEBOX_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut actions = 0;
    while started.elapsed() < Duration::from_secs(6) && actions < 2_000 {
        actions += 1;
        let g: Actor = guests[rng.random_range(0..guests.len())];
        let s = h.snapshot().await;
        let Some(cmd) = random_command(&mut rng, &s, g, host, &tracks) else {
            continue;
        };
        // Refusals are fine; internal errors are not.
        let a = h.call(cmd).await;
        if let Err(e) = &a.result {
            assert_ne!(e.code(), "internal", "{e}");
        }
        // Not a wait for anything: random gaps are part of the storm.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..15))).await;
    }
    h.ok(Command::Play {
        host: host.as_host().unwrap(),
    })
    .await;
    // Then the auto-DJ alone, with tracks cut short right after they start.
    for e in h.snapshot().await.order {
        let _ = h
            .call(Command::Remove {
                host: host.as_host().unwrap(),
                entry_id: e,
            })
            .await;
    }
    for _ in 0..60 {
        if let Some(n) = h.snapshot().await.now_playing {
            let _ = h
                .call(Command::Seek {
                    host: host.as_host().unwrap(),
                    position_ms: n.track.duration_ms.saturating_sub(5),
                })
                .await;
        }
        // The same: cuts at random moments, not a wait.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
    }

    assert_one_gapless_order(&mut rx);
    // The music goes on: new tracks keep starting (each is 0.4 s).
    tracks_keep_starting(&mut rx, 3, actions).await;
    memory_and_disk_agree_on_the_queue(&h).await;
    h.stop().await;
}

/// One random thing a guest `g` or the host does, given the hub's state `s`; `None` when
/// what was drawn needs a queue entry or a play and there is none.
fn random_command(
    rng: &mut StdRng,
    s: &Snapshot,
    g: Actor,
    host: Actor,
    tracks: &[TrackId],
) -> Option<Command> {
    let play = s.now_playing.as_ref().map(|n| n.play_id);
    let entry = (!s.order.is_empty()).then(|| s.order[rng.random_range(0..s.order.len())]);
    Some(match rng.random_range(0..12) {
        0..=2 => Command::Request {
            actor: g,
            track_id: tracks[rng.random_range(0..tracks.len())],
            dedication: None,
        },
        3 => Command::Vote {
            actor: g,
            entry_id: entry?,
            on: rng.random(),
        },
        4 => Command::Remove {
            host: host.as_host().unwrap(),
            entry_id: entry?,
        },
        5 => Command::Move {
            host: host.as_host().unwrap(),
            entry_id: entry?,
            to: rng.random_range(0..4),
        },
        6 => Command::Skip {
            host: host.as_host().unwrap(),
            play_id: play,
        },
        7 => Command::VoteSkip {
            actor: g,
            play_id: play?,
        },
        8 => Command::Like {
            actor: g,
            play_id: play?,
            on: rng.random(),
        },
        // Jump to the very end: the track finishes at once, racing whatever the hub is
        // still preparing as its successor.
        10 | 11 => Command::Seek {
            host: host.as_host().unwrap(),
            position_ms: s.now_playing.as_ref()?.track.duration_ms.saturating_sub(5),
        },
        _ => {
            if rng.random_bool(0.5) {
                Command::Pause {
                    host: host.as_host().unwrap(),
                }
            } else {
                Command::Play {
                    host: host.as_host().unwrap(),
                }
            }
        }
    })
}

/// Every change published so far came in one order without gaps.
fn assert_one_gapless_order(rx: &mut broadcast::Receiver<Arc<Published>>) {
    let mut last = None;
    while let Ok(p) = rx.try_recv() {
        if let Some(l) = last {
            assert_eq!(p.seq, l + 1, "a gap in the change order");
        }
        last = Some(p.seq);
    }
}

/// Waits (bounded) for `n` more tracks to start.
async fn tracks_keep_starting(
    rx: &mut broadcast::Receiver<Arc<Published>>,
    n: usize,
    actions: usize,
) {
    let mut starts = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while starts < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(p)) => {
                if matches!(
                    p.change,
                    Change::Event {
                        event: Event::TrackStarted { .. },
                        ..
                    }
                ) {
                    starts += 1;
                }
            }
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the music stopped after {actions} actions ({starts} starts)"),
        }
    }
}

/// The hub's queue and its votes are the database's.
async fn memory_and_disk_agree_on_the_queue(h: &TestHub) {
    let s = match h
        .ok(Command::Snapshot {
            guest: None,
            admin: true,
            history: false,
        })
        .await
    {
        Reply::Snapshot(s) => s,
        other => panic!("{other:?}"),
    };
    let db_queue: BTreeMap<EntryId, usize> = h
        .store
        .read(|db| db.queued())
        .await
        .unwrap()
        .into_iter()
        .map(|(e, _)| (e.id, e.voters.len()))
        .collect();
    let mem_queue: BTreeMap<EntryId, usize> =
        s.queue.iter().map(|e| (e.id, e.votes as usize)).collect();
    assert_eq!(mem_queue, db_queue);
    assert_eq!(
        s.order.iter().copied().collect::<BTreeSet<_>>(),
        db_queue.keys().copied().collect::<BTreeSet<_>>()
    );
}
