//! The deck's rules, each checked the way it could break.

use std::path::PathBuf;

use super::*;

// The tests spell ids as plain numbers; the deck sees them typed.
fn e(id: i64) -> EntryId {
    EntryId::new(id)
}

fn track(id: i64) -> Track {
    Track {
        id: TrackId::new(id),
        path: PathBuf::from(format!("/music/{id}.flac")),
        title: format!("Song {id}"),
        artist: format!("Artist {id}"),
        album: String::new(),
        track_no: None,
        duration_ms: 180_000,
        has_art: false,
        present: true,
        likes: 0,
        levels: Default::default(),
    }
}

fn now(key: Key, t: i64) -> Now {
    Now {
        play_id: PlayId::new(t * 10),
        key,
        track: track(t),
        entry_id: None,
        requester: None,
        dedication: None,
        auto: true,
        position_ms: 0,
        position_at_ms: 1_000,
        heard_from_ms: 0,
        paused: false,
        likes: HashSet::new(),
        skip_votes: HashSet::new(),
        like_announced: HashSet::new(),
        last_saved_ms: 0,
    }
}

fn key_of(cmd: &PlayerCommand) -> Key {
    match cmd {
        PlayerCommand::Load(i) | PlayerCommand::Preload(Some(i)) => i.key,
        other => panic!("no key in {other:?}"),
    }
}

/// Loads `t`, and lets it start.
fn playing(deck: &mut Deck, t: i64) -> Key {
    let key = key_of(&deck.load(Planned::Auto(track(t))));
    let Started::Planned(p) = deck.on_started(key) else {
        panic!("not started")
    };
    assert_eq!(p.track().id, TrackId::new(t));
    deck.begin();
    deck.set_now(now(key, t));
    key
}

