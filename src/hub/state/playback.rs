//! Playback: what plays next (the queue's head, else the auto-DJ), the player's events, and
//! a play starting and ending. The [`Deck`](crate::hub::deck::Deck) decides what the player
//! is told; this side records it, announces it and keeps the party's books.

use std::collections::HashSet;

use rand::Rng;

use super::{Internal, State};
use crate::hub::deck::{Advance, Now, Planned, Started};
use crate::hub::loaded::RECENT_KEEP;
use crate::hub::views::*;
use crate::hub::{Reply, PARTY_GAP_MS};
use crate::loudness::Levels;
use crate::party::{self, RecentPlay, TrackId};
use crate::player::{Key, PlayerEvent};
use crate::store::{PlayEnd, RequestState};

/// Tracks sampled from the library for each auto-DJ pick.
const AUTODJ_SAMPLE: u32 = 200;

impl State {
    /// When nothing plays or loads: resume the play that was going on (at start, or after a
    /// reload), or start the next one.
    pub(super) fn kick(&mut self, now_ms: i64) {
        if self.deck.busy() {
            return;
        }
        match self.deck.resume() {
            Some(cmd) => self.player(cmd),
            None => self.advance(now_ms),
        }
    }

    /// Ends the current play (if any) as skipped and moves on.
    pub(super) fn skip_now(&mut self, reason: SkipReason, now_ms: i64) {
        if let Some(n) = self.deck.skip() {
            let pos = n.position(now_ms);
            self.end_play(&n, PlayEnd::Skipped, pos, now_ms);
            let ev = Event::Skipped {
                play_id: Some(n.play_id),
                track_id: n.track.id,
                reason,
            };
            self.push_event(None, ev, now_ms);
        }
        self.advance(now_ms);
    }

    /// A play ended: it is written with how it ended, its history entry says so with its
    /// likes, and the guests who liked or skip-voted it get their (now empty) lists.
    fn end_play(&mut self, n: &Now, end: PlayEnd, position_ms: u64, now_ms: i64) {
        let id = n.play_id;
        self.op(move |db| db.end_play(id, now_ms, end, position_ms));
        let banned = self.guests.banned();
        let likes = n.likes.iter().filter(|g| !banned.contains(g)).count() as u32;
        let changed = self.history.ended(id, end, likes);
        self.push_history(changed);
        self.forget_play(&n.likes, &n.skip_votes);
    }

    /// Starts the next thing: the head of the queue, else an auto-DJ pick.
    pub(super) fn advance(&mut self, now_ms: i64) {
        match self.deck.advance(self.queue.head()) {
            Advance::Load(cmd) => self.player(cmd),
            Advance::Nothing {
                stop,
                announce_idle,
            } => {
                if self.deck.wants_auto() && self.library_size > 0 {
                    self.request_auto(now_ms);
                }
                if let Some(cmd) = stop {
                    self.player(cmd);
                }
                if announce_idle {
                    self.push_now(now_ms);
                }
            }
        }
    }

    /// Asks the store for an auto-DJ pick; it answers with `Internal::AutoPicked`.
    pub(super) fn request_auto(&mut self, now_ms: i64) {
        let generation = self.deck.ask_auto();
        let window = i64::from(self.settings.no_repeat_minutes) * 60_000;
        let mut exclude: Vec<TrackId> = self
            .recent
            .iter()
            .filter(|p| now_ms - p.started_ms < window)
            .map(|p| p.track_id)
            .collect();
        exclude.extend(self.queue.track_ids());
        let unplayable: HashSet<TrackId> = self.deck.unplayable().clone();
        exclude.extend(unplayable.iter().copied());
        let mut recent = self.recent.clone();
        if let Some(n) = self.deck.now() {
            exclude.push(n.track.id);
            if recent.first().map(|r| r.track_id) != Some(n.track.id) {
                recent.insert(
                    0,
                    RecentPlay {
                        track_id: n.track.id,
                        artist: n.track.artist.clone(),
                        started_ms: now_ms,
                    },
                );
            }
        }
        let settings = self.settings.clone();
        let rules = self.rules.clone();
        let internal = self.internal.clone();
        let _ = self.store.queue_read(move |db| {
            let pick = db
                .autodj_candidates(&exclude, AUTODJ_SAMPLE, &rules)
                .map(|c| {
                    let c: Vec<_> = c
                        .into_iter()
                        .filter(|c| !unplayable.contains(&c.track_id))
                        .collect();
                    let draw = rand::rng().random();
                    party::pick_autodj(&c, &recent, &settings, &rules, now_ms, draw)
                })
                .and_then(|id| match id {
                    Some(id) => db.track(id),
                    None => Ok(None),
                });
            let track = pick.unwrap_or_else(|e| {
                tracing::error!("auto-DJ could not read the library: {e}");
                None
            });
            let _ = internal.send(Internal::AutoPicked { generation, track });
        });
    }

