//! The party as MPD clients see it, kept by one task for every MPD connection: the hub's state
//! (a snapshot, then its change stream, as a phone keeps it) turned into MPD's queue in consume
//! mode — position 0 is what plays, then the requests in play order — with MPD's playlist
//! version and, per position, the version it last changed at (for `plchanges`), and the idle
//! subsystems each change wakes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::broadcast;

use crate::hub::{Change, Hub, NowPlayingView, QueueEntryView, RoomView, Snapshot};
use crate::party::{EntryId, PlayId, TrackId};
use crate::store::Store;

/// MPD's idle subsystems, in the order MPD prints them.
pub const SUBSYSTEMS: [&str; 14] = [
    "database",
    "stored_playlist",
    "playlist",
    "player",
    "mixer",
    "output",
    "options",
    "sticker",
    "update",
    "subscription",
    "message",
    "neighbor",
    "mount",
    "partition",
];

/// A set of idle subsystems (bit `i` is [`SUBSYSTEMS`]`[i]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subsystems(pub u16);

impl Subsystems {
    pub const ALL: Subsystems = Subsystems((1 << SUBSYSTEMS.len()) - 1);
    pub const DATABASE: Subsystems = Subsystems(1 << 0);
    pub const PLAYLIST: Subsystems = Subsystems(1 << 2);
    pub const PLAYER: Subsystems = Subsystems(1 << 3);
    pub const MIXER: Subsystems = Subsystems(1 << 4);
    pub const OPTIONS: Subsystems = Subsystems(1 << 6);
    pub const UPDATE: Subsystems = Subsystems(1 << 8);

    /// The subsystem named `name` (any case, as MPD reads them).
    pub fn named(name: &str) -> Option<Subsystems> {
        SUBSYSTEMS
            .iter()
            .position(|s| s.eq_ignore_ascii_case(name))
            .map(|i| Subsystems(1 << i))
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        SUBSYSTEMS
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
    }
}

impl std::ops::BitOr for Subsystems {
    type Output = Subsystems;
    fn bitor(self, o: Subsystems) -> Subsystems {
        Subsystems(self.0 | o.0)
    }
}
impl std::ops::BitOrAssign for Subsystems {
    fn bitor_assign(&mut self, o: Subsystems) {
        self.0 |= o.0;
    }
}
impl std::ops::BitAnd for Subsystems {
    type Output = Subsystems;
    fn bitand(self, o: Subsystems) -> Subsystems {
        Subsystems(self.0 & o.0)
    }
}

/// MPD song ids of plays that are not queue entries (the auto-DJ's) start here, clear of the
/// entries' ids (their row ids): an id is never given to two songs.
const AUTO_IDS: u32 = 1 << 30;

/// A track as MPD prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Song {
    pub track: TrackId,
    /// The path under the music folder.
    pub file: String,
    pub title: String,
    pub artist: String,
    pub album: String,
    pub track_no: Option<u32>,
    pub duration_ms: u64,
    /// The file's modification time (Unix seconds).
    pub last_modified: Option<i64>,
    pub details: crate::store::Details,
}

/// A song in the queue: its MPD id and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: u32,
    /// The queue entry (`None` for what the auto-DJ plays).
    pub entry: Option<EntryId>,
    pub song: Arc<Song>,
    /// The guests' votes (MPD's `Prio`, capped at 255).
    pub votes: u32,
}

/// What plays, as `status` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playing {
    pub paused: bool,
    pub position_ms: u64,
    /// When `position_ms` was true.
    pub at: Instant,
}

impl Playing {
    /// The position now.
    pub fn elapsed_ms(&self, duration_ms: u64) -> u64 {
        let moved = if self.paused {
            0
        } else {
            self.at.elapsed().as_millis() as u64
        };
        (self.position_ms + moved).min(duration_ms.max(self.position_ms))
    }
}

/// The party in MPD's terms.
#[derive(Debug, Clone)]
pub struct Model {
    /// The queue's version: bumped on every change of what is in it or of its order.
    pub version: u32,
    /// Position 0 is what plays (when something does), then the queue in play order.
    pub queue: Vec<Queued>,
    /// The version at which each position last got a different song.
    pub changed_at: Vec<u32>,
    pub playing: Option<Playing>,
    /// The hub's id of what plays (for a skip of exactly that play).
    pub current_play: Option<PlayId>,
    pub room: Option<RoomView>,
    /// Time spent playing before the current spell, and since when it plays.
    played: std::time::Duration,
    playing_since: Option<Instant>,
    /// The Unix time of the last library update.
    pub db_update: i64,
    pub started: Instant,
}

impl Model {
    fn new() -> Model {
        Model {
            version: 1,
            queue: Vec::new(),
            changed_at: Vec::new(),
            playing: None,
            current_play: None,
            room: None,
            played: std::time::Duration::ZERO,
            playing_since: None,
            db_update: crate::login::now_ms() / 1000,
            started: Instant::now(),
        }
    }

    /// Whether position 0 is what plays.
    pub fn has_current(&self) -> bool {
        self.playing.is_some() && !self.queue.is_empty()
    }