#[test]
fn events_about_keys_before_the_latest_load_are_stale() {
    let mut deck = Deck::default();
    let old = key_of(&deck.load(Planned::Auto(track(1))));
    let new = key_of(&deck.load(Planned::Entry(e(7), track(2))));
    assert!(new > old);
    assert!(matches!(deck.on_started(old), Started::Stale));
    assert!(deck.on_error(old).is_none(), "an old error changes nothing");
    assert!(deck.busy(), "still loading the new one");
    match deck.on_started(new) {
        Started::Planned(Planned::Entry(id, t)) if id == e(7) => assert_eq!(t.id.get(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_load_forgets_what_was_preloaded() {
    let mut deck = Deck::default();
    playing(&mut deck, 1);
    let pre = key_of(&deck.preload(Some(Planned::Auto(track(2)))).unwrap());
    deck.load(Planned::Auto(track(3)));
    // The player dropped its "next" with the Load: a late Started of it is stale.
    assert!(matches!(deck.on_started(pre), Started::Stale));
}

#[test]
fn finished_with_a_next_after_the_latest_load_is_a_gapless_hand_over() {
    let mut deck = Deck::default();
    let first = playing(&mut deck, 1);
    let pre = key_of(&deck.preload(Some(Planned::Entry(e(5), track(2)))).unwrap());
    let f = deck
        .on_finished(first, Some(pre))
        .expect("the play going on finished");
    assert_eq!(f.play.track.id.get(), 1);
    assert!(f.gapless, "the player went on to the preloaded item");
    assert!(
        deck.busy(),
        "loading the hand-over: nothing else may be loaded"
    );
    match deck.on_started(pre) {
        Started::Planned(Planned::Entry(id, _)) if id == e(5) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn finished_with_a_next_from_before_the_latest_load_is_not_a_hand_over() {
    let mut deck = Deck::default();
    playing(&mut deck, 1);
    let pre = key_of(&deck.preload(Some(Planned::Auto(track(2)))).unwrap());
    // The host skipped: a Load superseded the preload, and that load started.
    let loaded = playing(&mut deck, 3);
    assert!(loaded > pre);
    let f = deck.on_finished(loaded, Some(pre)).unwrap();
    assert!(!f.gapless);
    assert!(!deck.busy(), "the hub must move on itself");
    assert!(
        deck.on_finished(loaded, None).is_none(),
        "only the play going on finishes"
    );
}

#[test]
fn finished_about_another_key_changes_nothing() {
    let mut deck = Deck::default();
    let k = playing(&mut deck, 1);
    assert!(deck.on_finished(k + 100, None).is_none());
    assert_eq!(deck.now().map(|n| n.key), Some(k));
}

#[test]
fn an_auto_pick_answering_an_older_request_is_dropped() {
    let mut deck = Deck::default();
    let asked = deck.ask_auto();
    assert!(!deck.wants_auto(), "one pick at a time");
    // Something started meanwhile: the pick excluded the wrong track.
    playing(&mut deck, 1);
    assert!(matches!(
        deck.on_auto_picked(asked, Some(track(1))),
        Picked::Stale
    ));
    assert!(deck.auto_next().is_none());
    let again = deck.ask_auto();
    let newer = deck.ask_auto();
    assert!(matches!(
        deck.on_auto_picked(again, Some(track(2))),
        Picked::Stale
    ));
    assert!(matches!(
        deck.on_auto_picked(newer, Some(track(2))),
        Picked::Kept
    ));
    assert_eq!(deck.auto_next().map(|t| t.id.get()), Some(2));
    assert!(deck.wants_auto());
}

#[test]
fn an_auto_pick_with_nothing_playing_is_loaded_and_advance_uses_a_kept_one() {
    let mut deck = Deck::default();
    let g = deck.ask_auto();
    match deck.on_auto_picked(g, Some(track(4))) {
        Picked::Load(PlayerCommand::Load(item)) => assert_eq!(item.path, track(4).path),
        other => panic!("{other:?}"),
    }
    let mut deck = Deck::default();
    let g = deck.ask_auto();
    assert!(matches!(deck.on_auto_picked(g, None), Picked::Empty));

    let mut deck = Deck::default();
    let k = playing(&mut deck, 1);
    let g = deck.ask_auto();
    deck.on_auto_picked(g, Some(track(2)));
    deck.on_finished(k, None);
    match deck.advance(None) {
        Advance::Load(PlayerCommand::Load(item)) => assert_eq!(item.path, track(2).path),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_error_of_the_preloaded_item_does_not_stop_the_play_going_on() {
    let mut deck = Deck::default();
    playing(&mut deck, 1);
    let pre = key_of(&deck.preload(Some(Planned::Auto(track(2)))).unwrap());
    let f = deck.on_error(pre).unwrap();
    assert!(!f.move_on);
    assert!(deck.unplayable().contains(&TrackId::new(2)));
    assert!(deck.on_error(pre).is_none(), "reported once");
    // The same track is preloaded again only as a new item.
    assert!(deck.preload(Some(Planned::Auto(track(3)))).is_some());
}

#[test]
fn an_error_of_the_loading_item_moves_on() {
    let mut deck = Deck::default();
    let k = key_of(&deck.load(Planned::Entry(e(3), track(9))));
    let f = deck.on_error(k).unwrap();
    assert!(f.move_on);
    assert!(matches!(f.planned, Planned::Entry(id, _) if id == e(3)));
    assert!(!deck.busy());
    assert!(deck.unplayable().contains(&TrackId::new(9)));
}

#[test]
fn advance_stops_and_announces_idle_once() {
    let mut deck = Deck::default();
    let Advance::Nothing {
        stop: Some(PlayerCommand::Stop),
        announce_idle: true,
    } = deck.advance(None)
    else {
        panic!()
    };
    let Advance::Nothing {
        announce_idle: false,
        ..
    } = deck.advance(None)
    else {
        panic!()
    };
    playing(&mut deck, 1);
    let Advance::Nothing {
        stop: None,
        announce_idle: false,
    } = deck.advance(None)
    else {
        panic!("something plays: no stop")
    };
    deck.skip();
    let Advance::Nothing {
        announce_idle: true,
        ..
    } = deck.advance(None)
    else {
        panic!("idle again after a play")
    };
}

#[test]
fn preload_is_sent_only_when_the_next_item_changes() {
    let mut deck = Deck::default();
    playing(&mut deck, 1);
    assert!(deck.preload(None).is_none());
    assert!(deck.preload(Some(Planned::Entry(e(1), track(2)))).is_some());
    assert!(deck.preload(Some(Planned::Entry(e(1), track(2)))).is_none());
    assert!(deck.preload(Some(Planned::Entry(e(2), track(2)))).is_some());
    assert!(matches!(
        deck.preload(None),
        Some(PlayerCommand::Preload(None))
    ));
}

#[test]
fn a_resume_restores_the_paused_play_once() {
    let open = OpenPlay {
        id: PlayId::new(42),
        track_id: TrackId::new(1),
        request_id: None,
        guest_id: None,
        dedication: None,
        started_ms: 0,
        position_ms: 61_000,
        likes: vec![GuestId::new(3)],
        skip_votes: vec![],
    };
    let mut deck = Deck::default();
    deck.restore(open, track(1), Some(PlayId::new(42)));
    match deck.resume() {
        Some(PlayerCommand::Load(item)) => assert_eq!(item.start_ms, 61_000),
        other => panic!("{other:?}"),
    }
    assert!(deck.resume().is_none(), "loaded once");
    assert!(deck.resumes_paused(PlayId::new(42)));
    assert!(!deck.resumes_paused(PlayId::new(42)));
}

#[test]
fn position_runs_with_the_clock_and_stands_still_while_paused() {
    let mut n = now(1, 1);
    assert_eq!(n.position(1_000), 0);
    assert_eq!(n.position(3_500), 2_500);
    assert_eq!(n.position(500), 0, "a clock step back is not a rewind");
    assert_eq!(n.position(10_000_000), 180_000, "never past the end");
    assert_eq!(n.pause(4_000), Some(3_000));
    assert_eq!(n.pause(5_000), None);
    assert_eq!(n.position(60_000), 3_000);
    assert!(n.resume(60_000));
    assert_eq!(n.position(61_000), 4_000);
    assert_eq!(n.seek(999_999, 61_000), 179_999);
}

#[test]
fn positions_are_saved_every_few_seconds_of_play() {
    let mut deck = Deck::default();
    let k = playing(&mut deck, 1);
    assert_eq!(deck.on_position(k, 1_000, 2_000), None);
    assert_eq!(
        deck.on_position(k, 5_000, 6_000),
        Some((PlayId::new(10), 5_000))
    );
    assert_eq!(deck.on_position(k, 6_000, 7_000), None);
    assert_eq!(
        deck.on_position(k + 1, 20_000, 7_000),
        None,
        "not this play"
    );
    assert_eq!(deck.now().unwrap().position(8_000), 7_000);
}

#[test]
fn a_report_that_reaches_a_paused_play_does_not_move_it() {
    let mut deck = Deck::default();
    let k = playing(&mut deck, 1);
    assert_eq!(deck.on_position(k, 1_000, 2_000), None);
    let paused_at = deck.now.as_mut().unwrap().pause(2_100).unwrap();
    assert_eq!(paused_at, 1_100);
    // The player had written on before it took the pause in.
    assert_eq!(
        deck.on_position(k, 9_000, 2_200),
        None,
        "nothing new to save"
    );
    assert_eq!(deck.now().unwrap().position(60_000), 1_100);
}

/// Track `id` of album "Live" (one folder), number `no`, measured at `lufs` (album: -10).
fn album_track(id: i64, no: u32, lufs: f32) -> Track {
    Track {
        path: PathBuf::from(format!("/music/live/{id}.flac")),
        album: "Live".into(),
        track_no: Some(no),
        levels: crate::loudness::Levels {
            track_lufs: Some(lufs),
            album_lufs: Some(-10.0),
            ..Default::default()
        },
        ..track(id)
    }
}

fn item(cmd: &PlayerCommand) -> &PlayItem {
    match cmd {
        PlayerCommand::Load(i) | PlayerCommand::Preload(Some(i)) => i,
        other => panic!("no item in {other:?}"),
    }
}

fn gains(cmds: &[PlayerCommand]) -> Vec<(Key, f32)> {
    cmds.iter()
        .map(|c| match c {
            PlayerCommand::SetGain { key, gain_db } => (*key, (*gain_db * 10.0).round() / 10.0),
            other => panic!("not a gain: {other:?}"),
        })
        .collect()
}

/// Plays `t` (loaded and started) with the deck's levelling.
fn start(deck: &mut Deck, t: Track) -> Key {
    let cmd = deck.load(Planned::Auto(t.clone()));
    let key = key_of(&cmd);
    let Started::Planned(_) = deck.on_started(key) else {
        panic!("not started")
    };
    deck.begin();
    deck.set_now(Now {
        track: t,
        ..now(key, 0)
    });
    key
}

#[test]
fn items_carry_their_gain_and_join() {
    let mut deck = Deck::default();
    // Target -14: a -8 LUFS track gets -6 dB; its album (-10 LUFS) -4 dB.
    let cmd = deck.load(Planned::Auto(album_track(1, 1, -8.0)));
    assert_eq!(
        item(&cmd).gain_db,
        -6.0,
        "auto, nothing before it: track gain"
    );
    assert_eq!(item(&cmd).join, Join::Mix);
    let mut deck = Deck::default();
    let k1 = start(&mut deck, album_track(1, 1, -8.0));
    // The next track of the album: gapless, album gain; and the play going on joins the run.
    let pre = deck
        .preload(Some(Planned::Auto(album_track(2, 2, -12.0))))
        .unwrap();
    assert_eq!(item(&pre).join, Join::Gapless);
    assert_eq!(item(&pre).gain_db, -4.0);
    let settle = deck
        .settle_now_gain()
        .expect("the run starts with this play");
    assert_eq!(gains(&[settle]), vec![(k1, -4.0)]);
    assert!(deck.settle_now_gain().is_none(), "only once a play");
    assert!(deck.now_gain().unwrap().album);
    // A track of another album instead: mixed, its own gain.
    let other = Track {
        levels: crate::loudness::Levels {
            track_lufs: Some(-20.0),
            ..Default::default()
        },
        ..track(3)
    };
    let pre = deck.preload(Some(Planned::Auto(other))).unwrap();
    assert_eq!(item(&pre).join, Join::Mix);
    assert_eq!(item(&pre).gain_db, 6.0);
    // One album, but not the next number: album gain, mixed.
    let pre = deck
        .preload(Some(Planned::Auto(album_track(4, 5, -9.0))))
        .unwrap();
    assert_eq!(item(&pre).join, Join::Mix);
    assert_eq!(item(&pre).gain_db, -4.0);
}

#[test]
fn new_settings_and_measurements_send_the_gains_that_change() {
    let mut deck = Deck::default();
    let k1 = start(&mut deck, album_track(1, 1, -8.0));
    let unmeasured = Track {
        album: "Other".into(),
        ..track(2)
    };
    let pre = key_of(&deck.preload(Some(Planned::Auto(unmeasured))).unwrap());
    assert!(deck.settle_now_gain().is_none(), "track gain stays");
    assert_eq!(deck.preloaded_track().map(|t| t.id), Some(TrackId::new(2)));
    let off = Levelling {
        mode: crate::party::Normalize::Off,
        target_lufs: -14.0,
    };
    let mut g = gains(&deck.set_levelling(off));
    g.sort_by_key(|(k, _)| *k);
    assert_eq!(g, vec![(k1, 0.0), (pre, 0.0)]);
    assert!(deck.set_levelling(off).is_empty(), "nothing changed");
    let track_mode = Levelling {
        mode: crate::party::Normalize::Track,
        target_lufs: -18.0,
    };
    let mut g = gains(&deck.set_levelling(track_mode));
    g.sort_by_key(|(k, _)| *k);
    // -18 - (-8) = -10; the unmeasured one uses the fallback (-11 LUFS): -7.
    assert_eq!(g, vec![(k1, -10.0), (pre, -7.0)]);
    // The pass measured the preloaded track just in time.
    let levels = crate::loudness::Levels {
        track_lufs: Some(-24.0),
        ..Default::default()
    };
    assert_eq!(
        gains(&deck.on_measured(TrackId::new(2), levels)),
        vec![(pre, 6.0)]
    );
    assert!(deck.on_measured(TrackId::new(99), levels).is_empty());
    assert_eq!(
        deck.now_gain().unwrap().gain.source,
        crate::loudness::GainSource::Measured
    );
}

#[test]
fn the_heard_position_is_behind_by_the_latency_never_before_the_start() {
    // Started (or sought, or resumed) at 2 s, at wall-clock 1 s.
    let mut n = now(1, 1);
    n.position_ms = 2_000;
    n.heard_from_ms = 2_000;
    assert_eq!(n.heard_position(1_000, 150), 2_000, "just started");
    assert_eq!(n.heard_position(1_100, 150), 2_000, "not heard yet");
    assert_eq!(n.heard_position(3_000, 150), 3_850);
    assert_eq!(n.heard_position(3_000, 0), 4_000);
    // A seek to 20 s is heard at 20 s, never before it.
    n.seek(20_000, 3_000);
    assert_eq!(n.heard_position(3_000, 150), 20_000);
    assert_eq!(n.heard_position(4_000, 150), 20_850);
    // Paused: where it stopped.
    n.pause(5_000);
    assert_eq!(n.heard_position(9_000, 150), n.position_ms);
}

#[test]
fn the_players_position_reports_keep_the_heard_position_behind_by_the_latency() {
    // Started at 0 at wall-clock 1 s, a latency of 1.2 s (a snapserver's buffer).
    let mut deck = Deck::default();
    let key = playing(&mut deck, 1);
    let n = deck.now.as_mut().unwrap();
    n.position_at_ms = 1_000;
    // The player says where it writes, a second on (its lead puts it a little ahead).
    let _ = deck.on_position(key, 1_100, 2_000);
    let n = deck.now.as_ref().unwrap();
    assert_eq!(n.heard_position(2_000, 1_200), 0, "not heard yet");
    assert_eq!(n.heard_position(2_500, 1_200), 400);
    assert_eq!(n.heard_position(4_000, 1_200), 1_900);
}
