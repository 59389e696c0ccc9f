//! The hub end to end, in process: real store (SQLite file), real library scan of real audio
//! files, real player thread on the paced null output. Every party rule is exercised through
//! the commands a websocket layer will send, and checked in the published change stream.

mod common;

use common::party::{db_of, empty_party, music_of, party};
use jukebox::hub::{Actor, Change, Command, Event, HubError, Reply, SettingsPatch, SkipReason};
use jukebox::party::{PlayId, Refusal, Settings, TrackId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_votes_likes_and_skips_follow_the_party_rules() {
    let (_dir, mut h) = party(6, 30.0, Settings::default()).await;
    let first = h.playing().await;
    let np = first.now_playing.clone().unwrap();
    assert!(np.auto, "an empty queue starts the auto-DJ");
    assert_eq!(h.library().await.len(), 6);

    let mia = h.guest("Mia").await;
    let sam = h.guest("Sam").await;
    let zoe = h.guest("Zoë").await;
    // Pick songs that are not playing, by artists not heard yet.
    let free: Vec<TrackId> = h.free_tracks(np.track.id).await;

    // A request, then the same track from another guest counts as an up-vote.
    let (e1, up) = h.request(mia, free[0]).await;
    assert!(!up);
    let (e1b, up) = h.request(sam, free[0]).await;
    assert_eq!((e1b, up), (e1, true));
    // Asking again is idempotent.
    h.request(sam, free[0]).await;
    let s = h.snapshot().await;
    assert_eq!(s.queue.len(), 1);
    assert_eq!(s.queue[0].votes, 2, "requester's own vote plus Sam's");
    assert_eq!(s.queue[0].by.as_deref(), Some("Mia"));

    // Order: Zoë's request with 1 vote goes after Mia's with 2, until two up-votes.
    let (e2, _) = h.request(zoe, free[1]).await;
    assert_eq!(h.order().await, vec![e1, e2]);
    h.vote(mia, e2, true).await;
    h.vote(sam, e2, true).await;
    assert_eq!(h.order().await, vec![e2, e1], "more votes plays sooner");
    h.vote(sam, e2, false).await;
    assert_eq!(
        h.order().await,
        vec![e1, e2],
        "equal votes: the earlier request"
    );

    // Request cap (3 pending) with a reason in words.
    h.request(zoe, free[2]).await;
    h.request(zoe, free[3]).await;
    let refused = h.try_request(zoe, free[4]).await;
    assert_eq!(
        refused,
        Err(HubError::Refused(Refusal::LimitReached { limit: 3 }))
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "you already have 3 songs waiting"
    );
    // The playing track is refused; an unknown track is not found.
    assert_eq!(
        h.try_request(sam, np.track.id).await,
        Err(HubError::Refused(Refusal::PlayingNow))
    );
    let unknown = h.try_request(sam, TrackId::new(999_999)).await;
    assert_eq!(unknown.unwrap_err().code(), "not_found");

    // Likes: one per guest per play, idempotent, stale ids refused, the requester told.
    h.like(mia, np.play_id, true).await;
    h.like(mia, np.play_id, true).await;
    h.like(sam, np.play_id, true).await;
    assert_eq!(h.now().await.likes, 2);
    h.like(sam, np.play_id, false).await;
    assert_eq!(h.now().await.likes, 1);
    assert_eq!(
        h.try_like(mia, PlayId::new(np.play_id.get() + 100), true)
            .await,
        Err(HubError::StalePlay)
    );

    // Skip: needed = max(2, ceil(50% of 3 connected)) = 2.
    let s = h.snapshot().await;
    assert_eq!(s.now_playing.as_ref().unwrap().skip_needed, 2);
    assert_eq!(s.room.guests_connected, 3);
    h.vote_skip(mia, np.play_id).await;
    h.vote_skip(mia, np.play_id).await;
    assert_eq!(h.now().await.skip_votes, 1, "one vote per guest");
    h.vote_skip(sam, np.play_id).await;
    h.wait_event(
        "Sam's skip vote, by id and name",
        |_, e| matches!(e, Event::SkipVote { by, by_id, .. } if *by_id == sam.guest && by == "Sam"),
    )
    .await;
    h.wait_skipped(SkipReason::Votes).await;
    let next = h.wait_next_play(np.play_id).await;
    assert_eq!(next.entry_id, Some(e1), "the head of the queue plays next");
    assert_eq!(next.requested_by.as_deref(), Some("Mia"));
    h.wait_event("track_started with the requester's id", |_, e| {
        matches!(e, Event::TrackStarted { requested_by, requested_by_id, .. }
            if *requested_by_id == Some(mia.guest) && requested_by.as_deref() == Some("Mia"))
    })
    .await;
    // Zoë's entry became the head: she, and only she, is told her song is next.
    let (to, next_ev) = h
        .wait_event("your_request_next", |_, e| {
            matches!(e, Event::YourRequestNext { .. })
        })
        .await;
    let Event::YourRequestNext { entry_id, .. } = next_ev else {
        unreachable!()
    };
    assert_eq!((to, entry_id), (Some(zoe.guest), e2));
    assert!(!h.order().await.contains(&e1));
    // A late skip vote for the old play does not hit the new one.
    assert_eq!(
        h.try_vote_skip(zoe, np.play_id).await,
        Err(HubError::StalePlay)
    );
    assert_eq!(h.now().await.skip_votes, 0);

    // Liking Mia's song tells Mia.
    h.like(zoe, next.play_id, true).await;
    // Told with who liked it, by id as well as by name.
    h.wait_event("your_request_liked", |to, e| {
        matches!(e, Event::YourRequestLiked { by, by_id, .. }
            if to == Some(mia.guest) && *by_id == zoe.guest && by == "Zoë")
    })
    .await;

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_and_host_only_commands() {
    let (_dir, mut h) = party(6, 30.0, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();
    let free = h.free_tracks(np.track.id).await;
    let host = h.host().await;
    let mia = h.guest("Mia").await;
    let troll = h.guest("Troll").await;

    // Guests cannot use host commands: they take a `Host`, and only a host actor has one.
    assert_eq!(mia.as_host(), None);
    assert_eq!(troll.as_host(), None);
    assert_eq!(host.as_host().map(|h| h.guest()), Some(host.guest));

    let (em, _) = h.request(mia, free[0]).await;
    let (et, _) = h.request(troll, free[1]).await;
    h.vote(troll, em, true).await;
    h.vote_skip(troll, np.play_id).await;
    let votes = |s: &jukebox::hub::Snapshot| s.queue.iter().find(|e| e.id == em).unwrap().votes;
    assert_eq!(votes(&h.snapshot().await), 2);

    // Ban: pending requests go, votes stop counting, actions are refused.
    h.ban(host, troll.guest).await;
    let s = h.snapshot().await;
    assert_eq!(s.order, vec![em]);
    assert!(!s.queue.iter().any(|e| e.id == et));
    assert_eq!(s.queue[0].votes, 1);
    assert_eq!(s.now_playing.unwrap().skip_votes, 0);
    assert_eq!(s.room.guests_connected, 1, "a banned guest is not counted");
    assert_eq!(
        h.try_like(troll, np.play_id, true).await,
        Err(HubError::Banned)
    );
    let r = h.try_request(troll, free[2]).await;
    assert_eq!(r.unwrap_err().code(), "forbidden");

    // Move and remove.
    let (e2, _) = h.request(mia, free[2]).await;
    let (e3, _) = h.request(mia, free[3]).await;
    assert_eq!(h.order().await, vec![em, e2, e3]);
    h.ok(Command::Move {
        host: host.as_host().unwrap(),
        entry_id: e3,
        to: 0,
    })
    .await;
    assert_eq!(h.order().await, vec![e3, em, e2]);
    // Votes no longer move a pinned entry ahead of it.
    let sam = h.guest("Sam").await;
    h.vote(sam, em, true).await;
    assert_eq!(h.order().await, vec![e3, em, e2]);
    let remove = || Command::Remove {
        host: host.as_host().expect("a host"),
        entry_id: em,
    };
    h.ok(remove()).await;
    assert_eq!(h.order().await, vec![e3, e2]);
    assert_eq!(
        h.call(remove()).await.result,
        Err(HubError::NotFound("entry"))
    );

    // Pause requests: guests are refused with a reason, the host is not.
    let paused = SettingsPatch {
        requests_paused: Some(true),
        ..Default::default()
    };
    h.settings(host, paused).await;
    assert_eq!(
        h.try_request(sam, free[4]).await,
        Err(HubError::Refused(Refusal::RequestsPaused))
    );
    h.request(host, free[4]).await;

    // Volume cap.
    let capped = SettingsPatch {
        max_volume: Some(50),
        ..Default::default()
    };
    h.settings(host, capped).await;
    let s = h.snapshot().await;
    assert_eq!(
        (s.room.settings.max_volume, s.room.settings.volume),
        (50, 50)
    );
    let volume = |volume| Command::SetVolume {
        host: host.as_host().expect("a host"),
        volume,
    };
    let r = h.call(volume(80)).await;
    assert_eq!(r.result.unwrap_err().code(), "bad_request");
    h.ok(volume(30)).await;
    assert_eq!(h.now().await.volume, 30);
    let no_skips = SettingsPatch {
        skip_percent: Some(0),
        ..Default::default()
    };
    let r = h.try_settings(host, no_skips).await;
    assert!(r.unwrap_err().to_string().contains("skip_percent"));

    // Pause / play / seek / skip by the host.
    h.ok(Command::Pause {
        host: host.as_host().expect("a host"),
    })
    .await;
    let p1 = h.now().await;
    assert!(p1.paused);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.now().await.position_ms, p1.position_ms);
    h.ok(Command::Play {
        host: host.as_host().expect("a host"),
    })
    .await;
    h.ok(Command::Seek {
        host: host.as_host().unwrap(),
        position_ms: 20_000,
    })
    .await;
    assert!(h.now().await.position_ms >= 20_000);
    h.host_skip(host).await;
    h.wait_skipped(SkipReason::Host).await;

    // A host message reaches everyone.
    h.ok(Command::Announce {
        host: host.as_host().unwrap(),
        text: "Pizza is here!".into(),
    })
    .await;
    h.wait_event("host message", |to, e| {
        to.is_none() && matches!(e, Event::HostMessage { text } if text == "Pizza is here!")
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_published_before_the_answer_in_one_gapless_order() {
    let (_dir, mut h) = party(3, 30.0, Settings::default()).await;
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
            history: false,
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
    let (dir, mut h) = party(5, 30.0, Settings::default()).await;
    let np = h.playing().await.now_playing.unwrap();
    let free = h.free_tracks(np.track.id).await;
    let host = h.host().await;
    let token = h.new_guest("Mia").await;
    // Only a guest with a live socket takes part.
    let mia = h.connect(&token).await;
    let sam = h.guest("Sam").await;
    let (e1, _) = h.request(mia, free[0]).await;
    let (e2, _) = h.request(sam, free[1]).await;
    h.vote(mia, e2, true).await;
    h.like(mia, np.play_id, true).await;
    h.vote_skip(sam, np.play_id).await;
    let host_limit = SettingsPatch {
        request_limit: Some(5),
        ..Default::default()
    };
    h.settings(host, host_limit).await;
    h.ban(host, sam.guest).await;
    // Played for a while (bounded): the restart must resume near where it stopped.
    let before = played_for(&h, 1500).await;

    let mut h = h.restart(&db_of(&dir), &music_of(&dir)).await;
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
    match authenticate(&h, &token.token).await {
        Reply::Identity(Some(id)) => {
            assert_eq!((id.guest_id, id.name.as_str()), (mia.guest, "Mia"))
        }
        other => panic!("{other:?}"),
    }
    match authenticate(&h, "forged").await {
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

/// Waits (bounded) until the music has played `ms` into the track; the snapshot then.
async fn played_for(h: &common::TestHub, ms: u64) -> jukebox::hub::Snapshot {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = h.snapshot().await;
        if s.now_playing.as_ref().is_some_and(|n| n.position_ms >= ms) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the music does not move"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn authenticate(h: &common::TestHub, token: &str) -> Reply {
    h.ok(Command::Authenticate {
        token: token.into(),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_library_waits_quietly_and_plays_once_music_arrives() {
    let (dir, mut h) = empty_party().await;
    // The state, not the change stream: the first scan of an empty folder can end before
    // this test subscribes.
    common::wait::wait_until(
        std::time::Duration::from_secs(20),
        "the first scan",
        || async { h.snapshot().await.room.scan.is_some_and(|s| s.done) },
    )
    .await;
    let s = h.snapshot().await;
    assert!(s.now_playing.is_none());
    assert_eq!(s.room.library_size, 0);
    let host = h.host().await;
    common::tone(
        &music_of(&dir),
        "late.flac",
        440,
        30.0,
        &[("title", "Late Arrival")],
    );
    h.ok(Command::Rescan {
        host: host.as_host().expect("a host"),
    })
    .await;
    let s = h.playing().await;
    assert_eq!(s.now_playing.unwrap().track.title, "Late Arrival");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplayable_track_is_skipped_with_an_event_and_the_music_goes_on() {
    let (_dir, mut h) = party(4, 30.0, Settings::default()).await;
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
    let (entry, _) = h.request(mia, victim.id).await;
    // The file disappears after the scan (a USB stick pulled out, say).
    std::fs::remove_file(&victim.path).unwrap();
    h.host_skip(host).await;
    let track_id = h.wait_skipped(SkipReason::Unplayable).await;
    assert_eq!(track_id, victim.id);
    let s = h.playing().await;
    let now = s.now_playing.unwrap();
    assert_ne!(now.track.id, victim.id);
    assert_ne!(now.play_id, np.play_id, "something else plays");
    assert!(!s.order.contains(&entry), "the broken entry left the queue");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_leaving_lower_the_skip_threshold_and_can_complete_a_skip() {
    let settings = Settings {
        skip_min_votes: 1,
        skip_percent: 50,
        ..Settings::default()
    };
    let (_dir, mut h) = party(3, 30.0, settings).await;
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
    h.vote_skip(a, np.play_id).await;
    assert_eq!(h.now().await.play_id, np.play_id);
    // B and C leave: 2 connected, 1 vote needed, A's vote is enough.
    h.disconnect(b.guest);
    h.disconnect(c.guest);
    h.wait_skipped(SkipReason::Votes).await;
    let s = h.playing().await;
    assert_ne!(s.now_playing.unwrap().play_id, np.play_id);
    assert_eq!(s.room.guests_connected, 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_bans_by_address_the_per_address_cap_and_screens() {
    let (_dir, mut h) = party(3, 30.0, Settings::default()).await;
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
    let tasks: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (hub, token) = (h.hub.clone(), t.token.clone());
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
    h.ban(host, tokens[0].guest_id).await;
    assert_eq!(
        h.call(new_guest("again")).await.result,
        Err(HubError::AddressBanned)
    );
    let liked = h
        .try_like(guest(tokens[1].guest_id), np.play_id, true)
        .await;
    assert!(matches!(liked, Err(HubError::AddressBanned)), "{liked:?}");
    assert_eq!(h.snapshot().await.room.guests_connected, 0);

    // A screen: only the host pairs it, once; it never votes and is not in the room.
    let Reply::Pairing { code, claim, .. } = h.ok(Command::StartPairing).await else {
        panic!()
    };
    let claim_screen = || Command::ClaimScreen {
        claim: claim.clone(),
    };
    let pair = |actor: Actor, code: &String| Command::PairScreen {
        host: actor.as_host().expect("a host"),
        code: code.clone(),
    };
    assert!(matches!(h.ok(claim_screen()).await, Reply::PairingPending));
    // A guest cannot even name the command: it takes a `Host`.
    assert_eq!(guest(tokens[2].guest_id).as_host(), None);
    h.ok(pair(host, &code)).await;
    let Reply::Guest(screen) = h.ok(claim_screen()).await else {
        panic!()
    };
    assert!(h.call(claim_screen()).await.result.is_err());
    assert!(h.call(pair(host, &code)).await.result.is_err());
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
    assert_eq!(
        h.try_vote_skip(guest(screen.guest_id), np.play_id).await,
        Err(HubError::Screen)
    );
    assert_eq!(h.snapshot().await.room.guests_connected, 0);
    h.stop().await;
}

/// A guest acting without a socket of this test's making.
fn guest(guest: jukebox::party::GuestId) -> Actor {
    Actor { guest, host: false }
}