    /// How long the party has played since the jukebox started (`stats` `playtime`).
    pub fn play_time(&self) -> std::time::Duration {
        self.played
            + self
                .playing_since
                .map_or(std::time::Duration::ZERO, |t| t.elapsed())
    }

    pub fn volume(&self) -> u32 {
        self.room.as_ref().map_or(0, |r| r.settings.volume)
    }
}

/// The hub-shaped state the model is made from.
#[derive(Default)]
struct Party {
    now: Option<NowPlayingView>,
    entries: HashMap<EntryId, QueueEntryView>,
    order: Vec<EntryId>,
    room: Option<RoomView>,
}

/// The shared model and the idle events.
#[derive(Clone)]
pub struct Mirror {
    model: Arc<RwLock<Model>>,
    events: broadcast::Sender<Subsystems>,
    /// The `seq` of the last hub change the model shows.
    applied: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Mirror {
    /// Starts the task that follows the hub until `closing` says the jukebox stops (it holds
    /// the hub and the store, which must let go for the jukebox to stop).
    pub fn start(
        hub: Hub,
        store: Store,
        music: PathBuf,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) -> Mirror {
        let (events, _) = broadcast::channel(256);
        let mirror = Mirror {
            model: Arc::new(RwLock::new(Model::new())),
            events,
            applied: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        let m = mirror.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = m.follow(hub, store, music) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        });
        mirror
    }

    /// A copy of the model now.
    pub fn model(&self) -> Model {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (a second at most) until the model shows the hub's change `seq`.
    pub async fn caught_up(&self, seq: u64) {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            rx.wait_for(|s| *s >= seq),
        )
        .await;
    }

    /// Waits (a second at most) until `play` is no longer what plays: a skip fades out before
    /// the next song begins, and MPD's `status` right after `next` names the next song.
    pub async fn left(&self, play: PlayId) {
        let mut rx = self.applied.subscribe();
        let gone = |_: &u64| {
            let m = self.model.read().unwrap_or_else(|e| e.into_inner());
            m.current_play != Some(play)
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.wait_for(gone)).await;
    }

    /// What changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Subsystems> {
        self.events.subscribe()
    }

    async fn follow(&self, hub: Hub, store: Store, music: PathBuf) {
        let mut songs = Songs {
            store,
            music,
            known: HashMap::new(),
        };
        loop {
            let mut rx = hub.subscribe();
            let answer = hub.snapshot(None, false, false).await;
            let Ok(snapshot) = answer.result else {
                return; // the hub is gone: the jukebox is stopping
            };
            let mut party = Party::from_snapshot(&snapshot);
            self.update(&party, &mut songs).await;
            self.applied.send_replace(answer.after_seq);
            loop {
                match rx.recv().await {
                    Ok(p) if p.seq <= answer.after_seq => {}
                    Ok(p) => {
                        if party.apply(&p.change) {
                            self.update(&party, &mut songs).await;
                        }
                        self.applied.send_replace(p.seq);
                    }
                    // Fell behind the hub: start again from a snapshot, never patch a gap.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    /// Rebuilds the model from `party`, bumps the version for what changed, and wakes the
    /// idle clients whose subsystems it touched.
    async fn update(&self, party: &Party, songs: &mut Songs) {
        let mut queue = Vec::with_capacity(party.order.len() + 1);
        if let Some(n) = &party.now {
            let id = n
                .entry_id
                .map_or(AUTO_IDS + n.play_id.get() as u32, |e| e.get() as u32);
            queue.push(Queued {
                id,
                entry: n.entry_id,
                song: songs.get(n.track.id).await,
                votes: 0,
            });
        }
        for e in party.order.iter().filter_map(|id| party.entries.get(id)) {
            queue.push(Queued {
                id: e.id.get() as u32,
                entry: Some(e.id),
                song: songs.get(e.track.id).await,
                votes: e.votes,
            });
        }
        let playing = party.now.as_ref().map(|n| Playing {
            paused: n.paused,
            position_ms: n.position_ms,
            at: Instant::now()
                - std::time::Duration::from_millis(
                    (crate::login::now_ms() - n.server_time_ms).clamp(0, 10_000) as u64,
                ),
        });
        let mut woke = Subsystems::default();
        {
            let mut m = self.model.write().unwrap_or_else(|e| e.into_inner());
            if m.queue != queue {
                m.version = m.version.wrapping_add(1).max(1) & 0x7fff_ffff;
                let v = m.version;
                let changed: Vec<u32> = queue
                    .iter()
                    .enumerate()
                    .map(|(i, q)| match m.queue.get(i) {
                        Some(old) if old == q => m.changed_at[i],
                        _ => v,
                    })
                    .collect();
                m.changed_at = changed;
                m.queue = queue;
                woke |= Subsystems::PLAYLIST;
            }
            let play = party.now.as_ref().map(|n| n.play_id);
            // Another song, however soon after the last began; or a change of state.
            if m.current_play != play
                || player_changed(m.playing.as_ref(), playing.as_ref(), &m.queue)
            {
                woke |= Subsystems::PLAYER;
            }
            let plays = playing.as_ref().is_some_and(|p| !p.paused);
            match (m.playing_since, plays) {
                (None, true) => m.playing_since = Some(Instant::now()),
                (Some(t), false) => {
                    m.played += t.elapsed();
                    m.playing_since = None;
                }
                _ => {}
            }
            m.playing = playing;
            m.current_play = play;
            let (old, new) = (m.room.as_ref(), party.room.as_ref());
            if old.map(|r| r.settings.volume) != new.map(|r| r.settings.volume) {
                woke |= Subsystems::MIXER;
            }
            if old.map(|r| r.settings.crossfade_s) != new.map(|r| r.settings.crossfade_s) {
                woke |= Subsystems::OPTIONS;
            }
            let scanning = |r: Option<&RoomView>| r.and_then(|r| r.scan).is_some_and(|s| !s.done);
            if scanning(old) != scanning(new) {
                woke |= Subsystems::UPDATE;
                if !scanning(new) && old.is_some() {
                    woke |= Subsystems::DATABASE;
                    m.db_update = crate::login::now_ms() / 1000;
                    // A file may have been retagged: songs are read again as they next show.
                    songs.known.clear();
                }
            }
            m.room = party.room.clone();
        }
        if !woke.is_empty() {
            let _ = self.events.send(woke);
        }
    }
}

/// Whether the player's state of one song changed in a way MPD announces: play/pause, or a
/// jump in position (a seek) rather than time passing.
fn player_changed(old: Option<&Playing>, new: Option<&Playing>, queue: &[Queued]) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(o), Some(n)) => {
            if o.paused != n.paused {
                return true;
            }
            let duration = queue.first().map_or(u64::MAX, |q| q.song.duration_ms);
            let expected = o.elapsed_ms(duration) as i64;
            (expected - n.position_ms as i64).abs() > 1500
        }
        _ => true,
    }
}

