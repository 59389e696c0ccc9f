//! The deck: what the player was asked to play, what plays now, and what comes next. It is
//! the hub's half of the conversation with the player thread, and it does no I/O: its methods
//! change the plan and return the [`PlayerCommand`] to send (the hub sends it) and what
//! happened (the hub writes and announces it).
//!
//! Its rules, which used to live in `if`s scattered over the hub:
//! - Every `Load` and `Preload` gets a new, larger [`Key`]. A `Load` replaces everything the
//!   player had, so an event about a key below the latest `Load` is stale and changes nothing.
//! - `Finished { next }` with `next` above the latest `Load` means the player went on to the
//!   preloaded item without a gap: its `Started` (or `Error`) follows, so nothing is loaded.
//! - The auto-DJ picks in the background. Each request carries a generation; a pick that
//!   answers an older generation (a play started since, or a newer pick was asked for) is
//!   dropped.
//! - A track that failed to decode is not picked again by the auto-DJ this run.
//! - Every item gets its levelling gain and its join ([`super::sound`]): from the play before
//!   it, and, for the play going on, from the one planned after it when it starts. A new
//!   setting or a new measurement sends `SetGain` for what plays and what is planned.

use std::collections::{HashMap, HashSet};

use super::sound::{self, Levelling, PlayGain};
use crate::loudness::Levels;
use crate::party::{EntryId, GuestId, PlayId, TrackId};
use crate::player::{Join, Key, PlayItem, PlayerCommand};
use crate::store::{OpenPlay, Track};

/// How often the play position is saved, so a restart resumes close to where it was.
const SAVE_POSITION_EVERY_MS: u64 = 5_000;

/// What the player has been asked to play (by `Load` or `Preload`) and has not started yet.
#[derive(Debug, Clone)]
pub(crate) enum Planned {
    /// A queue entry.
    Entry(EntryId, Track),
    /// An auto-DJ pick.
    Auto(Track),
    /// The play that was going on when the jukebox stopped (or before a resync).
    Resume(Box<OpenPlay>, Track),
}

impl Planned {
    pub(crate) fn track(&self) -> &Track {
        match self {
            Planned::Entry(_, t) | Planned::Auto(t) | Planned::Resume(_, t) => t,
        }
    }

    fn track_mut(&mut self) -> &mut Track {
        match self {
            Planned::Entry(_, t) | Planned::Auto(t) | Planned::Resume(_, t) => t,
        }
    }

    /// The same item to preload (a preload is not repeated for it).
    fn same(&self, other: &Planned) -> bool {
        match (self, other) {
            (Planned::Entry(a, _), Planned::Entry(b, _)) => a == b,
            (Planned::Auto(a), Planned::Auto(b)) => a.id == b.id,
            _ => false,
        }
    }
}

/// The play going on.
#[derive(Debug)]
pub(crate) struct Now {
    pub play_id: PlayId,
    pub key: Key,
    pub track: Track,
    pub entry_id: Option<EntryId>,
    pub requester: Option<GuestId>,
    pub dedication: Option<String>,
    pub auto: bool,
    /// Where it was at `position_at_ms` (wall clock, ms).
    pub position_ms: u64,
    pub position_at_ms: i64,
    /// Where the listener's position starts from: the position of the last start, seek or
    /// resume. The player's reports of where it writes do not move it.
    pub heard_from_ms: u64,
    pub paused: bool,
    pub likes: HashSet<GuestId>,
    pub skip_votes: HashSet<GuestId>,
    /// Guests whose like of this play was already announced: un-liking and liking again
    /// changes the count but does not toast again.
    pub like_announced: HashSet<GuestId>,
    pub last_saved_ms: u64,
}

impl Now {
    /// Where the play is at `now_ms`: still while paused, never past the end.
    pub(crate) fn position(&self, now_ms: i64) -> u64 {
        if self.paused {
            self.position_ms
        } else {
            let ran = (now_ms - self.position_at_ms).max(0) as u64;
            (self.position_ms + ran).min(self.track.duration_ms.max(self.position_ms))
        }
    }

