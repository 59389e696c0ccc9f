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
        ] {
            if let Some(v) = v {
                party::check_setting(field, v)
                    .map_err(|message| HubError::BadRequest { field, message })?;
            }
        }
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
}