    /// Keeps the player's gapless "next" equal to what would play next now.
    pub(super) fn refresh_preload(&mut self, now_ms: i64) {
        if self.deck.now().is_none() {
            return;
        }
        let next = match self.queue.head() {
            Some(p) => Some(p),
            None => match self.deck.auto_next() {
                Some(t) => Some(Planned::Auto(t.clone())),
                None => {
                    if self.deck.wants_auto() && self.library_size > 0 {
                        self.request_auto(now_ms);
                    }
                    None
                }
            },
        };
        if let Some(cmd) = self.deck.preload(next) {
            self.player(cmd);
        }
        if let Some(cmd) = self.deck.settle_now_gain() {
            self.player(cmd);
            self.push_sound();
        }
        self.measure_next_first();
    }

    /// The preloaded track has no measurement yet: the loudness pass measures it ahead of
    /// everything else, so that it plays levelled (its `SetGain` follows the measurement).
    /// The hub's copy of the track may be older than a measurement already stored (a request
    /// read from the store while the pass was writing), and then the pass has nothing to do:
    /// the stored levels are read back too, and arrive as a measurement would.
    fn measure_next_first(&self) {
        let (Some(t), Some(pass)) = (self.deck.preloaded_track(), &self.pass) else {
            return;
        };
        if t.levels.track_lufs.is_some() {
            return;
        }
        let id = t.id;
        pass.prioritize(id);
        let internal = self.internal.clone();
        let _ = self.store.queue_read(move |db| match db.track(id) {
            Ok(Some(t)) if t.levels.track_lufs.is_some() => {
                let _ = internal.send(Internal::Measured(id, t.levels));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("reading the levels of track {id}: {e}"),
        });
    }

    /// The loudness pass measured a track: every copy the hub holds takes its levels, and
    /// the gains of what plays and what is planned follow.
    pub(super) fn measured(&mut self, id: TrackId, levels: Levels) {
        self.queue.set_levels(id, levels);
        for cmd in self.deck.on_measured(id, levels) {
            self.player(cmd);
        }
        self.sound_dirty = true;
    }

    pub(super) fn on_player(&mut self, ev: PlayerEvent, now_ms: i64) {
        match ev {
            PlayerEvent::Started {
                key,
                duration_ms,
                position_ms,
            } => self.started(key, duration_ms, position_ms, now_ms),
            PlayerEvent::Position { key, position_ms } => {
                if let Some((id, pos)) = self.deck.on_position(key, position_ms, now_ms) {
                    self.op(move |db| db.save_position(id, pos));
                }
                // About once a second while playing: hosts see a new underrun soon.
                self.push_sound();
            }
            PlayerEvent::Finished { key, next } => {
                if let Some(f) = self.deck.on_finished(key, next) {
                    let pos = f.play.track.duration_ms;
                    self.end_play(&f.play, PlayEnd::Finished, pos, now_ms);
                    // Gapless: the player went on to the preloaded item; its Started follows.
                    if !f.gapless {
                        self.advance(now_ms);
                    }
                }
            }
            PlayerEvent::Error { key, message } => self.failed(key, &message, now_ms),
            PlayerEvent::Output { description, ok } => {
                let changed_ok = self.output.ok != ok;
                self.output = OutputView { description, ok };
                self.out.push(Change::Output(self.output.clone()));
                if changed_ok {
                    self.push_room();
                }
            }
        }
        self.finish(None, Ok(Reply::Done));
    }

    /// A planned item could not be opened: it is skipped with an event, and if nothing plays
    /// because of it, the music moves on.
    fn failed(&mut self, key: Key, message: &str, now_ms: i64) {
        let Some(f) = self.deck.on_error(key) else {
            return;
        };
        let track = f.planned.track().clone();
        tracing::warn!(
            "skipping unplayable track {}: {message}",
            track.path.display()
        );
        match &f.planned {
            Planned::Entry(id, _) => {
                if let Some(q) = self.remove_entry(*id, RequestState::Removed, now_ms) {
                    if let Some(g) = q.entry.guest {
                        self.push_me(g);
                    }
                }
                self.reorder(now_ms);
            }
            Planned::Resume(open, _) => {
                let id = open.id;
                self.op(move |db| db.end_play(id, now_ms, PlayEnd::Error, 0));
                let likes = self.history.get(id).map_or(0, |p| p.likes);
                let changed = self.history.ended(id, PlayEnd::Error, likes);
                self.push_history(changed);
            }
            Planned::Auto(_) => {}
        }
        let ev = Event::Skipped {
            play_id: None,
            track_id: track.id,
            reason: SkipReason::Unplayable,
        };
        self.push_event(None, ev, now_ms);
        if f.move_on {
            self.advance(now_ms);
        }
    }

    fn started(&mut self, key: Key, duration_ms: Option<u64>, start_ms: u64, now_ms: i64) {
        let p = match self.deck.on_started(key) {
            Started::Stale => return,
            Started::Unplanned => {
                // The player plays something no longer planned: take control again.
                tracing::warn!("the player started an item that is no longer planned; moving on");
                self.advance(now_ms);
                return;
            }
            Started::Planned(p) => p,
        };
        if let Planned::Entry(id, _) = &p {
            if !self.queue.contains(*id) {
                // Removed (or its guest banned) after it was preloaded: not played.
                tracing::info!("not playing entry {id}: it left the queue");
                self.deck.abandon_loading();
                self.advance(now_ms);
                return;
            }
        }
        if let Some(old) = self.deck.begin() {
            let pos = old.position(now_ms);
            self.end_play(&old, PlayEnd::Skipped, pos, now_ms);
        }
        let mut track = p.track().clone();
        if let Some(d) = duration_ms.filter(|d| *d > 0) {
            track.duration_ms = d;
        }
        let resumed = matches!(p, Planned::Resume(..));
        let (play_id, entry_id, requester, auto, position, likes, skips, dedication) = match p {
            Planned::Resume(open, _) => (
                open.id,
                open.request_id,
                open.guest_id,
                open.request_id.is_none(),
                start_ms,
                open.likes.iter().copied().collect(),
                open.skip_votes.iter().copied().collect(),
                open.dedication.clone(),
            ),
            Planned::Entry(id, _) => {
                let play_id = self.ids.next_play();
                let (requester, entry, dedication) =
                    match self.remove_entry(id, RequestState::Played, now_ms) {
                        Some(q) => (q.entry.guest, Some(id), q.entry.dedication),
                        None => (None, None, None),
                    };
                if let Some(g) = requester {
                    *self.played_tonight.entry(g).or_default() += 1;
                }
                let track_id = track.id;
                self.op(move |db| db.insert_play(play_id, track_id, entry, now_ms));
                let none = HashSet::new;
                (
                    play_id,
                    entry,
                    requester,
                    false,
                    0,
                    none(),
                    none(),
                    dedication,
                )
            }
            Planned::Auto(_) => {
                let play_id = self.ids.next_play();
                let track_id = track.id;
                self.op(move |db| db.insert_play(play_id, track_id, None, now_ms));
                let none = HashSet::new;
                (play_id, None, None, true, 0, none(), none(), None)
            }
        };
        self.remember_play(&track, resumed, now_ms);
        let changed = self.history.started(crate::store::PastPlay {
            play_id,
            track: track.clone(),
            requester,
            dedication: dedication.clone(),
            started_ms: now_ms,
            likes: likes.len() as u32,
            ended: None,
        });
        self.push_history(changed);
        tracing::info!(
            "playing: {} - {}{}",
            if track.artist.is_empty() {
                "?"
            } else {
                &track.artist
            },
            track.title,
            match requester {
                Some(g) => format!(" (requested by {})", self.guests.display_name(g)),
                None if resumed => " (resumed)".to_string(),
                None => " (auto-DJ)".to_string(),
            }
        );
        let ev = Event::TrackStarted {
            play_id,
            track_id: track.id,
            title: track.title.clone(),
            artist: track.artist.clone(),
            requested_by: requester.map(|g| self.guests.display_name(g)),
            requested_by_id: requester,
            requested_by_host: requester.is_some_and(|g| self.guests.is_host(g)),
            dedication: dedication.clone(),
        };
        // Paused by the host when the jukebox stopped: it stays paused until the host plays.
        let paused = resumed && self.deck.resumes_paused(play_id);
        if paused {
            self.player(crate::player::PlayerCommand::Pause);
        }
        self.deck.set_now(Now {
            play_id,
            key,
            track,
            entry_id,
            requester,
            dedication,
            auto,
            position_ms: position,
            position_at_ms: now_ms,
            heard_from_ms: position,
            paused,
            // A like announced before a restart is not announced again.
            like_announced: likes.clone(),
            likes,
            skip_votes: skips,
            last_saved_ms: position,
        });
        self.push_now(now_ms);
        self.push_sound();
        self.push_event(None, ev, now_ms);
        if let Some(g) = requester {
            self.push_me(g);
            self.push_guest(g);
        }
        self.reorder(now_ms);
        // A resumed play may already have enough skip votes for the guests connected now.
        self.check_skip(now_ms);
    }

    /// A play started at `now_ms`: a long break before it means a new party (fairness starts
    /// over), and it joins the recent plays the no-repeat and artist rules look at.
    fn remember_play(&mut self, track: &crate::store::Track, resumed: bool, now_ms: i64) {
        if self
            .recent
            .first()
            .is_some_and(|r| now_ms - r.started_ms >= PARTY_GAP_MS)
        {
            self.played_tonight.clear();
        }
        // A resumed play is already in the history read at start.
        if resumed {
            return;
        }
        self.recent.insert(
            0,
            RecentPlay {
                track_id: track.id,
                artist: track.artist.clone(),
                started_ms: now_ms,
            },
        );
        // Keep every play inside the no-repeat window, and a few more for artist spacing.
        let window = i64::from(self.settings.no_repeat_minutes) * 60_000;
        let mut i = 0;
        self.recent.retain(|r| {
            i += 1;
            i <= RECENT_KEEP || now_ms - r.started_ms < window
        });
    }
}
