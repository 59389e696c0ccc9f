//! What the state looks like from outside: the views of now playing, the queue, the room,
//! each guest's own state and the host's guest list, the whole snapshot, and the helpers
//! that push them as changes.

use std::collections::HashSet;

use super::State;
use crate::hub::deck::Now;
use crate::hub::history::Changed;
use crate::hub::views::*;
use crate::party::{self, EntryId, GuestId, PlayId};

/// Guests in the host's list besides the connected, banned, busy ones and the screens: the
/// most recent few (a guest not connected can do nothing, so the host rarely needs the rest).
pub const ADMIN_RECENT: usize = 50;

impl State {
    /// Skip votes count only while their guest is in the room: they are weighed against the
    /// guests connected now, so the two must be the same people.
    pub(super) fn skip_votes_now(&self, n: &Now) -> u32 {
        let away: HashSet<GuestId> = n
            .skip_votes
            .iter()
            .filter(|g| !self.guests.in_room(**g))
            .copied()
            .collect();
        party::skip_votes(&n.skip_votes, &away)
    }

    pub(super) fn skip_needed(&self) -> u32 {
        party::skip_needed(&self.settings, self.guests.connected())
    }

    fn now_view(&self, now_ms: i64) -> Option<NowPlayingView> {
        let n = self.deck.now()?;
        let banned = self.guests.banned();
        Some(NowPlayingView {
            play_id: n.play_id,
            track: TrackView::from(&n.track),
            requested_by: n.requester.map(|g| self.guests.display_name(g)),
            requester: n.requester,
            requested_by_host: n.requester.is_some_and(|g| self.guests.is_host(g)),
            entry_id: n.entry_id,
            position_ms: n.heard_position(now_ms, self.stats.latency_ms()),
            server_time_ms: now_ms,
            paused: n.paused,
            likes: n.likes.iter().filter(|g| !banned.contains(g)).count() as u32,
            skip_votes: self.skip_votes_now(n),
            skip_needed: self.skip_needed(),
            volume: self.settings.volume,
            auto: n.auto,
            dedication: n.dedication.clone(),
        })
    }

    fn entry_view(&self, id: EntryId) -> Option<QueueEntryView> {
        let q = self.queue.get(id)?;
        Some(QueueEntryView {
            id,
            track: TrackView::from(&q.track),
            by: q.entry.guest.map(|g| self.guests.display_name(g)),
            guest: q.entry.guest,
            by_host: q.entry.guest.is_some_and(|g| self.guests.is_host(g)),
            votes: q.entry.votes(self.guests.banned()),
            pinned: q.entry.pin.is_some(),
            created_ms: q.entry.created_ms,
            dedication: q.entry.dedication.clone(),
        })
    }

    fn history_view(&self, p: &crate::store::PastPlay) -> HistoryItemView {
        HistoryItemView {
            play_id: p.play_id,
            track: TrackView::from(&p.track),
            requested_by: p.requester.map(|g| self.guests.display_name(g)),
            requester: p.requester,
            requested_by_host: p.requester.is_some_and(|g| self.guests.is_host(g)),
            dedication: p.dedication.clone(),
            started_ms: p.started_ms,
            likes: p.likes,
            ended: p.ended,
            refused: self
                .rules
                .check(&p.track.facts())
                .map(|rule| party::Refusal::not_allowed(rule, &self.rules)),
        }
    }

    /// Announces what a change of the history did.
    pub(super) fn push_history(&mut self, changed: Changed) {
        match changed {
            Changed::Nothing => {}
            Changed::Entry(id) => self.push_history_entry(id),
            Changed::Added { id, dropped } => {
                self.push_history_entry(id);
                if let Some(id) = dropped {
                    self.out.push(Change::HistoryEntry { id, entry: None });
                }
                self.out.push(Change::HistoryOrder(self.history.order()));
            }
        }
    }