impl Party {
    fn from_snapshot(s: &Snapshot) -> Party {
        Party {
            now: s.now_playing.clone(),
            entries: s.queue.iter().map(|e| (e.id, e.clone())).collect(),
            order: s.order.clone(),
            room: Some(s.room.clone()),
        }
    }

    /// Applies one change; whether it was one MPD shows.
    fn apply(&mut self, c: &Change) -> bool {
        match c {
            Change::NowPlaying(n) => {
                let n = n.as_deref().cloned();
                // A like or a skip vote changes nothing MPD shows: the same play, paused or
                // not as before, where time has taken it (not sought). The likes of a party
                // then cost the MPD clients nothing.
                let same = match (&self.now, &n) {
                    (Some(a), Some(b)) => {
                        let moved = if a.paused {
                            0
                        } else {
                            b.server_time_ms - a.server_time_ms
                        };
                        let expected = a.position_ms as i64 + moved;
                        a.play_id == b.play_id
                            && a.paused == b.paused
                            && (expected - b.position_ms as i64).abs() < 1500
                    }
                    (None, None) => true,
                    _ => false,
                };
                self.now = n;
                !same
            }
            Change::QueueEntry { id, entry } => {
                match entry {
                    Some(e) => self.entries.insert(*id, (**e).clone()),
                    None => self.entries.remove(id),
                };
                true
            }
            Change::QueueOrder(order) => {
                self.order = order.clone();
                true
            }
            Change::Room(r) => {
                self.room = Some((**r).clone());
                true
            }
            _ => false,
        }
    }
}

/// Tracks as MPD prints them, read from the store once each.
struct Songs {
    store: Store,
    music: PathBuf,
    known: HashMap<TrackId, Arc<Song>>,
}

impl Songs {
    async fn get(&mut self, id: TrackId) -> Arc<Song> {
        if let Some(s) = self.known.get(&id) {
            return s.clone();
        }
        let track = self.store.read(move |db| db.described(id)).await;
        let song = Arc::new(match track {
            Ok(Some(t)) => song_of(&t, &self.music),
            _ => Song {
                track: id,
                file: String::new(),
                title: String::new(),
                artist: String::new(),
                album: String::new(),
                track_no: None,
                duration_ms: 0,
                last_modified: None,
                details: Default::default(),
            },
        });
        if self.known.len() > 4096 {
            self.known.clear();
        }
        self.known.insert(id, song.clone());
        song
    }
}

/// A library track as MPD prints it: its path relative to the music folder.
pub fn song_of(d: &crate::store::Described, music: &Path) -> Song {
    let t = &d.track;
    Song {
        track: t.id,
        file: relative(&t.path, music),
        title: t.title.clone(),
        artist: t.artist.clone(),
        album: t.album.clone(),
        track_no: t.track_no,
        duration_ms: t.duration_ms,
        last_modified: d.modified_s,
        details: d.details.clone(),
    }
}

/// `path` under `music`, with `/` between its parts.
pub fn relative(path: &Path, music: &Path) -> String {
    let rel = path.strip_prefix(music).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
