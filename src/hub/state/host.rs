//! The host's controls of the music and the party's settings.

use std::collections::HashSet;

use super::State;
use crate::hub::loaded::PAUSED_PLAY;
use crate::hub::{HubError, Reply, SettingsPatch};
use crate::party::{self, GuestId};
use crate::player::PlayerCommand;

impl State {
    pub(super) fn play(&mut self, now_ms: i64) -> Result<Reply, HubError> {
        if let Some(n) = self.deck.now_mut() {
            if n.resume(now_ms) {
                self.player(PlayerCommand::Resume);
                self.op(|db| db.set_meta(PAUSED_PLAY, ""));
                self.push_now(now_ms);
            }
        } else if !self.deck.busy() {
            self.advance(now_ms);
        }
        Ok(Reply::Done)
    }

    pub(super) fn pause(&mut self, now_ms: i64) -> Result<Reply, HubError> {
        let Some(n) = self.deck.now_mut() else {
            return Ok(Reply::Done);
        };
        if let Some(pos) = n.pause(now_ms) {
            let id = n.play_id;
            self.player(PlayerCommand::Pause);
            self.op(move |db| {
                db.save_position(id, pos)?;
                db.set_meta(PAUSED_PLAY, &id.get().to_string())
            });
            self.push_now(now_ms);
        }
        Ok(Reply::Done)
    }

    pub(super) fn seek(&mut self, position_ms: u64, now_ms: i64) -> Result<Reply, HubError> {
        let n = self.deck.now_mut().ok_or(HubError::NotFound("play"))?;
        let pos = n.seek(position_ms, now_ms);
        self.player(PlayerCommand::Seek(pos));
        self.push_now(now_ms);
        Ok(Reply::Done)
    }

    fn save_settings(&mut self) {
        let json = serde_json::to_string(&self.settings).unwrap_or_default();
        self.op(move |db| db.set_meta("settings", &json));
    }

    pub(super) fn set_volume(&mut self, volume: u32, now_ms: i64) -> Result<Reply, HubError> {
        if volume > self.settings.max_volume {
            return Err(HubError::BadRequest {
                field: "volume",
                message: format!(
                    "{volume} is above the volume cap; allowed 0..={}",
                    self.settings.max_volume
                ),
            });
        }
        self.settings.volume = volume;
        self.player(PlayerCommand::SetVolume(volume));
        self.save_settings();
        self.push_room();
        if self.deck.now().is_some() {
            self.push_now(now_ms);
        }
        Ok(Reply::Done)
    }

    pub(super) fn change_settings(
        &mut self,
        p: SettingsPatch,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        for (field, v) in [
            ("request_limit", p.request_limit.map(i64::from)),
            ("no_repeat_minutes", p.no_repeat_minutes.map(i64::from)),
            ("artist_spacing", p.artist_spacing.map(i64::from)),
            ("skip_min_votes", p.skip_min_votes.map(i64::from)),
            ("skip_percent", p.skip_percent.map(i64::from)),
            ("max_volume", p.max_volume.map(i64::from)),
            ("loudness_lufs", p.loudness_lufs.map(i64::from)),
            ("crossfade_s", p.crossfade_s.map(i64::from)),
            ("max_track_minutes", p.max_track_minutes.map(i64::from)),
        ] {
            if let Some(v) = v {
                party::check_setting(field, v)
                    .map_err(|message| HubError::BadRequest { field, message })?;
            }
        }
        let list = |field: &'static str, v: &Option<Vec<String>>| {
            v.as_deref()
                .map(|items| party::rules::check_list(field, items))
                .transpose()
                .map_err(|message| HubError::BadRequest { field, message })
        };
        let blocked_artists = list("blocked_artists", &p.blocked_artists)?;
        let blocked_words = list("blocked_words", &p.blocked_words)?;
        let pool = p
            .pool
            .as_ref()
            .map(|v| party::rules::check_pool(v.as_deref()))
            .transpose()
            .map_err(|message| HubError::BadRequest {
                field: "pool",
                message,
            })?;
        let rules_changed = blocked_artists.is_some()
            || blocked_words.is_some()
            || p.max_track_minutes.is_some()
            || pool.is_some();
        let s = &mut self.settings;
        if let Some(v) = p.request_limit {
            s.request_limit = v;
        }
        if let Some(v) = p.no_repeat_minutes {
            s.no_repeat_minutes = v;
        }
        if let Some(v) = p.artist_spacing {
            s.artist_spacing = v;
        }
        if let Some(v) = p.skip_min_votes {
            s.skip_min_votes = v;
        }
        if let Some(v) = p.skip_percent {
            s.skip_percent = v;
        }
        if let Some(v) = p.requests_paused {
            s.requests_paused = v;
        }
        if let Some(v) = p.normalize {
            s.normalize = v;
        }
        if let Some(v) = p.loudness_lufs {
            s.loudness_lufs = v;
        }
        if let Some(v) = p.crossfade_s {
            s.crossfade_s = v;
        }
        if let Some(v) = p.snapcast_control {
            s.snapcast_control = v;
        }
        if let Some(v) = blocked_artists {
            s.blocked_artists = v;
        }
        if let Some(v) = blocked_words {
            s.blocked_words = v;
        }
        if let Some(v) = p.max_track_minutes {
            s.max_track_minutes = v;
        }
        if let Some(v) = pool {
            s.pool = v;
        }
        if let Some(v) = p.max_volume {
            s.max_volume = v;
            if s.volume > v {
                s.volume = v;
                self.player(PlayerCommand::SetVolume(v));
            }
        }
        if p.normalize.is_some() || p.loudness_lufs.is_some() {
            self.levelling_changed();
        }
        if p.crossfade_s.is_some() {
            self.player(self.crossfade());
        }
        if rules_changed {
            self.rules_changed(now_ms);
        }
        self.save_settings();
        self.push_room();
        // `requests_left` is personal: only a new cap changes it, for guests with requests.
        if p.request_limit.is_some() {
            let with_requests: HashSet<GuestId> = self.queue.requesters();
            for g in with_requests {
                self.push_me(g);
            }
        }
        if !self.check_skip(now_ms) && self.deck.now().is_some() {
            self.push_now(now_ms);
        }
        Ok(Reply::Done)
    }

    /// New content rules: the search marks by them from now on, and the auto-DJ picks again
    /// if what it picked (or is picking) may be refused by them. Queued requests stay: the
    /// host removes them if they must go.
    fn rules_changed(&mut self, now_ms: i64) {
        self.rules = party::Rules::new(&self.settings, &self.music);
        self.publisher.set_rules(self.rules.clone());
        // Each play of the history says whether it may be requested again.
        for id in self.history.order() {
            self.push_history_entry(id);
        }
        self.autodj_blocked = false;
        let refused = self
            .deck
            .auto_next()
            .is_some_and(|t| self.rules.check(&t.facts()).is_some());
        if refused || !self.deck.wants_auto() {
            self.deck.forget_auto_pick();
        }
        if self.deck.busy() {
            self.refresh_preload(now_ms);
        } else {
            self.advance(now_ms);
        }
    }
}
