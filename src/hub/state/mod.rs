//! The hub's state and its handlers. Each handler validates first and mutates after, collects
//! its writes (`ops`) and its changes (`out`), and ends with `finish`, which hands both to the
//! store in one job: the changes are published, and the caller answered, once the writes are
//! durable.
//!
//! The wall clock is read once where a message enters the loop (`run`), and that `now_ms` is
//! passed down: one message sees one time, and the rules below it can be tested at any time.
//!
//! By job: `run` (the loop, the store hand-off, resync), `views` (snapshots and the changes
//! pushed), `commands` (the dispatch and the party actions), `host` (playback controls and
//! settings), `people` (identities, presence, screens, bans), `playback` (the player's
//! events and what plays next, planned by the [`Deck`]), `internal` (the hub's own messages:
//! store answers, the scan).

mod commands;
mod host;
mod internal;
mod people;
mod playback;
mod run;
mod views;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::deck::Deck;
use super::guests::Guests;
use super::history::History;
use super::loaded::Loaded;
use super::pairing::Pairings;
use super::queue::Queue;
use super::scan::Scan;
use super::sound::Levelling;
use super::views::{OutputView, RoomsView, SoundView};
use super::{Actor, Answer, GuestLimits, HubConfig, Publisher};
use crate::library::ScanProgress;
use crate::loudness::{Levels, Pass};
use crate::party::{GuestId, RecentPlay, Rules, Settings, TrackId};
use crate::player::{AudioStats, Player, PlayerCommand, PlayerEvent};
use crate::store::{Db, MaxIds, Store, StoreError, Track};

/// How often changes in who is connected are announced.
const PRESENCE_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// The hub's messages to itself: answers of the store and the scan thread, sockets closing,
/// shutdown.
pub(crate) enum Internal {
    RequestTrack {
        actor: Actor,
        track_id: TrackId,
        dedication: Option<String>,
        track: Result<Option<Track>, String>,
        reply: Option<ReplyTx>,
    },
    AutoPicked {
        generation: u64,
        track: Option<Track>,
    },
    StoreFailed,
    /// A socket of this guest closed (its [`super::Connection`] guard dropped), from this
    /// address key.
    SocketClosed(GuestId, Option<String>),
    Scan(ScanProgress),
    ScanDone(Result<u64, String>),
    /// The loudness pass measured a track (or a track's album loudness changed with it).
    Measured(TrackId, Levels),
    Shutdown(oneshot::Sender<()>),
}

type ReplyTx = oneshot::Sender<Answer>;
type Op = Box<dyn FnOnce(&Db) -> Result<(), StoreError> + Send>;

pub(crate) struct State {
    name: String,
    music: PathBuf,
    store: Store,
    player: Option<Player>,
    player_events: Option<mpsc::UnboundedReceiver<PlayerEvent>>,
    /// The audio thread's counters (underruns, latency).
    stats: Arc<AudioStats>,
    /// The background loudness pass (`None` when its thread could not start).
    pass: Option<Pass>,
    publisher: Arc<Publisher>,
    internal: mpsc::UnboundedSender<Internal>,

    settings: Settings,
    /// The content rules of `settings`, folded for checking.
    rules: Rules,
    /// The auto-DJ found nothing the content rules allow (the host page says so).
    autodj_blocked: bool,
    limits: GuestLimits,
    guests: Guests,
    pairings: Pairings,
    /// Likes and votes that change something, per guest (all its sockets together).
    toggles: governor::DefaultKeyedRateLimiter<GuestId>,
    /// New guest tokens, all addresses together.
    new_guests: governor::DefaultDirectRateLimiter,
    queue: Queue,
    deck: Deck,
    scan: Scan,
    recent: Vec<RecentPlay>,
    /// The last plays, as the `history` topic shows them.
    history: History,
    played_tonight: HashMap<GuestId, u32>,
    library_size: u64,
    output: OutputView,
    /// systemd's watchdog, pinged from this loop: a hung hub stops the pings.
    watchdog: Option<crate::notify::Watchdog>,

    /// The like count changed since the last `now_playing`: announced on the next tick.
    now_dirty: bool,
    /// A like was already announced in this tick: more likes wait for the next one.
    liked_this_tick: bool,
    /// The skip votes and the threshold the last `now_playing` carried.
    announced_skip_votes: u32,
    announced_skip_needed: u32,
    /// Guests whose connected state changed since the last presence tick.
    presence_dirty: HashSet<GuestId>,
    /// The sound the host sees changed since it was last announced (the pass measured a
    /// track): announced on the next presence tick.
    sound_dirty: bool,
    /// The sound view last announced to hosts.
    announced_sound: Option<SoundView>,
    /// The rooms, with `snapcast_rpc` set.
    rooms: Option<RoomsView>,

    needs_resync: bool,
    ids: MaxIds,
    ops: Vec<Op>,
    out: Vec<Change>,
}

use super::views::Change;

/// The wall clock in ms since the epoch. Read only where a message enters the hub's loop.
pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn keyed_limiter(per_sec: u32, burst: u32) -> governor::DefaultKeyedRateLimiter<GuestId> {
    governor::RateLimiter::keyed(
        governor::Quota::per_second(NonZeroU32::new(per_sec.max(1)).expect("non-zero"))
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero")),
    )
}