    pub(super) fn push_history_entry(&mut self, id: PlayId) {
        let entry = self.history.get(id).map(|p| Box::new(self.history_view(p)));
        self.out.push(Change::HistoryEntry { id, entry });
    }

    fn me_view(&self, g: GuestId) -> Option<MeView> {
        let guest = self.guests.get(g)?;
        let in_now = |set: &HashSet<GuestId>| -> Vec<PlayId> {
            match self.deck.now() {
                Some(n) if set.contains(&g) => vec![n.play_id],
                _ => vec![],
            }
        };
        let (liked, skip_voted) = match self.deck.now() {
            Some(n) => (in_now(&n.likes), in_now(&n.skip_votes)),
            None => (vec![], vec![]),
        };
        let pending = self.queue.requested_by(g);
        let banned = self.guests.is_banned(g);
        let left = if banned || guest.screen {
            0
        } else {
            self.settings
                .request_limit
                .saturating_sub(pending.len() as u32)
        };
        Some(MeView {
            guest_id: g,
            name: guest.name.clone(),
            role: guest.role(),
            liked,
            skip_voted,
            voted: self.queue.voted_by(g),
            pending_requests: pending,
            requests_left: left,
            banned,
        })
    }

    fn room_view(&self) -> RoomView {
        RoomView {
            name: self.name.clone(),
            guests_connected: self.guests.connected() as u32,
            library_size: self.library_size,
            settings: self.settings.clone(),
            audio_ok: self.output.ok,
            scan: self.scan.view(),
            autodj_blocked: self.autodj_blocked,
        }
    }

    fn guest_admin_view(&self, g: GuestId) -> Option<GuestAdminView> {
        let guest = self.guests.get(g)?;
        Some(GuestAdminView {
            guest_id: g,
            name: guest.name.clone(),
            role: guest.role(),
            banned: self.guests.is_banned(g),
            connected: guest.sockets > 0,
            pending_requests: self.queue.requested_by(g),
            played_tonight: self.played_tonight.get(&g).copied().unwrap_or(0),
        })
    }

    pub(super) fn snapshot(
        &self,
        guest: Option<GuestId>,
        admin: bool,
        history: bool,
        now_ms: i64,
    ) -> Snapshot {
        // Bounded: whoever matters to the host (connected, banned, with songs waiting or
        // played, hosts and screens) and the most recent others.
        let mut guests: Vec<GuestAdminView> = if admin {
            let mut all: Vec<GuestAdminView> = self
                .guests
                .iter()
                .filter_map(|(g, _)| self.guest_admin_view(g))
                .collect();
            all.sort_by_key(|g| std::cmp::Reverse(g.guest_id));
            let mut others = 0;
            all.retain(|g| {
                let matters = g.connected
                    || g.banned
                    || g.role != Role::Guest
                    || !g.pending_requests.is_empty()
                    || g.played_tonight > 0;
                if matters {
                    return true;
                }
                others += 1;
                others <= ADMIN_RECENT
            });
            all
        } else {
            vec![]
        };
        guests.sort_by_key(|g| g.guest_id);
        Snapshot {
            now_playing: self.now_view(now_ms),
            queue: self
                .queue
                .order()
                .iter()
                .filter_map(|id| self.entry_view(*id))
                .collect(),
            order: self.queue.order().to_vec(),
            history: if history {
                self.history.iter().map(|p| self.history_view(p)).collect()
            } else {
                Vec::new()
            },
            room: self.room_view(),
            me: guest.and_then(|g| self.me_view(g)),
            guests,
            output: self.output.clone(),
            sound: self.sound_view(),
            rooms: self.rooms.clone().filter(|_| admin),
        }
    }

