//! The party's commands as one-line calls on a [`TestHub`], so a scenario test reads as its
//! story: who requests, votes, likes and skips what, and what the room then looks like.
//! `act_*` helpers expect the command to succeed (and say which one failed); `try_*` ones
//! return the hub's answer for tests that check a refusal.

use std::path::Path;

use jukebox::hub::{
    Actor, Change, Command, Event, HubError, NowPlayingView, Reply, SettingsPatch, SkipReason,
};
use jukebox::party::{EntryId, GuestId, PlayId, Settings, TrackId};

use super::TestHub;

/// A party on a music folder of `tracks` tones of `secs`, with its own database. The
/// folder lives as long as the returned `TempDir`.
pub async fn party(tracks: usize, secs: f64, settings: Settings) -> (tempfile::TempDir, TestHub) {
    let dir = super::tempdir();
    let music = super::music(dir.path(), tracks, secs);
    let h = TestHub::start(&dir.path().join("j.db"), &music, settings).await;
    (dir, h)
}

/// A party on an empty music folder (`<dir>/music`).
pub async fn empty_party() -> (tempfile::TempDir, TestHub) {
    let dir = super::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let h = TestHub::start(&dir.path().join("j.db"), &music, Settings::default()).await;
    (dir, h)
}

/// The music folder of a party made by [`party`] or [`empty_party`].
pub fn music_of(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("music")
}

/// The database of a party made by [`party`] or [`empty_party`].
pub fn db_of(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("j.db")
}

/// The `(entry_id, upvoted)` of a `Requested` reply.
pub fn requested(r: Reply) -> (EntryId, bool) {
    match r {
        Reply::Requested { entry_id, upvoted } => (entry_id, upvoted),
        other => panic!("{other:?}"),
    }
}

impl TestHub {
    /// Restarts on the same database and music, as after a power cut.
    pub async fn restart(self, db: &Path, music: &Path) -> TestHub {
        self.stop().await;
        TestHub::start(db, music, Settings::default()).await
    }

    /// The library as `(track id, title)`, in the store's order.
    pub async fn library(&self) -> Vec<(TrackId, String)> {
        self.store
            .read(|db| db.search("", 100, 0))
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.title))
            .collect()
    }

    /// The tracks a guest may request: all but `playing`.
    pub async fn free_tracks(&self, playing: TrackId) -> Vec<TrackId> {
        self.library()
            .await
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| *id != playing)
            .collect()
    }

    /// What plays now (something must).
    pub async fn now(&self) -> NowPlayingView {
        self.snapshot().await.now_playing.expect("something plays")
    }

    /// The queue's entries in playing order.
    pub async fn order(&self) -> Vec<EntryId> {
        self.snapshot().await.order
    }

    pub async fn try_request(&self, actor: Actor, track_id: TrackId) -> Result<Reply, HubError> {
        self.call(Command::Request {
            actor,
            track_id,
            dedication: None,
        })
        .await
        .result
    }

    /// Requests `track_id`: its entry, and whether it was an up-vote of an existing one.
    pub async fn request(&self, actor: Actor, track_id: TrackId) -> (EntryId, bool) {
        requested(
            self.ok(Command::Request {
                actor,
                track_id,
                dedication: None,
            })
            .await,
        )
    }

    pub async fn vote(&self, actor: Actor, entry_id: EntryId, on: bool) {
        self.ok(Command::Vote {
            actor,
            entry_id,
            on,
        })
        .await;
    }

    pub async fn try_like(
        &self,
        actor: Actor,
        play_id: PlayId,
        on: bool,
    ) -> Result<Reply, HubError> {
        self.call(Command::Like { actor, play_id, on }).await.result
    }

    pub async fn like(&self, actor: Actor, play_id: PlayId, on: bool) {
        self.ok(Command::Like { actor, play_id, on }).await;
    }

    pub async fn try_vote_skip(&self, actor: Actor, play_id: PlayId) -> Result<Reply, HubError> {
        self.call(Command::VoteSkip { actor, play_id }).await.result
    }

    pub async fn vote_skip(&self, actor: Actor, play_id: PlayId) {
        self.ok(Command::VoteSkip { actor, play_id }).await;
    }

    pub async fn try_settings(
        &self,
        actor: Actor,
        patch: SettingsPatch,
    ) -> Result<Reply, HubError> {
        self.call(Command::Settings {
            host: actor.as_host().expect("a host"),
            patch,
        })
        .await
        .result
    }

    pub async fn settings(&self, actor: Actor, patch: SettingsPatch) {
        self.ok(Command::Settings {
            host: actor.as_host().expect("a host"),
            patch,
        })
        .await;
    }

    pub async fn ban(&self, host: Actor, guest: GuestId) {
        self.ok(Command::Ban {
            host: host.as_host().expect("a host"),
            guest,
            on: true,
        })
        .await;
    }

    /// The host skips whatever plays.
    pub async fn host_skip(&self, host: Actor) {
        self.ok(Command::Skip {
            host: host.as_host().expect("a host"),
            play_id: None,
        })
        .await;
    }

    /// Waits (bounded) for an event matching `pred`; returns whom it went to and the event.
    pub async fn wait_event(
        &mut self,
        what: &str,
        pred: impl Fn(Option<GuestId>, &Event) -> bool,
    ) -> (Option<GuestId>, Event) {
        let p = self
            .wait_for(
                what,
                |c| matches!(c, Change::Event { to, event, .. } if pred(*to, event)),
            )
            .await;
        match &p.change {
            Change::Event { to, event, .. } => (*to, event.clone()),
            other => unreachable!("the predicate only matches events: {other:?}"),
        }
    }

    /// Waits for a `skipped` event for `reason`; returns the skipped track.
    pub async fn wait_skipped(&mut self, reason: SkipReason) -> TrackId {
        let what = format!("skipped ({reason:?})");
        match self
            .wait_event(
                &what,
                |_, e| matches!(e, Event::Skipped { reason: r, .. } if *r == reason),
            )
            .await
        {
            (_, Event::Skipped { track_id, .. }) => track_id,
            (_, other) => unreachable!("{other:?}"),
        }
    }

    /// Waits for a play other than `play_id` to start; returns it.
    pub async fn wait_next_play(&mut self, play_id: PlayId) -> NowPlayingView {
        let p = self
            .wait_for(
                "the next play",
                |c| matches!(c, Change::NowPlaying(Some(n)) if n.play_id != play_id),
            )
            .await;
        match &p.change {
            Change::NowPlaying(Some(n)) => (**n).clone(),
            other => unreachable!("{other:?}"),
        }
    }
}