    /// Where the listener is at `now_ms`: `latency_ms` behind where the player writes
    /// (which its position reports keep `position` true to). What is written at a start,
    /// seek or resume is heard `latency_ms` later, so until then the position stands still
    /// there; a paused play is where it stopped.
    pub(crate) fn heard_position(&self, now_ms: i64, latency_ms: u64) -> u64 {
        if self.paused {
            return self.position_ms;
        }
        self.position(now_ms)
            .saturating_sub(latency_ms)
            .max(self.heard_from_ms)
    }

    /// Pauses at `now_ms`; returns the position, or `None` if it was paused already.
    pub(crate) fn pause(&mut self, now_ms: i64) -> Option<u64> {
        if self.paused {
            return None;
        }
        let pos = self.position(now_ms);
        self.paused = true;
        self.position_ms = pos;
        self.position_at_ms = now_ms;
        self.heard_from_ms = pos;
        Some(pos)
    }

    /// Resumes at `now_ms`; false if it was not paused.
    pub(crate) fn resume(&mut self, now_ms: i64) -> bool {
        if !self.paused {
            return false;
        }
        self.paused = false;
        self.position_at_ms = now_ms;
        self.heard_from_ms = self.position_ms;
        true
    }

    /// Seeks (short of the end); returns where it went.
    pub(crate) fn seek(&mut self, position_ms: u64, now_ms: i64) -> u64 {
        let pos = position_ms.min(self.track.duration_ms.saturating_sub(1));
        self.position_ms = pos;
        self.position_at_ms = now_ms;
        self.heard_from_ms = pos;
        pos
    }
}

/// The answer to a `Started` event.
#[derive(Debug)]
pub(crate) enum Started {
    /// About a key a later `Load` superseded: the player is about to start that one.
    Stale,
    /// The player plays something no longer planned: the deck forgot what it had (the play
    /// going on included); the hub should move on.
    Unplanned,
    /// This planned item started. The hub either plays it ([`Deck::begin`]) or, if it must
    /// not play after all, drops it ([`Deck::abandon_loading`]) and moves on.
    Planned(Planned),
}

/// The answer to a `Finished` event about the play going on.
#[derive(Debug)]
pub(crate) struct Finished {
    pub play: Now,
    /// The player went on to the preloaded item without a gap: its `Started` follows, so
    /// the hub must not load anything.
    pub gapless: bool,
}

/// The answer to an `Error` event about a planned item.
#[derive(Debug)]
pub(crate) struct Failed {
    pub planned: Planned,
    /// Nothing plays or loads any more because of it: the hub should move on.
    pub move_on: bool,
}

/// What [`Deck::advance`] decided.
#[derive(Debug)]
pub(crate) enum Advance {
    /// Load this (the queue's head, or the auto-DJ's pick).
    Load(PlayerCommand),
    /// Nothing to play yet. `stop` when nothing plays or loads any more; `announce_idle` the
    /// first time that happens since the last play started (the room sees "nothing playing").
    Nothing {
        stop: Option<PlayerCommand>,
        announce_idle: bool,
    },
}

/// What an auto-DJ pick leads to.
#[derive(Debug)]
pub(crate) enum Picked {
    /// It answers an older request: dropped.
    Stale,
    /// Nothing plays or loads: load it now.
    Load(PlayerCommand),
    /// Nothing plays, and the library had nothing to pick.
    Empty,
    /// Something plays: the pick waits as the next track (the hub refreshes the preload).
    Kept,
}