    /// The sound as hosts see it: the loudness and gain of what plays, the pass, the output.
    pub(super) fn sound_view(&self) -> SoundView {
        let playing = self
            .deck
            .now()
            .zip(self.deck.now_gain())
            .map(|(n, g)| PlayingSound {
                play_id: n.play_id,
                track_lufs_tenths: n
                    .track
                    .levels
                    .track_lufs
                    .or(n.track.levels.tag_track_lufs)
                    .map(tenths),
                gain_tenths: tenths(g.gain.db),
                source: g.gain.source.into(),
                album: g.album,
            });
        SoundView {
            playing,
            pass: self
                .pass
                .as_ref()
                .map(|p| p.progress())
                .filter(|p| p.total > 0)
                .map(|p| PassView {
                    measured: p.measured,
                    failed: p.failed,
                    total: p.total,
                }),
            underruns: self.stats.underruns(),
            latency_ms: self.stats.latency_ms(),
        }
    }

    /// Announces the sound view to hosts when it changed (a latency that moves alone is not
    /// worth an update: it travels with the next one).
    pub(super) fn push_sound(&mut self) {
        self.sound_dirty = false;
        let v = self.sound_view();
        let same = self.announced_sound.is_some_and(|a| {
            SoundView {
                latency_ms: v.latency_ms,
                ..a
            } == v
        });
        if same {
            return;
        }
        self.announced_sound = Some(v);
        self.out.push(Change::Sound(v));
    }

    pub(super) fn status(&self) -> Status {
        Status {
            library_size: self.library_size,
            guests_connected: self.guests.connected() as u32,
            output: self.output.clone(),
            playing: self.deck.now().is_some_and(|n| !n.paused),
            queue_len: self.queue.len(),
            underruns: self.stats.underruns(),
            latency_ms: self.stats.latency_ms(),
        }
    }

    pub(super) fn push_now(&mut self, now_ms: i64) {
        self.announced_skip_needed = self.skip_needed();
        self.now_dirty = false;
        let v = self.now_view(now_ms).map(Box::new);
        self.announced_skip_votes = v.as_ref().map_or(0, |v| v.skip_votes);
        // The history shows the likes of what plays too.
        if let Some(n) = &v {
            let changed = self.history.likes(n.play_id, n.likes);
            self.push_history(changed);
        }
        self.out.push(Change::NowPlaying(v));
    }

    pub(super) fn push_entry(&mut self, id: EntryId) {
        let entry = self.entry_view(id).map(Box::new);
        self.out.push(Change::QueueEntry { id, entry });
    }

    pub(super) fn push_me(&mut self, g: GuestId) {
        if let Some(m) = self.me_view(g) {
            self.out.push(Change::Me(Box::new(m)));
        }
    }

    pub(super) fn push_room(&mut self) {
        let r = self.room_view();
        self.out.push(Change::Room(Box::new(r)));
    }

    pub(super) fn push_guest(&mut self, g: GuestId) {
        if let Some(v) = self.guest_admin_view(g) {
            self.out.push(Change::Guest(Box::new(v)));
        }
    }

    pub(super) fn push_guest_gone(&mut self, g: GuestId) {
        self.out.push(Change::GuestGone(g));
    }

    pub(super) fn push_event(&mut self, to: Option<GuestId>, event: Event, now_ms: i64) {
        self.out.push(Change::Event {
            ts_ms: now_ms,
            to,
            event,
        });
    }

    /// Recomputes the order; announces it when it changed, tells the requester whose song
    /// became next, and keeps the player's gapless "next" current.
    pub(super) fn reorder(&mut self, now_ms: i64) {
        let r = self
            .queue
            .reorder(self.guests.banned(), &self.played_tonight);
        if r.changed {
            self.out
                .push(Change::QueueOrder(self.queue.order().to_vec()));
        }
        if let Some(head) = r.new_head {
            if let Some(q) = self.queue.get(head) {
                if let Some(g) = q.entry.guest {
                    let ev = Event::YourRequestNext {
                        entry_id: head,
                        track_id: q.track.id,
                        title: q.track.title.clone(),
                    };
                    self.push_event(Some(g), ev, now_ms);
                }
            }
        }
        self.refresh_preload(now_ms);
    }
}