/// How long until a governor allows again, in ms (at least 1).
fn wait_ms(n: governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
    n.wait_time_from(now).as_millis().max(1) as u64
}

fn crossfade(s: &Settings) -> PlayerCommand {
    PlayerCommand::SetCrossfade(std::time::Duration::from_secs(u64::from(s.crossfade_s)))
}

/// The settings to start with: the host's from last time, except the keys given explicitly
/// in the configuration, which win.
fn start_settings(cfg: &HubConfig, saved: Option<&str>) -> Settings {
    let mut settings: Settings = saved
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| cfg.settings.clone());
    settings = crate::config::explicit_over(settings, &cfg.settings, &cfg.explicit_settings);
    settings.volume = settings.volume.min(settings.max_volume);
    settings
}

impl State {
    pub(crate) fn new(
        cfg: HubConfig,
        store: Store,
        loaded: Loaded,
        publisher: Arc<Publisher>,
        internal: mpsc::UnboundedSender<Internal>,
    ) -> Result<State, StoreError> {
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let player = Player::spawn(cfg.output.clone(), ev_tx).map_err(StoreError::Thread)?;
        let settings = start_settings(&cfg, loaded.settings.as_deref());
        player.send(PlayerCommand::SetVolume(settings.volume));
        player.send(crossfade(&settings));
        let stats = player.stats();
        let measured_tx = internal.clone();
        let pass = Pass::spawn(store.clone(), move |id, levels| {
            let _ = measured_tx.send(Internal::Measured(id, levels));
        })
        .map_err(|e| tracing::error!("cannot start the loudness pass: {e}"))
        .ok();
        let per_minute =
            NonZeroU32::new(cfg.guest_limits.guest_rate_total.max(1)).expect("non-zero");
        let rules = Rules::new(&settings, &cfg.music);
        publisher.set_rules(rules.clone());
        let mut s = State {
            rules,
            autodj_blocked: false,
            name: cfg.name,
            music: cfg.music,
            store,
            player: Some(player),
            player_events: Some(ev_rx),
            stats,
            pass,
            publisher,
            internal,
            settings,
            guests: Guests::default(),
            pairings: Pairings::default(),
            toggles: keyed_limiter(
                cfg.guest_limits.toggles_per_sec,
                cfg.guest_limits.toggles_burst,
            ),
            new_guests: governor::RateLimiter::direct(
                governor::Quota::per_minute(per_minute).allow_burst(per_minute),
            ),
            limits: cfg.guest_limits,
            queue: Queue::default(),
            deck: Deck::default(),
            scan: Scan::default(),
            recent: Vec::new(),
            history: History::default(),
            played_tonight: HashMap::new(),
            library_size: 0,
            output: OutputView {
                description: cfg.output.to_string(),
                ok: true,
            },
            watchdog: crate::notify::Watchdog::from_env(),
            now_dirty: false,
            liked_this_tick: false,
            announced_skip_votes: 0,
            announced_skip_needed: 0,
            presence_dirty: HashSet::new(),
            sound_dirty: false,
            announced_sound: None,
            rooms: cfg.snapcast_rpc.map(RoomsView::connecting),
            needs_resync: false,
            ids: MaxIds::default(),
            ops: Vec::new(),
            out: Vec::new(),
        };
        // Nothing is planned yet: no gain to send.
        let _ = s.deck.set_levelling(Levelling::of(&s.settings));
        s.apply_loaded(loaded);
        Ok(s)
    }

    fn apply_loaded(&mut self, l: Loaded) {
        self.guests.load(l.guests, l.guest_addrs, l.addr_bans);
        self.recent = l.recent;
        self.history.load(l.history);
        self.played_tonight = l.played_tonight;
        self.library_size = l.library_size;
        self.queue
            .load(l.queue, self.guests.banned(), &self.played_tonight);
        // Never hand out an id twice, even if the database lags what memory has seen.
        self.ids = MaxIds {
            guest: self.ids.guest.max(l.ids.guest),
            request: self.ids.request.max(l.ids.request),
            play: self.ids.play.max(l.ids.play),
        };
        if let Some((open, track)) = l.open {
            self.deck.restore(open, track, l.paused_play);
        }
    }

    /// The party's levelling settings changed: what plays and what is planned get their new
    /// gains, and hosts see them.
    fn levelling_changed(&mut self) {
        for cmd in self.deck.set_levelling(Levelling::of(&self.settings)) {
            self.player(cmd);
        }
        self.push_sound();
    }

    /// The crossfade the settings ask for, as the player's command.
    fn crossfade(&self) -> PlayerCommand {
        crossfade(&self.settings)
    }

    fn player(&self, cmd: PlayerCommand) {
        if let Some(p) = &self.player {
            p.send(cmd);
        }
    }

    fn op(&mut self, f: impl FnOnce(&Db) -> Result<(), StoreError> + Send + 'static) {
        self.ops.push(Box::new(f));
    }
}