#[derive(Default)]
pub(crate) struct Deck {
    now: Option<Now>,
    /// The key of a `Load` (or a gapless hand-over) whose `Started` has not come yet.
    loading: Option<Key>,
    /// Everything sent to the player and not started yet, by key.
    planned: HashMap<Key, Planned>,
    /// The player's gapless "next".
    preloaded: Option<(Key, Planned)>,
    /// The key of the latest `Load`: events about older keys are stale.
    last_load: Key,
    next_key: Key,
    /// The auto-DJ's pick for when the queue is empty.
    auto_next: Option<Track>,
    auto_generation: u64,
    /// A pick was asked for and has not answered.
    auto_pending: bool,
    /// The last pick found nothing (the content rules leave nothing to play): no pick is
    /// asked for again until [`Deck::forget_auto_pick`] says something changed.
    auto_found_nothing: bool,
    /// The play to resume (found at start or after a reload), loaded by [`Deck::resume`].
    pending_resume: Option<Planned>,
    /// The play to resume paused: a party the host paused stays paused after a restart.
    resume_paused: Option<PlayId>,
    /// "Nothing playing" was announced since the last play started.
    idle_announced: bool,
    /// Tracks that failed to decode: not picked again by the auto-DJ this run.
    unplayable: HashSet<TrackId>,
    /// The party's levelling settings.
    levelling: Levelling,
    /// The gain each planned item was given, by key.
    gains: HashMap<Key, PlayGain>,
    /// The gain of the play going on.
    now_gain: Option<PlayGain>,
    /// The play going on has had its gain weighed against the one planned after it.
    now_gain_settled: bool,
    /// The track of the latest play that began (the play going on, while there is one).
    last_track: Option<Track>,
    /// The track of the play before the one going on.
    before_now: Option<Track>,
}

impl Deck {
    pub(crate) fn now(&self) -> Option<&Now> {
        self.now.as_ref()
    }

    pub(crate) fn now_mut(&mut self) -> Option<&mut Now> {
        self.now.as_mut()
    }

    /// Something plays or is being loaded: nothing new needs to start.
    pub(crate) fn busy(&self) -> bool {
        self.now.is_some() || self.loading.is_some()
    }

    pub(crate) fn unplayable(&self) -> &HashSet<TrackId> {
        &self.unplayable
    }

    pub(crate) fn auto_next(&self) -> Option<&Track> {
        self.auto_next.as_ref()
    }

    fn key(&mut self) -> Key {
        self.next_key += 1;
        self.next_key
    }

    /// The open play read from the store (at start or after a resync): the one going on gets
    /// its likes and votes back; when nothing plays or loads it is remembered to resume
    /// (paused if `paused_play` names it).
    pub(crate) fn restore(&mut self, open: OpenPlay, track: Track, paused_play: Option<PlayId>) {
        if let Some(now) = self.now.as_mut().filter(|n| n.play_id == open.id) {
            now.likes = open.likes.iter().copied().collect();
            now.skip_votes = open.skip_votes.iter().copied().collect();
        } else if !self.busy() {
            self.resume_paused = paused_play.filter(|id| *id == open.id);
            self.pending_resume = Some(Planned::Resume(Box::new(open), track));
        }
    }

    /// Loads the play to resume, if there is one and nothing plays or loads.
    pub(crate) fn resume(&mut self) -> Option<PlayerCommand> {
        if self.busy() {
            return None;
        }
        let p = self.pending_resume.take()?;
        if let Planned::Resume(open, track) = &p {
            tracing::info!(
                "resuming {} - {} at {} s",
                track.artist,
                track.title,
                open.position_ms / 1000
            );
        }
        Some(self.load(p))
    }

    /// Whether the play that just started was paused by the host when the jukebox stopped
    /// (asked once, for a resumed play).
    pub(crate) fn resumes_paused(&mut self, play_id: PlayId) -> bool {
        self.resume_paused.take() == Some(play_id)
    }

    /// The play a newly loaded track follows, for its gain: what plays, else what played last.
    fn before(&self) -> Option<&Track> {
        self.now
            .as_ref()
            .map(|n| &n.track)
            .or(self.last_track.as_ref())
    }

