//! The hub end to end, in process: real store (SQLite file), real library scan of real audio
//! files, real player thread on the paced null output. Every party rule is exercised through
//! the commands a websocket layer will send, and checked in the published change stream.

mod common;

use common::TestHub;
use jukebox::hub::{Change, Command, Event, HubError, Reply, SkipReason};
use jukebox::party::{EntryId, PlayId, Refusal, Settings, TrackId};

async fn library(h: &TestHub) -> Vec<(TrackId, String)> {
    h.store
        .read(|db| db.search("", 100, 0))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.title))
        .collect()
}

fn requested(r: Reply) -> (EntryId, bool) {
    match r {
        Reply::Requested { entry_id, upvoted } => (entry_id, upvoted),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_votes_likes_and_skips_follow_the_party_rules() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 6, 30.0);
    let mut h = TestHub::start(&dir.path().join("j.db"), &music, Settings::default()).await;
    let first = h.playing().await;
    let np = first.now_playing.clone().unwrap();
    assert!(np.auto, "an empty queue starts the auto-DJ");
    let lib = library(&h).await;
    assert_eq!(lib.len(), 6);

    let mia = h.guest("Mia").await;
    let sam = h.guest("Sam").await;
    let zoe = h.guest("Zoë").await;
    // Pick songs that are not playing, by artists not heard yet.
    let free: Vec<TrackId> = lib
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| *id != np.track.id)
        .collect();

    // A request, then the same track from another guest counts as an up-vote.
    let (e1, up) = requested(
        h.ok(Command::Request {
            actor: mia,
            track_id: free[0],
        })
        .await,
    );
    assert!(!up);
    let (e1b, up) = requested(
        h.ok(Command::Request {
            actor: sam,
            track_id: free[0],
        })
        .await,
    );
    assert_eq!((e1b, up), (e1, true));
    // Asking again is idempotent.
    h.ok(Command::Request {
        actor: sam,
        track_id: free[0],
    })
    .await;
    let s = h.snapshot().await;
    assert_eq!(s.queue.len(), 1);
    assert_eq!(s.queue[0].votes, 2, "requester's own vote plus Sam's");
    assert_eq!(s.queue[0].by.as_deref(), Some("Mia"));

    // Order: Zoë's request with 1 vote goes after Mia's with 2, until two up-votes.
    let (e2, _) = requested(
        h.ok(Command::Request {
            actor: zoe,
            track_id: free[1],
        })
        .await,
    );
    assert_eq!(h.snapshot().await.order, vec![e1, e2]);
    h.ok(Command::Vote {
        actor: mia,
        entry_id: e2,
        on: true,
    })
    .await;
    h.ok(Command::Vote {
        actor: sam,
        entry_id: e2,
        on: true,
    })
    .await;
    assert_eq!(
        h.snapshot().await.order,
        vec![e2, e1],
        "more votes plays sooner"
    );
    h.ok(Command::Vote {
        actor: sam,
        entry_id: e2,
        on: false,
    })
    .await;
    let s = h.snapshot().await;
    assert_eq!(s.order, vec![e1, e2], "equal votes: the earlier request");

    // Request cap (3 pending) with a reason in words.
    h.ok(Command::Request {
        actor: zoe,
        track_id: free[2],
    })
    .await;
    h.ok(Command::Request {
        actor: zoe,
        track_id: free[3],
    })
    .await;
    let refused = h
        .call(Command::Request {
            actor: zoe,
            track_id: free[4],
        })
        .await;
    assert_eq!(
        refused.result,
        Err(HubError::Refused(Refusal::LimitReached { limit: 3 }))
    );
    assert_eq!(
        refused.result.unwrap_err().to_string(),
        "you already have 3 songs waiting"
    );
    // The playing track is refused; an unknown track is not found.
    let r = h
        .call(Command::Request {
            actor: sam,
            track_id: np.track.id,
        })
        .await;
    assert_eq!(r.result, Err(HubError::Refused(Refusal::PlayingNow)));
    let r = h
        .call(Command::Request {
            actor: sam,
            track_id: TrackId::new(999_999),
        })
        .await;
    assert_eq!(r.result.unwrap_err().code(), "not_found");

    // Likes: one per guest per play, idempotent, stale ids refused, the requester told.
    h.ok(Command::Like {
        actor: mia,
        play_id: np.play_id,
        on: true,
    })
    .await;
    h.ok(Command::Like {
        actor: mia,
        play_id: np.play_id,
        on: true,
    })
    .await;
    h.ok(Command::Like {
        actor: sam,
        play_id: np.play_id,
        on: true,
    })
    .await;
    assert_eq!(h.snapshot().await.now_playing.unwrap().likes, 2);
    h.ok(Command::Like {
        actor: sam,
        play_id: np.play_id,
        on: false,
    })
    .await;
    assert_eq!(h.snapshot().await.now_playing.unwrap().likes, 1);
    let stale = h
        .call(Command::Like {
            actor: mia,
            play_id: PlayId::new(np.play_id.get() + 100),
            on: true,
        })
        .await;
    assert_eq!(stale.result, Err(HubError::StalePlay));

    // Skip: needed = max(2, ceil(50% of 3 connected)) = 2.
    let s = h.snapshot().await;
    assert_eq!(s.now_playing.as_ref().unwrap().skip_needed, 2);
    assert_eq!(s.room.guests_connected, 3);
    h.ok(Command::VoteSkip {
        actor: mia,
        play_id: np.play_id,
    })
    .await;
    h.ok(Command::VoteSkip {
        actor: mia,
        play_id: np.play_id,
    })
    .await;
    assert_eq!(
        h.snapshot().await.now_playing.unwrap().skip_votes,
        1,
        "one vote per guest"
    );
    h.ok(Command::VoteSkip {
        actor: sam,
        play_id: np.play_id,
    })
    .await;
    h.wait_for("Sam's skip vote, by id and name", |c| {
        matches!(c, Change::Event { event: Event::SkipVote { by, by_id, .. }, .. }
            if *by_id == sam.guest && by == "Sam")
    })
    .await;
    h.wait_for("skipped", |c| {
        matches!(
            c,
            Change::Event {
                event: Event::Skipped {
                    reason: SkipReason::Votes,
                    ..
                },
                ..
            }
        )
    })
    .await;
    let started = h
        .wait_for(
            "next track",
            |c| matches!(c, Change::NowPlaying(Some(n)) if n.play_id != np.play_id),
        )
        .await;
    let Change::NowPlaying(Some(next)) = &started.change else {
        unreachable!()
    };
    assert_eq!(next.entry_id, Some(e1), "the head of the queue plays next");
    assert_eq!(next.requested_by.as_deref(), Some("Mia"));
    h.wait_for("track_started with the requester's id", |c| {
        matches!(c, Change::Event { event: Event::TrackStarted { requested_by, requested_by_id, .. }, .. }
            if *requested_by_id == Some(mia.guest) && requested_by.as_deref() == Some("Mia"))
    })
    .await;
    // Zoë's entry became the head: she, and only she, is told her song is next.
    let next_ev = h
        .wait_for("your_request_next", |c| {
            matches!(
                c,
                Change::Event {
                    event: Event::YourRequestNext { .. },
                    ..
                }
            )
        })
        .await;
    let Change::Event {
        to,
        event: Event::YourRequestNext { entry_id, .. },
        ..
    } = &next_ev.change
    else {
        unreachable!()
    };
    assert_eq!((*to, *entry_id), (Some(zoe.guest), e2));
    let s = h.snapshot().await;
    assert!(!s.order.contains(&e1));
    // A late skip vote for the old play does not hit the new one.
    let late = h
        .call(Command::VoteSkip {
            actor: zoe,
            play_id: np.play_id,
        })
        .await;
    assert_eq!(late.result, Err(HubError::StalePlay));
    assert_eq!(h.snapshot().await.now_playing.unwrap().skip_votes, 0);

    // Liking Mia's song tells Mia.
    h.ok(Command::Like {
        actor: zoe,
        play_id: next.play_id,
        on: true,
    })
    .await;
    // Told with who liked it, by id as well as by name.
    h.wait_for("your_request_liked", |c| {
        matches!(c, Change::Event { to: Some(g), event: Event::YourRequestLiked { by, by_id, .. }, .. }
            if *g == mia.guest && *by_id == zoe.guest && by == "Zoë")
    })
    .await;

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_and_host_only_commands() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 6, 30.0);
    let mut h = TestHub::start(&dir.path().join("j.db"), &music, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();
    let lib = library(&h).await;
    let free: Vec<TrackId> = lib
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| *id != np.track.id)
        .collect();
    let host = h.host().await;
    let mia = h.guest("Mia").await;
    let troll = h.guest("Troll").await;

    // Guests cannot use host commands.
    for cmd in [
        Command::Skip {
            actor: mia,
            play_id: None,
        },
        Command::Pause { actor: mia },
        Command::SetVolume {
            actor: mia,
            volume: 10,
        },
        Command::Ban {
            actor: mia,
            guest: troll.guest,
            on: true,
        },
        Command::Announce {
            actor: mia,
            text: "hi".into(),
        },
    ] {
        assert_eq!(h.call(cmd).await.result, Err(HubError::Forbidden));
    }

    let (em, _) = requested(
        h.ok(Command::Request {
            actor: mia,
            track_id: free[0],
        })
        .await,
    );
    let (et, _) = requested(
        h.ok(Command::Request {
            actor: troll,
            track_id: free[1],
        })
        .await,
    );
    h.ok(Command::Vote {
        actor: troll,
        entry_id: em,
        on: true,
    })
    .await;
    h.ok(Command::VoteSkip {
        actor: troll,
        play_id: np.play_id,
    })
    .await;
    assert_eq!(
        h.snapshot()
            .await
            .queue
            .iter()
            .find(|e| e.id == em)
            .unwrap()
            .votes,
        2
    );

    // Ban: pending requests go, votes stop counting, actions are refused.
    h.ok(Command::Ban {
        actor: host,
        guest: troll.guest,
        on: true,
    })
    .await;
    let s = h.snapshot().await;
    assert_eq!(s.order, vec![em]);
    assert!(!s.queue.iter().any(|e| e.id == et));
    assert_eq!(s.queue[0].votes, 1);
    assert_eq!(s.now_playing.unwrap().skip_votes, 0);
    assert_eq!(s.room.guests_connected, 1, "a banned guest is not counted");
    let r = h
        .call(Command::Like {
            actor: troll,
            play_id: np.play_id,
            on: true,
        })
        .await;
    assert_eq!(r.result, Err(HubError::Banned));
    let r = h
        .call(Command::Request {
            actor: troll,
            track_id: free[2],
        })
        .await;
    assert_eq!(r.result.unwrap_err().code(), "forbidden");

    // Move and remove.
    let (e2, _) = requested(
        h.ok(Command::Request {
            actor: mia,
            track_id: free[2],
        })
        .await,
    );
    let (e3, _) = requested(
        h.ok(Command::Request {
            actor: mia,
            track_id: free[3],
        })
        .await,
    );
    assert_eq!(h.snapshot().await.order, vec![em, e2, e3]);
    h.ok(Command::Move {
        actor: host,
        entry_id: e3,
        to: 0,
    })
    .await;
    assert_eq!(h.snapshot().await.order, vec![e3, em, e2]);
    // Votes no longer move a pinned entry ahead of it.
    let sam = h.guest("Sam").await;
    h.ok(Command::Vote {
        actor: sam,
        entry_id: em,
        on: true,
    })
    .await;
    assert_eq!(h.snapshot().await.order, vec![e3, em, e2]);
    h.ok(Command::Remove {
        actor: host,
        entry_id: em,
    })
    .await;
    assert_eq!(h.snapshot().await.order, vec![e3, e2]);
    assert_eq!(
        h.call(Command::Remove {
            actor: host,
            entry_id: em
        })
        .await
        .result,
        Err(HubError::NotFound("entry"))
    );

    // Pause requests: guests are refused with a reason, the host is not.
    h.ok(Command::Settings {
        actor: host,
        patch: jukebox::hub::SettingsPatch {
            requests_paused: Some(true),
            ..Default::default()
        },
    })
    .await;
    let r = h
        .call(Command::Request {
            actor: sam,
            track_id: free[4],
        })
        .await;
    assert_eq!(r.result, Err(HubError::Refused(Refusal::RequestsPaused)));
    h.ok(Command::Request {
        actor: host,
        track_id: free[4],
    })
    .await;

    // Volume cap.
    h.ok(Command::Settings {
        actor: host,
        patch: jukebox::hub::SettingsPatch {
            max_volume: Some(50),
            ..Default::default()
        },
    })
    .await;
    let s = h.snapshot().await;
    assert_eq!(
        (s.room.settings.max_volume, s.room.settings.volume),
        (50, 50)
    );
    let r = h
        .call(Command::SetVolume {
            actor: host,
            volume: 80,
        })
        .await;
    assert_eq!(r.result.unwrap_err().code(), "bad_request");
    h.ok(Command::SetVolume {
        actor: host,
        volume: 30,
    })
    .await;
    assert_eq!(h.snapshot().await.now_playing.unwrap().volume, 30);
    let r = h
        .call(Command::Settings {
            actor: host,
            patch: jukebox::hub::SettingsPatch {
                skip_percent: Some(0),
                ..Default::default()
            },
        })
        .await;
    assert!(r.result.unwrap_err().to_string().contains("skip_percent"));

    // Pause / play / seek / skip by the host.
    h.ok(Command::Pause { actor: host }).await;
    let p1 = h.snapshot().await.now_playing.unwrap();
    assert!(p1.paused);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        h.snapshot().await.now_playing.unwrap().position_ms,
        p1.position_ms
    );
    h.ok(Command::Play { actor: host }).await;
    h.ok(Command::Seek {
        actor: host,
        position_ms: 20_000,
    })
    .await;
    assert!(h.snapshot().await.now_playing.unwrap().position_ms >= 20_000);
    h.ok(Command::Skip {
        actor: host,
        play_id: None,
    })
    .await;
    h.wait_for("host skip", |c| {
        matches!(
            c,
            Change::Event {
                event: Event::Skipped {
                    reason: SkipReason::Host,
                    ..
                },
                ..
            }
        )
    })
    .await;

    // A host message reaches everyone.
    h.ok(Command::Announce {
        actor: host,
        text: "Pizza is here!".into(),
    })
    .await;
    h.wait_for("host message", |c| {
        matches!(c, Change::Event { to: None, event: Event::HostMessage { text }, .. } if text == "Pizza is here!")
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_published_before_the_answer_in_one_gapless_order() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let mut h = TestHub::start(&dir.path().join("j.db"), &music, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();
    let mia = h.guest("Mia").await;
    let mut rx = h.hub.subscribe();
    let a = h
        .call(Command::Like {
            actor: mia,
            play_id: np.play_id,
            on: true,
        })
        .await;
    assert!(a.result.is_ok());
    // Everything the like caused has a seq at or below the answer's watermark.
    let mut seqs = Vec::new();
    let mut saw_like = false;
    while let Ok(p) = rx.try_recv() {
        seqs.push(p.seq);
        if matches!(&p.change, Change::NowPlaying(Some(n)) if n.likes == 1) {
            assert!(p.seq <= a.after_seq);
            saw_like = true;
        }
    }
    assert!(
        saw_like,
        "the like's update was published before the answer"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps: {seqs:?}"
    );
    // A snapshot is consistent with the stream: its watermark is the last seq published.
    let snap = h
        .call(Command::Snapshot {
            guest: Some(mia.guest),
            admin: false,
        })
        .await;
    assert_eq!(snap.after_seq, h.hub.last_seq());
    let Ok(Reply::Snapshot(s)) = snap.result else {
        panic!()
    };
    assert_eq!(s.me.unwrap().liked, vec![np.play_id]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_everything_and_resumes_the_music() {
    let dir = common::tempdir();
    let db = dir.path().join("j.db");
    let music = common::music(dir.path(), 5, 30.0);
    let host_settings = Settings {
        request_limit: 5,
        ..Settings::default()
    };
    let mut h = TestHub::start(&db, &music, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();
    let lib = library(&h).await;
    let free: Vec<TrackId> = lib
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| *id != np.track.id)
        .collect();
    let host = h.host().await;
    let token = h.new_guest("Mia").await;
    // Only a guest with a live socket takes part.
    let mia = h.connect(&token).await;
    let sam = h.guest("Sam").await;
    let (e1, _) = requested(
        h.ok(Command::Request {
            actor: mia,
            track_id: free[0],
        })
        .await,
    );
    let (e2, _) = requested(
        h.ok(Command::Request {
            actor: sam,
            track_id: free[1],
        })
        .await,
    );
    h.ok(Command::Vote {
        actor: mia,
        entry_id: e2,
        on: true,
    })
    .await;
    h.ok(Command::Like {
        actor: mia,
        play_id: np.play_id,
        on: true,
    })
    .await;
    h.ok(Command::VoteSkip {
        actor: sam,
        play_id: np.play_id,
    })
    .await;
    h.ok(Command::Settings {
        actor: host,
        patch: jukebox::hub::SettingsPatch {
            request_limit: Some(host_settings.request_limit),
            ..Default::default()
        },
    })
    .await;
    h.ok(Command::Ban {
        actor: host,
        guest: sam.guest,
        on: true,
    })
    .await;
    // Played for a while (bounded): the restart must resume near where it stopped.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let before = loop {
        let s = h.snapshot().await;
        if s.now_playing
            .as_ref()
            .is_some_and(|n| n.position_ms >= 1500)
        {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the music does not move"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    h.stop().await;

    let mut h = TestHub::start(&db, &music, Settings::default()).await;
    let after = h.playing().await;
    let now = after.now_playing.clone().unwrap();
    assert_eq!(now.play_id, np.play_id, "the same play resumes");
    assert!(
        now.position_ms >= 1000,
        "close to where it was: {}",
        now.position_ms
    );
    assert_eq!(now.likes, 1);
    assert_eq!(after.order, before.order);
    assert_eq!(after.order, vec![e1]);
    assert_eq!(after.queue, before.queue);
    assert_eq!(
        after.room.settings.request_limit, 5,
        "host settings survive"
    );
    // Tokens survive: Mia is still Mia.
    match h
        .ok(Command::Authenticate {
            token: token.token.clone(),
        })
        .await
    {
        Reply::Identity(Some(id)) => {
            assert_eq!((id.guest_id, id.name.as_str()), (mia.guest, "Mia"))
        }
        other => panic!("{other:?}"),
    }
    match h
        .ok(Command::Authenticate {
            token: "forged".into(),
        })
        .await
    {
        Reply::Identity(None) => {}
        other => panic!("{other:?}"),
    }
    let banned = after
        .guests
        .iter()
        .find(|g| g.guest_id == sam.guest)
        .unwrap();
    assert!(banned.banned);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_library_waits_quietly_and_plays_once_music_arrives() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let mut h = TestHub::start(&dir.path().join("j.db"), &music, Settings::default()).await;
    h.wait_for(
        "scan done",
        |c| matches!(c, Change::Room(r) if r.scan.is_some_and(|s| s.done)),
    )
    .await;
    let s = h.snapshot().await;
    assert!(s.now_playing.is_none());
    assert_eq!(s.room.library_size, 0);
    let host = h.host().await;
    common::tone(&music, "late.flac", 440, 30.0, &[("title", "Late Arrival")]);
    h.ok(Command::Rescan { actor: host }).await;
    let s = h.playing().await;
    assert_eq!(s.now_playing.unwrap().track.title, "Late Arrival");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplayable_track_is_skipped_with_an_event_and_the_music_goes_on() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 4, 30.0);
    let mut h = TestHub::start(&dir.path().join("j.db"), &music, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();
    let host = h.host().await;
    let mia = h.guest("Mia").await;
    let victim = h
        .store
        .read(|db| db.search("", 10, 0))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id != np.track.id)
        .unwrap();
    let (entry, _) = requested(
        h.ok(Command::Request {
            actor: mia,
            track_id: victim.id,
        })
        .await,
    );
    // The file disappears after the scan (a USB stick pulled out, say).
    std::fs::remove_file(&victim.path).unwrap();
    h.ok(Command::Skip {
        actor: host,
        play_id: None,
    })
    .await;
    let ev = h
        .wait_for("unplayable", |c| {
            matches!(
                c,
                Change::Event {
                    event: Event::Skipped {
                        reason: SkipReason::Unplayable,
                        ..
                    },
                    ..
                }
            )
        })
        .await;
    let Change::Event {
        event: Event::Skipped { track_id, .. },
        ..
    } = &ev.change
    else {
        unreachable!()
    };
    assert_eq!(*track_id, victim.id);
    let s = h.playing().await;
    let now = s.now_playing.unwrap();
    assert_ne!(now.track.id, victim.id);
    assert_ne!(now.play_id, np.play_id, "something else plays");
    assert!(!s.order.contains(&entry), "the broken entry left the queue");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_leaving_lower_the_skip_threshold_and_can_complete_a_skip() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let settings = Settings {
        skip_min_votes: 1,
        skip_percent: 50,
        ..Settings::default()
    };
    let mut h = TestHub::start(&dir.path().join("j.db"), &music, settings).await;
    let np = h.playing().await.now_playing.unwrap();
    let a_token = h.new_guest("A").await;
    let a = h.connect(&a_token).await;
    let b = h.guest("B").await;
    let c = h.guest("C").await;
    let _d = h.guest("D").await;
    // A second tab of the same guest does not count twice.
    h.connect(&a_token).await;
    let s = h.snapshot().await;
    assert_eq!(s.room.guests_connected, 4);
    assert_eq!(s.now_playing.unwrap().skip_needed, 2);
    h.ok(Command::VoteSkip {
        actor: a,
        play_id: np.play_id,
    })
    .await;
    assert_eq!(h.snapshot().await.now_playing.unwrap().play_id, np.play_id);
    // B and C leave: 2 connected, 1 vote needed, A's vote is enough.
    h.disconnect(b.guest);
    h.disconnect(c.guest);
    h.wait_for("skip by votes", |ch| {
        matches!(
            ch,
            Change::Event {
                event: Event::Skipped {
                    reason: SkipReason::Votes,
                    ..
                },
                ..
            }
        )
    })
    .await;
    let s = h.playing().await;
    assert_ne!(s.now_playing.unwrap().play_id, np.play_id);
    assert_eq!(s.room.guests_connected, 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_bans_by_address_the_per_address_cap_and_screens() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let mut h = TestHub::start(&dir.path().join("j.db"), &music, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();
    let host = h.host().await;
    let laptop: std::net::IpAddr = "10.0.0.9".parse().unwrap();
    let new_guest = |name: &str| Command::NewGuest {
        name: Some(name.into()),
        addr: laptop,
    };
    let mut tokens = Vec::new();
    for i in 0..5 {
        match h.ok(new_guest(&format!("p{i}"))).await {
            Reply::Guest(g) => tokens.push(g),
            other => panic!("{other:?}"),
        }
    }
    // Five sockets racing from one address: exactly four guests get in.
    let hub = h.hub.clone();
    let tasks: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (hub, token) = (hub.clone(), t.token.clone());
            tokio::spawn(async move {
                hub.call(Command::Connect {
                    token,
                    addr: Some(laptop),
                })
                .await
                .result
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Reply::Identity(Some(_))) => {}
            Err(HubError::TooManyGuests(4)) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 1);

    // A ban of one covers the address: no new token there, the others seen there are banned.
    h.ok(Command::Ban {
        actor: host,
        guest: tokens[0].guest_id,
        on: true,
    })
    .await;
    assert_eq!(
        h.call(new_guest("again")).await.result,
        Err(HubError::AddressBanned)
    );
    let other = jukebox::hub::Actor {
        guest: tokens[1].guest_id,
        host: false,
    };
    let liked = h
        .call(Command::Like {
            actor: other,
            play_id: np.play_id,
            on: true,
        })
        .await
        .result;
    assert!(matches!(liked, Err(HubError::AddressBanned)), "{liked:?}");
    assert_eq!(h.snapshot().await.room.guests_connected, 0);

    // A screen: only the host pairs it, once; it never votes and is not in the room.
    let Reply::Pairing { code, claim, .. } = h.ok(Command::StartPairing).await else {
        panic!()
    };
    assert!(matches!(
        h.ok(Command::ClaimScreen {
            claim: claim.clone()
        })
        .await,
        Reply::PairingPending
    ));
    let guest_actor = jukebox::hub::Actor {
        guest: tokens[2].guest_id,
        host: false,
    };
    assert_eq!(
        h.call(Command::PairScreen {
            actor: guest_actor,
            code: code.clone()
        })
        .await
        .result,
        Err(HubError::Forbidden)
    );
    h.ok(Command::PairScreen {
        actor: host,
        code: code.clone(),
    })
    .await;
    let Reply::Guest(screen) = h
        .ok(Command::ClaimScreen {
            claim: claim.clone(),
        })
        .await
    else {
        panic!()
    };
    assert!(h.call(Command::ClaimScreen { claim }).await.result.is_err());
    assert!(h
        .call(Command::PairScreen { actor: host, code })
        .await
        .result
        .is_err());
    let Ok(Reply::Identity(Some(id))) = h
        .call(Command::Connect {
            token: screen.token.clone(),
            addr: Some("10.0.0.50".parse().unwrap()),
        })
        .await
        .result
    else {
        panic!()
    };
    assert_eq!(id.role, jukebox::hub::Role::Screen);
    let tv = jukebox::hub::Actor {
        guest: screen.guest_id,
        host: false,
    };
    assert_eq!(
        h.call(Command::VoteSkip {
            actor: tv,
            play_id: np.play_id
        })
        .await
        .result,
        Err(HubError::Screen)
    );
    assert_eq!(h.snapshot().await.room.guests_connected, 0);
    h.stop().await;
}