    /// Plays `p` now, replacing whatever plays; the player forgets its "next", and so does
    /// the deck: everything planned before is stale.
    pub(crate) fn load(&mut self, p: Planned) -> PlayerCommand {
        let key = self.key();
        let start_ms = match &p {
            Planned::Resume(open, _) => open.position_ms,
            _ => 0,
        };
        self.planned.clear();
        self.gains.clear();
        self.preloaded = None;
        let g = sound::gain(self.levelling, self.before(), p.track(), None);
        let item = PlayItem {
            key,
            path: p.track().path.clone(),
            start_ms,
            gain_db: g.gain.db,
            // A `Load` replaces what plays; it joins nothing.
            join: Join::Mix,
        };
        self.gains.insert(key, g);
        self.planned.insert(key, p);
        self.loading = Some(key);
        self.last_load = key;
        PlayerCommand::Load(item)
    }

    /// Makes the player's gapless "next" `next` (`None`: nothing). Returns the command only
    /// when that changes it.
    pub(crate) fn preload(&mut self, next: Option<Planned>) -> Option<PlayerCommand> {
        let same = match (&self.preloaded, &next) {
            (Some((_, a)), Some(b)) => a.same(b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return None;
        }
        Some(match next {
            Some(p) => {
                let key = self.key();
                let before = self.before();
                let g = sound::gain(self.levelling, before, p.track(), None);
                let item = PlayItem {
                    key,
                    path: p.track().path.clone(),
                    start_ms: 0,
                    gain_db: g.gain.db,
                    join: sound::join(before, p.track()),
                };
                self.gains.insert(key, g);
                self.planned.insert(key, p.clone());
                self.preloaded = Some((key, p));
                PlayerCommand::Preload(Some(item))
            }
            None => {
                self.preloaded = None;
                PlayerCommand::Preload(None)
            }
        })
    }

    /// Nothing left to play: the player stops and forgets its "next".
    pub(crate) fn stop(&mut self) -> PlayerCommand {
        self.planned.clear();
        self.gains.clear();
        self.preloaded = None;
        self.loading = None;
        PlayerCommand::Stop
    }

    /// Starts the next thing: `head` (the queue's first entry) if any, else the auto-DJ's
    /// pick, else nothing (and the player stops if nothing plays or loads).
    pub(crate) fn advance(&mut self, head: Option<Planned>) -> Advance {
        self.preloaded = None;
        if let Some(p) = head.or_else(|| self.auto_next.take().map(Planned::Auto)) {
            return Advance::Load(self.load(p));
        }
        if self.busy() {
            return Advance::Nothing {
                stop: None,
                announce_idle: false,
            };
        }
        let stop = self.stop();
        let announce_idle = !std::mem::replace(&mut self.idle_announced, true);
        Advance::Nothing {
            stop: Some(stop),
            announce_idle,
        }
    }

    /// Ends the play going on (skipped): it is handed back to be recorded.
    pub(crate) fn skip(&mut self) -> Option<Now> {
        self.loading = None;
        self.now.take()
    }

    pub(crate) fn on_started(&mut self, key: Key) -> Started {
        if key < self.last_load {
            return Started::Stale;
        }
        let Some(p) = self.planned.remove(&key) else {
            self.loading = None;
            self.now = None;
            return Started::Unplanned;
        };
        // Anything planned before this key is stale now.
        self.planned.retain(|k, _| *k > key);
        self.gains.retain(|k, _| *k >= key);
        if self.preloaded.as_ref().is_some_and(|(k, _)| *k <= key) {
            self.preloaded = None;
        }
        Started::Planned(p)
    }

    /// A started item that must not play (its entry left the queue after it was preloaded).
    pub(crate) fn abandon_loading(&mut self) {
        self.loading = None;
    }

    /// The started item plays: the play it replaces (if any) is handed back to be ended.
    /// Call [`Deck::set_now`] next.
    pub(crate) fn begin(&mut self) -> Option<Now> {
        self.loading = None;
        self.idle_announced = false;
        self.now.take()
    }

    /// The new play going on. Auto-DJ picks asked for before it are stale (they excluded
    /// the wrong "now playing").
    pub(crate) fn set_now(&mut self, now: Now) {
        self.auto_next = None;
        self.auto_pending = false;
        self.auto_generation += 1;
        self.before_now = self.last_track.replace(now.track.clone());
        let g = self.gains.remove(&now.key).unwrap_or_else(|| {
            sound::gain(self.levelling, self.before_now.as_ref(), &now.track, None)
        });
        self.now_gain = Some(g);
        self.now_gain_settled = false;
        self.now = Some(now);
    }

    /// The gain of the play going on.
    pub(crate) fn now_gain(&self) -> Option<PlayGain> {
        self.now.as_ref().and(self.now_gain)
    }

    /// Once the play going on has a planned successor, weighs its gain against it (`auto`:
    /// an album run that starts with this play takes the album's gain). Only once per play:
    /// a queue that changes later does not move the level of a song half-way through.
    pub(crate) fn settle_now_gain(&mut self) -> Option<PlayerCommand> {
        if self.now_gain_settled || self.preloaded.is_none() {
            return None;
        }
        self.now_gain_settled = true;
        let n = self.now.as_ref()?;
        let after = self.preloaded.as_ref().map(|(_, p)| p.track());
        let g = sound::gain(self.levelling, self.before_now.as_ref(), &n.track, after);
        if self.now_gain == Some(g) {
            return None;
        }
        self.now_gain = Some(g);
        Some(PlayerCommand::SetGain {
            key: n.key,
            gain_db: g.gain.db,
        })
    }

    /// New levelling settings: the gains of what plays and what is planned, where they change.
    pub(crate) fn set_levelling(&mut self, lv: Levelling) -> Vec<PlayerCommand> {
        self.levelling = lv;
        self.regain()
    }

    /// A track was measured: every copy of it the deck holds takes its levels, and the gains
    /// that change are sent.
    pub(crate) fn on_measured(&mut self, id: TrackId, levels: Levels) -> Vec<PlayerCommand> {
        let mut known = false;
        let mut take = |t: &mut Track| {
            if t.id == id {
                t.levels = levels;
                known = true;
            }
        };
        if let Some(n) = self.now.as_mut() {
            take(&mut n.track);
        }
        for p in self.planned.values_mut() {
            take(p.track_mut());
        }
        if let Some((_, p)) = self.preloaded.as_mut() {
            take(p.track_mut());
        }
        for t in [
            self.last_track.as_mut(),
            self.before_now.as_mut(),
            self.auto_next.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            take(t);
        }
        if let Some(p) = self.pending_resume.as_mut() {
            take(p.track_mut());
        }
        if !known {
            return Vec::new();
        }
        self.regain()
    }

    /// The preloaded track, if any (the pass measures it first when it is not measured).
    pub(crate) fn preloaded_track(&self) -> Option<&Track> {
        self.preloaded.as_ref().map(|(_, p)| p.track())
    }

    /// Recomputes the gain of the play going on, of the item loading and of the preloaded
    /// one; a `SetGain` for each that changed.
    fn regain(&mut self) -> Vec<PlayerCommand> {
        let lv = self.levelling;
        let mut out = Vec::new();
        if let Some(n) = &self.now {
            let after = self.preloaded.as_ref().map(|(_, p)| p.track());
            let g = sound::gain(lv, self.before_now.as_ref(), &n.track, after);
            if self.now_gain != Some(g) {
                self.now_gain = Some(g);
                out.push(PlayerCommand::SetGain {
                    key: n.key,
                    gain_db: g.gain.db,
                });
            }
        }
        let before = self
            .now
            .as_ref()
            .map(|n| &n.track)
            .or(self.last_track.as_ref());
        let keys = self
            .loading
            .into_iter()
            .chain(self.preloaded.as_ref().map(|(k, _)| *k));
        for key in keys {
            let Some(p) = self.planned.get(&key) else {
                continue;
            };
            let g = sound::gain(lv, before, p.track(), None);
            if self.gains.insert(key, g) != Some(g) {
                out.push(PlayerCommand::SetGain {
                    key,
                    gain_db: g.gain.db,
                });
            }
        }
        out
    }

    /// The player moved on; returns the position to save, every few seconds of play. A report
    /// that reaches a paused play was sent before the player took the pause in: the play
    /// stands where the pause put it (and was saved), so that what every phone was told stays
    /// true until the play resumes.
    pub(crate) fn on_position(
        &mut self,
        key: Key,
        position_ms: u64,
        now_ms: i64,
    ) -> Option<(PlayId, u64)> {
        let n = self.now.as_mut().filter(|n| n.key == key && !n.paused)?;
        n.position_ms = position_ms;
        n.position_at_ms = now_ms;
        if position_ms.abs_diff(n.last_saved_ms) < SAVE_POSITION_EVERY_MS {
            return None;
        }
        n.last_saved_ms = position_ms;
        Some((n.play_id, position_ms))
    }

    /// Only the play going on can finish; anything else was already replaced.
    pub(crate) fn on_finished(&mut self, key: Key, next: Option<Key>) -> Option<Finished> {
        let play = self.now.take_if(|n| n.key == key)?;
        self.preloaded = None;
        let gapless = match next.filter(|k| *k > self.last_load) {
            Some(k) => {
                self.loading = Some(k);
                true
            }
            None => false,
        };
        Some(Finished { play, gapless })
    }

    /// A planned item could not be opened: its track is not picked again. `None` when the
    /// error is stale or about nothing planned.
    pub(crate) fn on_error(&mut self, key: Key) -> Option<Failed> {
        if key < self.last_load {
            return None;
        }
        let planned = self.planned.remove(&key)?;
        self.unplayable.insert(planned.track().id);
        let move_on = self.loading == Some(key) || self.now.is_none();
        if move_on {
            self.loading = None;
            if self.preloaded.as_ref().is_some_and(|(k, _)| *k == key) {
                self.preloaded = None;
            }
        }
        Some(Failed { planned, move_on })
    }

    /// The auto-DJ's pick (made, or on its way) no longer counts: the next one is asked for
    /// afresh, and an answer on its way is stale.
    pub(crate) fn forget_auto_pick(&mut self) {
        self.auto_next = None;
        self.auto_pending = false;
        self.auto_found_nothing = false;
        self.auto_generation += 1;
    }

    /// The library changed (a scan): a pick that found nothing may find something now.
    pub(crate) fn library_changed(&mut self) {
        self.auto_found_nothing = false;
    }

    /// Whether to ask the auto-DJ for a pick: none is on its way.
    pub(crate) fn wants_auto(&self) -> bool {
        !self.auto_pending && !self.auto_found_nothing
    }

    /// A pick is asked for: its answer must carry this generation.
    pub(crate) fn ask_auto(&mut self) -> u64 {
        self.auto_pending = true;
        self.auto_generation += 1;
        self.auto_generation
    }

    pub(crate) fn on_auto_picked(&mut self, generation: u64, track: Option<Track>) -> Picked {
        if generation != self.auto_generation {
            return Picked::Stale;
        }
        self.auto_pending = false;
        self.auto_found_nothing = track.is_none();
        if self.busy() {
            self.auto_next = track;
            return Picked::Kept;
        }
        match track {
            Some(t) => Picked::Load(self.load(Planned::Auto(t))),
            None => Picked::Empty,
        }
    }
}

#[cfg(test)]
mod tests;
