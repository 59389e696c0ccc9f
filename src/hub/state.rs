//! The hub's state and its handlers. Each handler validates first and mutates after, collects
//! its writes (`ops`) and its changes (`out`), and ends with `finish`, which hands both to the
//! store in one job: the changes are published, and the caller answered, once the writes are
//! durable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use super::views::*;
use super::{
    address_key, Actor, Answer, Command, Envelope, GuestCreated, GuestLimits, HubConfig, HubError,
    Identity, Publisher, Reply, SettingsPatch,
};
use crate::library::{self, ScanProgress};
use crate::party::{self, Admission, Entry, EntryId, GuestId, PlayId, RecentPlay, Settings};
use crate::player::{Key, PlayItem, Player, PlayerCommand, PlayerEvent};
use crate::store::{Db, GuestRow, MaxIds, OpenPlay, Store, StoreError, Track};

/// Hours without a play that separate two parties ("tonight" is the latest).
pub const PARTY_GAP_MS: i64 = 6 * 3600 * 1000;
/// How often the play position is saved, so a restart resumes close to where it was.
const SAVE_POSITION_EVERY_MS: u64 = 5_000;
/// Recent plays kept in memory beyond the no-repeat window (artist spacing looks at these).
const RECENT_KEEP: usize = 32;
/// How often changes in who is connected are announced.
const PRESENCE_TICK: std::time::Duration = std::time::Duration::from_millis(250);
/// Tracks sampled from the library for each auto-DJ pick.
const AUTODJ_SAMPLE: u32 = 200;
/// How long a ban keeps a guest's addresses out: the night.
pub const ADDRESS_BAN_MS: i64 = 12 * 3600 * 1000;
/// Guests in the host's list besides the connected, banned, busy ones and the screens: the
/// most recent few (a guest not connected can do nothing, so the host rarely needs the rest).
pub const ADMIN_RECENT: usize = 50;
/// How long a pairing code shown on a TV stays good.
pub const PAIRING_MS: i64 = 10 * 60 * 1000;
/// Pairings waiting at once; the oldest goes first.
const PAIRINGS_MAX: usize = 64;

/// A TV waiting for the host to type its code.
struct Pairing {
    code: String,
    /// The secret the TV polls with (the code alone is on the screen for everyone to see).
    claim: String,
    created_ms: i64,
    /// Set once the host paired it; handed to the claim once, then the pairing is gone.
    paired: Option<GuestCreated>,
}

pub(crate) enum Internal {
    RequestTrack {
        actor: Actor,
        track_id: i64,
        track: Result<Option<Track>, String>,
        reply: Option<ReplyTx>,
    },
    AutoPicked {
        generation: u64,
        track: Option<Track>,
    },
    StoreFailed,
    /// A socket of this guest opened (`true`) or closed (from `Hub::connect`'s guard), from
    /// this address key.
    Socket(GuestId, bool, Option<String>),
    Scan(ScanProgress),
    ScanDone(Result<u64, String>),
    Shutdown(oneshot::Sender<()>),
}

/// Everything read from the store at start (and after a failed write, to resync).
/// The meta key holding the id of the play the host paused (empty while nothing is paused).
const PAUSED_PLAY: &str = "paused_play";

pub(crate) struct Loaded {
    guests: Vec<GuestRow>,
    guest_addrs: Vec<(GuestId, String)>,
    addr_bans: Vec<(String, GuestId, i64)>,
    queue: Vec<(Entry, Track)>,
    open: Option<(OpenPlay, Track)>,
    recent: Vec<RecentPlay>,
    played_tonight: HashMap<GuestId, u32>,
    settings: Option<String>,
    /// The play the host paused, if the jukebox stopped while it was paused.
    paused_play: Option<PlayId>,
    ids: MaxIds,
    library_size: u64,
}

impl Loaded {
    fn read(db: &Db) -> Result<Loaded, StoreError> {
        let now = now_ms();
        let recent = db.recent_plays(now - 24 * 3600 * 1000, RECENT_KEEP as u32)?;
        let tonight = match (db.party_start(PARTY_GAP_MS)?, recent.first()) {
            (Some(start), Some(last)) if now - last.started_ms < PARTY_GAP_MS => start,
            _ => now,
        };
        let open = match db.open_play()? {
            Some(p) => db.track(p.track_id)?.map(|t| (p, t)),
            None => None,
        };
        Ok(Loaded {
            guests: db.guests()?,
            guest_addrs: db.guest_addresses()?,
            addr_bans: db.address_bans(now)?,
            queue: db.queued()?,
            open,
            recent,
            played_tonight: db.played_counts(tonight)?,
            settings: db.meta("settings")?,
            paused_play: db.meta(PAUSED_PLAY)?.and_then(|v| v.parse().ok()),
            ids: db.max_ids()?,
            library_size: db.track_count()?,
        })
    }

    pub(crate) async fn load(store: &Store) -> Result<Loaded, StoreError> {
        store.query(Loaded::read).await
    }
}

struct Guest {
    name: String,
    host: bool,
    /// Banned by the host (the token); `State::banned` also holds guests banned by address.
    banned: bool,
    screen: bool,
    /// Live sockets; the skip threshold counts guests with at least one.
    sockets: u32,
    /// A socket of this guest was seen (a guest that never connects is pruned).
    connected_ever: bool,
    /// The address keys it used (its token's and its sockets').
    addrs: HashSet<String>,
    /// The digest of its token (the key of `State::tokens`).
    token: String,
}

struct Queued {
    entry: Entry,
    track: Track,
}

/// What the player has been asked to play (by `Load` or `Preload`) and has not started yet.
#[derive(Clone)]
enum Planned {
    Entry(EntryId, Track),
    Auto(Track),
    Resume(Box<OpenPlay>, Track),
}

impl Planned {
    fn track(&self) -> &Track {
        match self {
            Planned::Entry(_, t) | Planned::Auto(t) | Planned::Resume(_, t) => t,
        }
    }
    fn same(&self, other: &Planned) -> bool {
        match (self, other) {
            (Planned::Entry(a, _), Planned::Entry(b, _)) => a == b,
            (Planned::Auto(a), Planned::Auto(b)) => a.id == b.id,
            _ => false,
        }
    }
}

struct Now {
    play_id: PlayId,
    key: Key,
    track: Track,
    entry_id: Option<EntryId>,
    requester: Option<GuestId>,
    auto: bool,
    position_ms: u64,
    position_at_ms: i64,
    paused: bool,
    likes: HashSet<GuestId>,
    skip_votes: HashSet<GuestId>,
    /// Guests whose like of this play was already announced: un-liking and liking again
    /// changes the count but does not toast again.
    like_announced: HashSet<GuestId>,
    last_saved_ms: u64,
}

type ReplyTx = oneshot::Sender<Answer>;
type Op = Box<dyn FnOnce(&Db) -> Result<(), StoreError> + Send>;

pub(crate) struct State {
    name: String,
    music: PathBuf,
    store: Store,
    player: Option<Player>,
    player_events: Option<mpsc::UnboundedReceiver<PlayerEvent>>,
    publisher: Arc<Publisher>,
    internal: mpsc::UnboundedSender<Internal>,

    settings: Settings,
    guests: HashMap<GuestId, Guest>,
    /// By the digest of the token (as stored).
    tokens: HashMap<String, GuestId>,
    /// Guests whose votes do not count and whose actions are refused: banned by the host, or
    /// seen on an address that a ban covers (never a host).
    banned: HashSet<GuestId>,
    limits: GuestLimits,
    /// Banned address keys: which guests' bans cover them, until when.
    addr_bans: HashMap<String, HashMap<GuestId, i64>>,
    /// Live sockets per address key and guest (guests only: hosts and screens are exempt).
    live_by_addr: HashMap<String, HashMap<GuestId, u32>>,
    /// Guests that never connected, oldest first: pruned once `unused_guest_ttl` passed.
    never_connected: VecDeque<(i64, GuestId)>,
    pairings: VecDeque<Pairing>,
    /// Likes and votes that change something, per guest (all its sockets together).
    toggles: governor::DefaultKeyedRateLimiter<GuestId>,
    /// New guest tokens, all addresses together.
    new_guests: governor::DefaultDirectRateLimiter,
    /// The like count changed since the last `now_playing`: announced on the next tick.
    now_dirty: bool,
    /// A like was already announced in this tick: more likes wait for the next one.
    liked_this_tick: bool,
    /// The skip votes the last `now_playing` carried.
    announced_skip_votes: u32,
    /// Presence ticks, for the once-a-minute chores.
    ticks: u64,
    queue: HashMap<EntryId, Queued>,
    order: Vec<EntryId>,
    /// The head of the queue whose requester was last told "your song is next".
    announced_next: Option<EntryId>,
    now: Option<Now>,
    recent: Vec<RecentPlay>,
    played_tonight: HashMap<GuestId, u32>,
    library_size: u64,
    output: OutputView,
    scan: Option<ScanView>,
    scanning: bool,
    scan_at_start: bool,
    /// systemd's watchdog, pinged from this loop: a hung hub stops the pings.
    watchdog: Option<crate::notify::Watchdog>,

    planned: HashMap<Key, Planned>,
    loading: Option<Key>,
    preloaded: Option<(Key, Planned)>,
    auto_next: Option<Track>,
    auto_generation: u64,
    auto_pending: bool,
    /// Tracks that failed to decode: not picked again by the auto-DJ this run.
    unplayable: HashSet<i64>,
    idle_announced: bool,
    /// Guests whose connected state changed since the last presence tick.
    presence_dirty: HashSet<GuestId>,
    /// The skip threshold the last `now_playing` carried.
    announced_skip_needed: u32,
    /// The key of the latest `Load`: events about older keys are stale.
    last_load: Key,
    needs_resync: bool,
    /// The play to resume (found at start or after a reload), sent by `kick`.
    pending_resume: Option<Planned>,
    /// The play to resume paused: a party the host paused stays paused after a restart.
    resume_paused: Option<PlayId>,
    /// Tells a running scan to stop (shutdown).
    scan_cancel: Arc<std::sync::atomic::AtomicBool>,

    ids: MaxIds,
    next_key: Key,
    ops: Vec<Op>,
    out: Vec<Change>,
}

fn role_of(g: &Guest) -> Role {
    if g.host {
        Role::Host
    } else if g.screen {
        Role::Screen
    } else {
        Role::Guest
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A guest's name: trimmed, at most 32 characters, no control or invisible formatting
/// characters (Unicode category Cf: bidi overrides, zero-width spaces and joiners, the BOM),
/// and, unless `reserved_ok` (the host), not "Host" or "Guest <n>" in any case or width.
pub(crate) fn validate_name(name: &str, reserved_ok: bool) -> Result<String, HubError> {
    use unicode_normalization::UnicodeNormalization;
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let bad = |message: &str| HubError::BadRequest {
        field: "name",
        message: message.into(),
    };
    let n = name.trim();
    if n.chars().count() > 32 {
        return Err(bad("at most 32 characters"));
    }
    if n.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    if n.chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(bad(
            "invisible formatting characters (such as bidi overrides or zero-width spaces) are not allowed",
        ));
    }
    if !reserved_ok {
        // Compared the way a reader sees it: compatibility forms folded (fullwidth letters,
        // ligatures), case ignored, runs of spaces as one.
        let folded: String = n.nfkc().collect::<String>().to_lowercase();
        let words: Vec<&str> = folded.split_whitespace().collect();
        let joined = words.join(" ");
        let guest_n = joined
            .strip_prefix("guest")
            .map(str::trim_start)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
        if joined == "host" || guest_n {
            return Err(bad(
                "\"Host\" and \"Guest <number>\" are reserved; pick another name",
            ));
        }
    }
    Ok(n.to_string())
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
        let mut settings: Settings = loaded
            .settings
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| cfg.settings.clone());
        // Keys given explicitly in the configuration win over what the host set last time.
        settings = crate::config::explicit_over(settings, &cfg.settings, &cfg.explicit_settings);
        settings.volume = settings.volume.min(settings.max_volume);
        player.send(PlayerCommand::SetVolume(settings.volume));
        let mut s = State {
            name: cfg.name,
            music: cfg.music,
            store,
            player: Some(player),
            player_events: Some(ev_rx),
            publisher,
            internal,
            settings,
            guests: HashMap::new(),
            tokens: HashMap::new(),
            banned: HashSet::new(),
            toggles: keyed_limiter(
                cfg.guest_limits.toggles_per_sec,
                cfg.guest_limits.toggles_burst,
            ),
            new_guests: governor::RateLimiter::direct(
                governor::Quota::per_minute(
                    NonZeroU32::new(cfg.guest_limits.guest_rate_total.max(1)).expect("non-zero"),
                )
                .allow_burst(
                    NonZeroU32::new(cfg.guest_limits.guest_rate_total.max(1)).expect("non-zero"),
                ),
            ),
            limits: cfg.guest_limits,
            addr_bans: HashMap::new(),
            live_by_addr: HashMap::new(),
            never_connected: VecDeque::new(),
            pairings: VecDeque::new(),
            now_dirty: false,
            liked_this_tick: false,
            announced_skip_votes: 0,
            ticks: 0,
            queue: HashMap::new(),
            order: Vec::new(),
            announced_next: None,
            now: None,
            recent: Vec::new(),
            played_tonight: HashMap::new(),
            library_size: 0,
            output: OutputView {
                description: cfg.output.to_string(),
                ok: true,
            },
            scan: None,
            scanning: false,
            scan_at_start: cfg.scan_at_start,
            watchdog: crate::notify::Watchdog::from_env(),
            planned: HashMap::new(),
            loading: None,
            preloaded: None,
            auto_next: None,
            auto_generation: 0,
            auto_pending: false,
            unplayable: HashSet::new(),
            idle_announced: false,
            last_load: 0,
            presence_dirty: HashSet::new(),
            announced_skip_needed: 0,
            needs_resync: false,
            pending_resume: None,
            resume_paused: None,
            scan_cancel: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            ids: MaxIds::default(),
            next_key: 0,
            ops: Vec::new(),
            out: Vec::new(),
        };
        s.apply_loaded(loaded);
        Ok(s)
    }

    fn apply_loaded(&mut self, l: Loaded) {
        let sockets: HashMap<GuestId, u32> =
            self.guests.iter().map(|(id, g)| (*id, g.sockets)).collect();
        self.guests.clear();
        self.tokens.clear();
        self.banned.clear();
        self.never_connected.clear();
        let mut addrs: HashMap<GuestId, HashSet<String>> = HashMap::new();
        for (g, a) in l.guest_addrs {
            addrs.entry(g).or_default().insert(a);
        }
        for g in l.guests {
            let sockets = sockets.get(&g.id).copied().unwrap_or(0);
            if !g.connected && !g.is_host && !g.is_screen && sockets == 0 {
                self.never_connected.push_back((g.created_ms, g.id));
            }
            self.tokens.insert(g.token.clone(), g.id);
            self.guests.insert(
                g.id,
                Guest {
                    name: g.name,
                    host: g.is_host,
                    banned: g.banned,
                    screen: g.is_screen,
                    sockets,
                    connected_ever: g.connected || sockets > 0,
                    addrs: addrs.remove(&g.id).unwrap_or_default(),
                    token: g.token,
                },
            );
        }
        self.addr_bans.clear();
        for (addr, g, until) in l.addr_bans {
            self.addr_bans.entry(addr).or_default().insert(g, until);
        }
        self.banned = self.compute_banned();
        self.queue = l
            .queue
            .into_iter()
            .map(|(entry, track)| (entry.id, Queued { entry, track }))
            .collect();
        self.recent = l.recent;
        self.played_tonight = l.played_tonight;
        self.library_size = l.library_size;
        // Never hand out an id twice, even if the database lags what memory has seen.
        self.ids = MaxIds {
            guest: self.ids.guest.max(l.ids.guest),
            request: self.ids.request.max(l.ids.request),
            play: self.ids.play.max(l.ids.play),
        };
        if let Some((open, track)) = l.open {
            if let Some(now) = self.now.as_mut().filter(|n| n.play_id == open.id) {
                now.likes = open.likes.iter().copied().collect();
                now.skip_votes = open.skip_votes.iter().copied().collect();
            } else if self.now.is_none() && self.loading.is_none() {
                self.resume_paused = l.paused_play.filter(|id| *id == open.id);
                self.pending_resume = Some(Planned::Resume(Box::new(open), track));
            }
        }
        self.order = party::order(&self.entries(), &self.banned, &self.played_tonight);
    }

    fn entries(&self) -> Vec<Entry> {
        self.queue.values().map(|q| q.entry.clone()).collect()
    }

    fn key(&mut self) -> Key {
        self.next_key += 1;
        self.next_key
    }

    fn player(&self, cmd: PlayerCommand) {
        if let Some(p) = &self.player {
            p.send(cmd);
        }
    }

    // ---- the loop ----------------------------------------------------------------------

    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Envelope>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut player_events = self.player_events.take().expect("player events");
        self.kick();
        self.finish(None, Ok(Reply::Done));
        if self.scan_at_start {
            self.start_scan();
        }
        let mut presence = tokio::time::interval(PRESENCE_TICK);
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Some(msg) = internal.recv() => {
                    if let Internal::Shutdown(done) = msg {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    self.guarded(None, |s| s.on_internal(msg));
                }
                Some(ev) = player_events.recv() => {
                    self.guarded(None, |s| s.on_player(ev));
                }
                _ = presence.tick() => {
                    if let Some(w) = &mut self.watchdog {
                        w.tick();
                    }
                    self.guarded(None, |s| s.flush_presence());
                }
                env = rx.recv() => match env {
                    Some(Envelope { cmd, reply }) => {
                        let reply = std::sync::Mutex::new(reply);
                        self.guarded(Some(&reply), |s| {
                            let r = reply.lock().unwrap_or_else(|e| e.into_inner()).take();
                            s.on_command(cmd, r)
                        });
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
            }
            if self.needs_resync {
                self.resync().await;
            }
        }
    }

    /// Runs a handler; a panic in it is logged, answered as an internal error, and followed
    /// by a resync from the store, instead of silently killing the hub.
    fn guarded(
        &mut self,
        reply: Option<&std::sync::Mutex<Option<ReplyTx>>>,
        f: impl FnOnce(&mut State),
    ) {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if res.is_err() {
            tracing::error!("a hub handler panicked; resynchronising from the database");
            self.ops.clear();
            self.out.clear();
            if let Some(r) = reply.and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).take())
            {
                let _ = r.send(Answer {
                    result: Err(HubError::Internal("the command failed".into())),
                    after_seq: self.publisher.last_seq(),
                });
            }
            self.needs_resync = true;
        }
    }

    async fn shutdown(&mut self) {
        self.scan_cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(now) = &self.now {
            let (id, pos) = (now.play_id, self.position(now));
            self.op(move |db| db.save_position(id, pos));
        }
        let (tx, rx) = oneshot::channel();
        self.finish(Some(tx), Ok(Reply::Done));
        let _ = rx.await;
        if let Some(player) = self.player.take() {
            let _ = tokio::task::spawn_blocking(move || drop(player)).await;
        }
    }

    /// Reloads the state from the database after a failed write or a panic, before taking
    /// another command: the store runs this read after every write submitted before it, so
    /// what comes back is exactly what is durable.
    async fn resync(&mut self) {
        self.needs_resync = false;
        match Loaded::load(&self.store).await {
            Ok(l) => {
                let before: Vec<EntryId> = self.queue.keys().copied().collect();
                self.apply_loaded(l);
                for id in before {
                    if !self.queue.contains_key(&id) {
                        self.push_entry(id);
                    }
                }
                let all: Vec<EntryId> = self.queue.keys().copied().collect();
                for id in all {
                    self.push_entry(id);
                }
                self.out.push(Change::QueueOrder(self.order.clone()));
                self.push_now();
                self.push_room();
                let online: Vec<GuestId> = self
                    .guests
                    .iter()
                    .filter(|(_, g)| g.sockets > 0)
                    .map(|(id, _)| *id)
                    .collect();
                for g in online {
                    self.push_me(g);
                }
                self.kick();
                self.finish(None, Ok(Reply::Done));
            }
            Err(e) => {
                tracing::error!("reloading the state from the database failed: {e}");
            }
        }
    }

    /// Hands this step's writes and changes to the store; publishes and answers after commit.
    fn finish(&mut self, reply: Option<ReplyTx>, result: Result<Reply, HubError>) {
        let ops = std::mem::take(&mut self.ops);
        let changes = std::mem::take(&mut self.out);
        if ops.is_empty() && changes.is_empty() && reply.is_none() {
            return;
        }
        let publisher = self.publisher.clone();
        let internal = self.internal.clone();
        self.store.write(
            move |db| {
                for op in ops {
                    op(db)?;
                }
                Ok(())
            },
            move |res| match res {
                Ok(()) => {
                    publisher.publish(changes);
                    if let Some(r) = reply {
                        let _ = r.send(Answer {
                            result,
                            after_seq: publisher.last_seq(),
                        });
                    }
                }
                Err(e) => {
                    tracing::error!("saving failed, the change is refused: {e}");
                    if let Some(r) = reply {
                        let _ = r.send(Answer {
                            result: Err(HubError::Internal(format!("could not save: {e}"))),
                            after_seq: publisher.last_seq(),
                        });
                    }
                    let _ = internal.send(Internal::StoreFailed);
                }
            },
        );
    }

    fn op(&mut self, f: impl FnOnce(&Db) -> Result<(), StoreError> + Send + 'static) {
        self.ops.push(Box::new(f));
    }

    fn answer(&mut self, reply: Option<ReplyTx>, result: Result<Reply, HubError>) {
        if result.is_err() {
            // A refused command changes nothing.
            self.ops.clear();
            self.out.clear();
        }
        self.finish(reply, result);
    }

    // ---- views -------------------------------------------------------------------------

    fn display_name(&self, g: GuestId) -> String {
        match self.guests.get(&g) {
            Some(guest) if guest.host && guest.name.is_empty() => "Host".into(),
            Some(guest) if !guest.name.is_empty() => guest.name.clone(),
            _ => format!("Guest {g}"),
        }
    }

    fn is_host(&self, g: GuestId) -> bool {
        self.guests.get(&g).is_some_and(|g| g.host)
    }

    /// In the room: a guest (not a screen) with a live socket, not banned.
    fn in_room(&self, id: &GuestId) -> bool {
        self.guests
            .get(id)
            .is_some_and(|g| g.sockets > 0 && !g.screen && !self.banned.contains(id))
    }

    fn connected(&self) -> usize {
        self.guests
            .iter()
            .filter(|(id, g)| g.sockets > 0 && !g.screen && !self.banned.contains(id))
            .count()
    }

    /// Skip votes count only while their guest is in the room: they are weighed against the
    /// guests connected now, so the two must be the same people.
    fn skip_votes_now(&self, n: &Now) -> u32 {
        let away: HashSet<GuestId> = n
            .skip_votes
            .iter()
            .filter(|g| !self.in_room(g))
            .copied()
            .collect();
        party::skip_votes(&n.skip_votes, &away)
    }

    /// The guests `banned` should hold: banned by the host, or seen on a banned address.
    fn compute_banned(&self) -> HashSet<GuestId> {
        self.guests
            .iter()
            .filter(|(_, g)| {
                !g.host && (g.banned || g.addrs.iter().any(|a| self.addr_bans.contains_key(a)))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    fn skip_needed(&self) -> u32 {
        party::skip_needed(&self.settings, self.connected())
    }

    fn position(&self, n: &Now) -> u64 {
        if n.paused {
            n.position_ms
        } else {
            let ran = (now_ms() - n.position_at_ms).max(0) as u64;
            (n.position_ms + ran).min(n.track.duration_ms.max(n.position_ms))
        }
    }

    fn now_view(&self) -> Option<NowPlayingView> {
        let n = self.now.as_ref()?;
        Some(NowPlayingView {
            play_id: n.play_id,
            track: TrackView::from(&n.track),
            requested_by: n.requester.map(|g| self.display_name(g)),
            requester: n.requester,
            requested_by_host: n.requester.is_some_and(|g| self.is_host(g)),
            entry_id: n.entry_id,
            position_ms: self.position(n),
            server_time_ms: now_ms(),
            paused: n.paused,
            likes: n.likes.iter().filter(|g| !self.banned.contains(g)).count() as u32,
            skip_votes: self.skip_votes_now(n),
            skip_needed: self.skip_needed(),
            volume: self.settings.volume,
            auto: n.auto,
        })
    }

    fn entry_view(&self, id: EntryId) -> Option<QueueEntryView> {
        let q = self.queue.get(&id)?;
        Some(QueueEntryView {
            id,
            track: TrackView::from(&q.track),
            by: q.entry.guest.map(|g| self.display_name(g)),
            guest: q.entry.guest,
            by_host: q.entry.guest.is_some_and(|g| self.is_host(g)),
            votes: q.entry.votes(&self.banned),
            pinned: q.entry.pin.is_some(),
            created_ms: q.entry.created_ms,
        })
    }

    fn me_view(&self, g: GuestId) -> Option<MeView> {
        let guest = self.guests.get(&g)?;
        let in_now = |set: &HashSet<GuestId>| -> Vec<PlayId> {
            match &self.now {
                Some(n) if set.contains(&g) => vec![n.play_id],
                _ => vec![],
            }
        };
        let (liked, skip_voted) = match &self.now {
            Some(n) => (in_now(&n.likes), in_now(&n.skip_votes)),
            None => (vec![], vec![]),
        };
        let voted = self
            .order
            .iter()
            .filter(|id| {
                self.queue
                    .get(id)
                    .is_some_and(|q| q.entry.voters.contains(&g))
            })
            .copied()
            .collect();
        let pending: Vec<EntryId> = self
            .order
            .iter()
            .filter(|id| self.queue.get(id).is_some_and(|q| q.entry.guest == Some(g)))
            .copied()
            .collect();
        let banned = self.banned.contains(&g);
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
            role: role_of(guest),
            liked,
            skip_voted,
            voted,
            pending_requests: pending,
            requests_left: left,
            banned,
        })
    }

    fn room_view(&self) -> RoomView {
        RoomView {
            name: self.name.clone(),
            guests_connected: self.connected() as u32,
            library_size: self.library_size,
            settings: self.settings.clone(),
            audio_ok: self.output.ok,
            scan: self.scan,
        }
    }

    fn guest_admin_view(&self, g: GuestId) -> Option<GuestAdminView> {
        let guest = self.guests.get(&g)?;
        Some(GuestAdminView {
            guest_id: g,
            name: guest.name.clone(),
            role: role_of(guest),
            banned: self.banned.contains(&g),
            connected: guest.sockets > 0,
            pending_requests: self
                .order
                .iter()
                .filter(|id| self.queue.get(id).is_some_and(|q| q.entry.guest == Some(g)))
                .copied()
                .collect(),
            played_tonight: self.played_tonight.get(&g).copied().unwrap_or(0),
        })
    }

    fn snapshot(&self, guest: Option<GuestId>, admin: bool) -> Snapshot {
        // Bounded: whoever matters to the host (connected, banned, with songs waiting or
        // played, hosts and screens) and the most recent others.
        let mut guests: Vec<GuestAdminView> = if admin {
            let mut all: Vec<GuestAdminView> = self
                .guests
                .keys()
                .filter_map(|g| self.guest_admin_view(*g))
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
            now_playing: self.now_view(),
            queue: self
                .order
                .iter()
                .filter_map(|id| self.entry_view(*id))
                .collect(),
            order: self.order.clone(),
            room: self.room_view(),
            me: guest.and_then(|g| self.me_view(g)),
            guests,
            output: self.output.clone(),
        }
    }

    fn push_now(&mut self) {
        self.announced_skip_needed = self.skip_needed();
        self.now_dirty = false;
        let v = self.now_view().map(Box::new);
        self.announced_skip_votes = v.as_ref().map_or(0, |v| v.skip_votes);
        self.out.push(Change::NowPlaying(v));
    }
    fn push_entry(&mut self, id: EntryId) {
        let entry = self.entry_view(id).map(Box::new);
        self.out.push(Change::QueueEntry { id, entry });
    }
    fn push_me(&mut self, g: GuestId) {
        if let Some(m) = self.me_view(g) {
            self.out.push(Change::Me(Box::new(m)));
        }
    }
    fn push_room(&mut self) {
        let r = self.room_view();
        self.out.push(Change::Room(Box::new(r)));
    }
    fn push_guest(&mut self, g: GuestId) {
        if let Some(v) = self.guest_admin_view(g) {
            self.out.push(Change::Guest(Box::new(v)));
        }
    }
    fn push_guest_gone(&mut self, g: GuestId) {
        self.out.push(Change::GuestGone(g));
    }
    fn push_event(&mut self, to: Option<GuestId>, event: Event) {
        self.out.push(Change::Event {
            ts_ms: now_ms(),
            to,
            event,
        });
    }

    /// Recomputes the order; announces it when it changed, tells the requester whose song
    /// became next, and keeps the player's gapless "next" current.
    fn reorder(&mut self) {
        let order = party::order(&self.entries(), &self.banned, &self.played_tonight);
        if order != self.order {
            self.order = order;
            self.out.push(Change::QueueOrder(self.order.clone()));
        }
        if let Some(&head) = self.order.first() {
            if self.announced_next != Some(head) {
                self.announced_next = Some(head);
                let q = &self.queue[&head];
                if let Some(g) = q.entry.guest {
                    let ev = Event::YourRequestNext {
                        entry_id: head,
                        track_id: q.track.id,
                        title: q.track.title.clone(),
                    };
                    self.push_event(Some(g), ev);
                }
            }
        } else {
            self.announced_next = None;
        }
        self.refresh_preload();
    }

    // ---- commands ----------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command, reply: Option<ReplyTx>) {
        if let Command::Request { actor, track_id } = cmd {
            // Answers later, once the store has looked the track up.
            self.request(actor, track_id, reply);
            return;
        }
        let result = self.command(cmd);
        self.answer(reply, result);
    }

    fn command(&mut self, cmd: Command) -> Result<Reply, HubError> {
        match cmd {
            Command::CreateGuest { name, host } => {
                let name = validate_name(name.as_deref().unwrap_or(""), host)?;
                Ok(Reply::Guest(self.create_guest(name, host, false, None)))
            }
            Command::NewGuest { name, addr } => self.new_guest(name, addr),
            Command::Authenticate { token } => {
                let digest = crate::store::token_digest(&token);
                Ok(Reply::Identity(
                    self.tokens.get(&digest).map(|&id| self.identity(id)),
                ))
            }
            Command::Connect { token, addr } => self.connect(&token, addr),
            Command::StartPairing => self.start_pairing(),
            Command::PairScreen { actor, code } => {
                self.host(actor).and_then(|()| self.pair_screen(&code))
            }
            Command::ClaimScreen { claim } => self.claim_screen(&claim),
            Command::RemoveScreen { actor, guest } => {
                self.host(actor).and_then(|()| self.remove_screen(guest))
            }
            Command::SetName { actor, name } => self.set_name(actor, &name),
            Command::Connected { guest } => self.sockets(guest, true),
            Command::Disconnected { guest } => self.sockets(guest, false),
            Command::Like { actor, play_id, on } => self.like(actor, play_id, on),
            Command::VoteSkip { actor, play_id } => self.vote_skip(actor, play_id),
            Command::Request { .. } => Err(HubError::Internal("request out of band".into())),
            Command::Vote {
                actor,
                entry_id,
                on,
            } => self.vote(actor, entry_id, on),
            Command::Snapshot { guest, admin } => {
                Ok(Reply::Snapshot(Box::new(self.snapshot(guest, admin))))
            }
            Command::Status => Ok(Reply::Status(Status {
                library_size: self.library_size,
                guests_connected: self.connected() as u32,
                output: self.output.clone(),
                playing: self.now.as_ref().is_some_and(|n| !n.paused),
                queue_len: self.queue.len(),
            })),
            Command::Play { actor } => self.host(actor).and_then(|()| self.play()),
            Command::Pause { actor } => self.host(actor).and_then(|()| self.pause()),
            Command::Skip { actor, play_id } => self.host(actor).and_then(|()| {
                if let Some(id) = play_id {
                    self.current_play(id)?;
                }
                self.skip_now("host");
                Ok(Reply::Done)
            }),
            Command::Seek { actor, position_ms } => {
                self.host(actor).and_then(|()| self.seek(position_ms))
            }
            Command::SetVolume { actor, volume } => {
                self.host(actor).and_then(|()| self.set_volume(volume))
            }
            Command::Remove { actor, entry_id } => {
                self.host(actor).and_then(|()| self.remove(entry_id))
            }
            Command::Move {
                actor,
                entry_id,
                to,
            } => self
                .host(actor)
                .and_then(|()| self.move_entry(entry_id, to)),
            Command::Ban { actor, guest, on } => {
                self.host(actor).and_then(|()| self.ban(guest, on))
            }
            Command::Settings { actor, patch } => {
                self.host(actor).and_then(|()| self.change_settings(patch))
            }
            Command::Announce { actor, text } => {
                self.host(actor).and_then(|()| self.announce(&text))
            }
            Command::Rescan { actor } => self.host(actor).map(|()| {
                self.start_scan();
                Reply::Done
            }),
        }
    }

    fn host(&self, actor: Actor) -> Result<(), HubError> {
        let is_host = actor.host || self.guests.get(&actor.guest).is_some_and(|g| g.host);
        if is_host {
            Ok(())
        } else {
            Err(HubError::Forbidden)
        }
    }

    /// May this guest vote, like, request or skip-vote? Not a screen, not banned (by token or
    /// address), and (hosts aside) only with a live socket: a token alone is not a guest.
    fn guest_ok(&self, actor: Actor) -> Result<(), HubError> {
        match self.guests.get(&actor.guest) {
            None => Err(HubError::NotFound("guest")),
            Some(g) if g.host => Ok(()),
            Some(g) if g.screen => Err(HubError::Screen),
            Some(g) if g.banned => Err(HubError::Banned),
            Some(_) if self.banned.contains(&actor.guest) => Err(HubError::AddressBanned),
            Some(g) if g.sockets == 0 => Err(HubError::NotConnected),
            Some(_) => Ok(()),
        }
    }

    /// One more like or vote change of this guest, if its budget allows (hosts are exempt).
    fn toggle_ok(&self, g: GuestId) -> Result<(), HubError> {
        if self.is_host(g) {
            return Ok(());
        }
        self.toggles
            .check_key(&g)
            .map_err(|n| HubError::RateLimited {
                message: "slow down: too many changes at once",
                retry_after_ms: wait_ms(n),
            })
    }

    fn identity(&self, id: GuestId) -> Identity {
        let g = &self.guests[&id];
        Identity {
            guest_id: id,
            name: g.name.clone(),
            role: role_of(g),
            banned: self.banned.contains(&id),
        }
    }

    fn addr_banned(&self, key: &str) -> bool {
        let now = now_ms();
        self.addr_bans
            .get(key)
            .is_some_and(|m| m.values().any(|until| *until > now))
    }

    /// `POST /api/guest`: no token for a banned address, and no more than the global rate.
    fn new_guest(
        &mut self,
        name: Option<String>,
        addr: std::net::IpAddr,
    ) -> Result<Reply, HubError> {
        let key = Some(addr)
            .filter(|a| !crate::addr::is_own(*a))
            .map(address_key);
        if key.as_deref().is_some_and(|k| self.addr_banned(k)) {
            return Err(HubError::AddressBanned);
        }
        let name = validate_name(name.as_deref().unwrap_or(""), false)?;
        self.new_guests.check().map_err(|n| HubError::RateLimited {
            message: "many guests are joining right now; try again in a moment",
            retry_after_ms: wait_ms(n),
        })?;
        Ok(Reply::Guest(self.create_guest(name, false, false, key)))
    }

    /// A socket says hello: who it is, whether its address may take part, and (if so) it is
    /// counted at once, so two sockets racing cannot both take the last place.
    fn connect(&mut self, token: &str, addr: Option<std::net::IpAddr>) -> Result<Reply, HubError> {
        let digest = crate::store::token_digest(token);
        let Some(&id) = self.tokens.get(&digest) else {
            return Ok(Reply::Identity(None));
        };
        let key = addr.filter(|a| !crate::addr::is_own(*a)).map(address_key);
        let g = &self.guests[&id];
        let exempt = g.host || g.screen;
        if let Some(k) = key.as_deref().filter(|_| !exempt) {
            let here = self.live_by_addr.get(k);
            let already = here.is_some_and(|m| m.contains_key(&id));
            let cap = self.limits.guests_per_address;
            if !already && here.map_or(0, HashMap::len) >= cap as usize {
                return Err(HubError::TooManyGuests(cap));
            }
        }
        let now = now_ms();
        if let Some(k) = &key {
            let new_addr = self
                .guests
                .get_mut(&id)
                .is_some_and(|g| g.addrs.insert(k.clone()));
            if new_addr {
                let k2 = k.clone();
                self.op(move |db| db.add_guest_address(id, &k2, now));
            }
            if !exempt {
                *self
                    .live_by_addr
                    .entry(k.clone())
                    .or_default()
                    .entry(id)
                    .or_default() += 1;
            }
            // A banned guest that turns up on a new address takes its ban there (a new DHCP
            // lease, another access point).
            if new_addr && !exempt && self.guests.get(&id).is_some_and(|g| g.banned) {
                let until = now + ADDRESS_BAN_MS;
                self.addr_bans
                    .entry(k.clone())
                    .or_default()
                    .insert(id, until);
                let k2 = k.clone();
                self.op(move |db| db.ban_address(&k2, id, until));
                self.bans_changed();
            }
            // A guest seen on a banned address is banned with it (its votes stop counting).
            if new_addr && !exempt && self.addr_banned(k) && !self.banned.contains(&id) {
                self.bans_changed();
            }
        }
        let _ = self.sockets(id, true);
        Ok(Reply::Identity(Some(self.identity(id))))
    }

    fn create_guest(
        &mut self,
        name: String,
        host: bool,
        screen: bool,
        addr: Option<String>,
    ) -> GuestCreated {
        self.ids.guest += 1;
        let id = self.ids.guest;
        let mut rng = rand::rng();
        let token = format!("{:032x}{:032x}", rng.random::<u128>(), rng.random::<u128>());
        let created = now_ms();
        let row = GuestRow {
            id,
            token: crate::store::token_digest(&token),
            name: name.clone(),
            is_host: host,
            banned: false,
            is_screen: screen,
            created_ms: created,
            connected: false,
        };
        self.op(move |db| db.insert_guest(&row, created));
        if let Some(a) = addr.clone() {
            self.op(move |db| db.add_guest_address(id, &a, created));
        }
        self.tokens.insert(crate::store::token_digest(&token), id);
        self.guests.insert(
            id,
            Guest {
                name: name.clone(),
                host,
                banned: false,
                screen,
                sockets: 0,
                connected_ever: false,
                addrs: addr.into_iter().collect(),
                token: crate::store::token_digest(&token),
            },
        );
        if !host && !screen {
            self.never_connected.push_back((created, id));
        }
        self.push_guest(id);
        GuestCreated {
            guest_id: id,
            token,
            name,
        }
    }

    // ---- screens -----------------------------------------------------------------------

    fn start_pairing(&mut self) -> Result<Reply, HubError> {
        let now = now_ms();
        self.pairings.retain(|p| now - p.created_ms < PAIRING_MS);
        while self.pairings.len() >= PAIRINGS_MAX {
            self.pairings.pop_front();
        }
        let mut rng = rand::rng();
        let code = loop {
            let c = format!("{:06}", rng.random_range(0..1_000_000u32));
            if !self.pairings.iter().any(|p| p.code == c) {
                break c;
            }
        };
        let claim = format!("{:032x}", rng.random::<u128>());
        self.pairings.push_back(Pairing {
            code: code.clone(),
            claim: claim.clone(),
            created_ms: now,
            paired: None,
        });
        Ok(Reply::Pairing {
            code,
            claim,
            expires_in_ms: PAIRING_MS as u64,
        })
    }

    fn pair_screen(&mut self, code: &str) -> Result<Reply, HubError> {
        let code: String = code
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        let now = now_ms();
        self.pairings.retain(|p| now - p.created_ms < PAIRING_MS);
        let Some(i) = self
            .pairings
            .iter()
            .position(|p| p.paired.is_none() && p.code == code)
        else {
            return Err(HubError::NotFound(
                "pairing code (it may have expired: the TV shows a new one)",
            ));
        };
        let n = self.guests.values().filter(|g| g.screen).count() + 1;
        let created = self.create_guest(format!("Screen {n}"), false, true, None);
        let guest_id = created.guest_id;
        self.pairings[i].paired = Some(created);
        Ok(Reply::Paired { guest_id })
    }

    fn claim_screen(&mut self, claim: &str) -> Result<Reply, HubError> {
        let now = now_ms();
        let Some(i) = self.pairings.iter().position(|p| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                p.claim.as_bytes(),
                claim.as_bytes(),
            ))
        }) else {
            return Err(HubError::NotFound("pairing"));
        };
        if self.pairings[i].paired.is_some() {
            let p = self.pairings.remove(i).expect("found");
            return Ok(Reply::Guest(p.paired.expect("paired")));
        }
        if now - self.pairings[i].created_ms >= PAIRING_MS {
            self.pairings.remove(i);
            return Err(HubError::NotFound("pairing"));
        }
        Ok(Reply::PairingPending)
    }

    fn remove_screen(&mut self, g: GuestId) -> Result<Reply, HubError> {
        if !self.guests.get(&g).is_some_and(|x| x.screen) {
            return Err(HubError::NotFound("screen"));
        }
        if let Some(x) = self.guests.remove(&g) {
            self.tokens.remove(&x.token);
        }
        self.op(move |db| db.delete_screen(g));
        self.push_guest_gone(g);
        Ok(Reply::Done)
    }

    fn set_name(&mut self, actor: Actor, name: &str) -> Result<Reply, HubError> {
        self.guest_ok(actor)?;
        let name = validate_name(name, self.is_host(actor.guest))?;
        let g = actor.guest;
        if let Some(guest) = self.guests.get_mut(&g) {
            guest.name = name.clone();
        }
        self.op(move |db| db.set_guest_name(g, &name));
        self.push_me(g);
        self.push_guest(g);
        let theirs: Vec<EntryId> = self
            .order
            .iter()
            .filter(|id| self.queue.get(id).is_some_and(|q| q.entry.guest == Some(g)))
            .copied()
            .collect();
        for id in theirs {
            self.push_entry(id);
        }
        if self.now.as_ref().is_some_and(|n| n.requester == Some(g)) {
            self.push_now();
        }
        Ok(Reply::Done)
    }

    /// A socket closed, from the address `addr` (as counted by `connect`).
    fn socket_closed(&mut self, g: GuestId, addr: Option<String>) {
        if let Some(k) = addr {
            if let Some(m) = self.live_by_addr.get_mut(&k) {
                if let Some(n) = m.get_mut(&g) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(&g);
                    }
                }
                if m.is_empty() {
                    self.live_by_addr.remove(&k);
                }
            }
        }
        let _ = self.sockets(g, false);
    }

    fn sockets(&mut self, g: GuestId, open: bool) -> Result<Reply, HubError> {
        let Some(guest) = self.guests.get_mut(&g) else {
            return Err(HubError::NotFound("guest"));
        };
        let before = guest.sockets > 0;
        let first = open && !guest.connected_ever;
        if open {
            guest.sockets += 1;
            guest.connected_ever = true;
        } else {
            guest.sockets = guest.sockets.saturating_sub(1);
        }
        let after = guest.sockets > 0;
        if first {
            let at = now_ms();
            self.op(move |db| db.set_connected(g, at));
        }
        if before != after {
            // Announced on the next presence tick: when a room fills up (or Wi-Fi drops
            // everyone), one update tells everybody instead of one per phone.
            self.presence_dirty.insert(g);
        }
        Ok(Reply::Done)
    }

    /// Every tick: publishes the presence changes gathered since the last one, and the like
    /// count if it changed (a burst of likes is one `now_playing`); once a minute, prunes
    /// guests that never connected and lets expired address bans go.
    fn flush_presence(&mut self) {
        self.ticks += 1;
        if self.ticks % 240 == 0 {
            self.toggles.retain_recent();
            self.toggles.shrink_to_fit();
            let now = now_ms();
            let before = self.addr_bans.len();
            self.addr_bans.retain(|_, m| {
                m.retain(|_, until| *until > now);
                !m.is_empty()
            });
            if self.addr_bans.len() != before {
                self.bans_changed();
            }
        }
        self.prune_unused();
        if !self.presence_dirty.is_empty() {
            let changed: Vec<GuestId> = self.presence_dirty.drain().collect();
            for g in changed {
                self.push_guest(g);
            }
            self.push_room();
        }
        // Likes held back in the last tick go out now, and count as this tick's.
        self.liked_this_tick = self.now_dirty;
        if let Some(n) = &self.now {
            let (needed, votes) = (self.skip_needed(), self.skip_votes_now(n));
            let changed = needed != self.announced_skip_needed
                || votes != self.announced_skip_votes
                || self.now_dirty;
            if !self.check_skip() && changed {
                self.push_now();
            }
        }
        self.now_dirty = false;
        self.finish(None, Ok(Reply::Done));
    }

    /// Deletes guests whose token is older than `unused_guest_ttl` and that never connected
    /// (so never voted, liked or requested: all of that needs a live socket).
    fn prune_unused(&mut self) {
        let ttl = self.limits.unused_guest_ttl.as_millis() as i64;
        let now = now_ms();
        while let Some(&(created, g)) = self.never_connected.front() {
            if now - created < ttl {
                break;
            }
            self.never_connected.pop_front();
            let unused = self.guests.get(&g).is_some_and(|x| {
                !x.connected_ever && x.sockets == 0 && !x.host && !x.screen && !x.banned
            });
            let referenced = self
                .queue
                .values()
                .any(|q| q.entry.guest == Some(g) || q.entry.voters.contains(&g))
                || self.now.as_ref().is_some_and(|n| {
                    n.likes.contains(&g) || n.skip_votes.contains(&g) || n.requester == Some(g)
                })
                || self.played_tonight.contains_key(&g);
            if !unused || referenced {
                continue;
            }
            if let Some(x) = self.guests.remove(&g) {
                self.tokens.remove(&x.token);
            }
            self.banned.remove(&g);
            self.op(move |db| db.delete_unused_guest(g).map(|_| ()));
            self.push_guest_gone(g);
        }
    }

    fn current_play(&self, play_id: PlayId) -> Result<(), HubError> {
        match &self.now {
            Some(n) if n.play_id == play_id => Ok(()),
            _ => Err(HubError::StalePlay),
        }
    }

    fn like(&mut self, actor: Actor, play_id: PlayId, on: bool) -> Result<Reply, HubError> {
        self.guest_ok(actor)?;
        self.current_play(play_id)?;
        let g = actor.guest;
        let by = self.display_name(g);
        let by_host = self.is_host(g);
        let would_change = self
            .now
            .as_ref()
            .is_some_and(|n| n.likes.contains(&g) != on);
        if would_change {
            self.toggle_ok(g)?;
        }
        let Some(n) = self.now.as_mut() else {
            return Err(HubError::StalePlay);
        };
        let changed = if on {
            n.likes.insert(g)
        } else {
            n.likes.remove(&g)
        };
        if !changed {
            return Ok(Reply::Done);
        }
        let (track_id, requester) = (n.track.id, n.requester);
        let first_like = on && n.like_announced.insert(g);
        let ts = now_ms();
        self.op(move |db| db.set_like(play_id, track_id, g, on, ts));
        // One like-caused `now_playing` a tick: the first like of a tick goes out at once
        // (its reply follows it); the rest of a burst goes out with the next tick, as one.
        if self.liked_this_tick {
            self.now_dirty = true;
        } else {
            self.liked_this_tick = true;
            self.push_now();
        }
        self.push_me(g);
        if first_like {
            self.push_event(
                None,
                Event::Liked {
                    play_id,
                    track_id,
                    by: by.clone(),
                    by_id: g,
                    by_host,
                },
            );
            if let Some(r) = requester.filter(|r| *r != g) {
                self.push_event(
                    Some(r),
                    Event::YourRequestLiked {
                        play_id,
                        track_id,
                        by,
                        by_id: g,
                        by_host,
                    },
                );
            }
        }
        Ok(Reply::Done)
    }

    fn vote_skip(&mut self, actor: Actor, play_id: PlayId) -> Result<Reply, HubError> {
        self.guest_ok(actor)?;
        self.current_play(play_id)?;
        let g = actor.guest;
        let by = self.display_name(g);
        let by_host = self.is_host(g);
        let Some(n) = self.now.as_mut() else {
            return Err(HubError::StalePlay);
        };
        if !n.skip_votes.insert(g) {
            return Ok(Reply::Done);
        }
        let votes = self.now.as_ref().map_or(0, |n| self.skip_votes_now(n));
        let needed = self.skip_needed();
        self.op(move |db| db.add_skip_vote(play_id, g));
        self.push_me(g);
        self.push_event(
            None,
            Event::SkipVote {
                play_id,
                votes,
                needed,
                by,
                by_id: g,
                by_host,
            },
        );
        if !self.check_skip() {
            self.push_now();
        }
        Ok(Reply::Done)
    }

    /// Skips the current play when its skip votes reached the threshold. True if it did.
    fn check_skip(&mut self) -> bool {
        let Some(n) = &self.now else { return false };
        let votes = self.skip_votes_now(n);
        if votes > 0 && votes >= self.skip_needed() {
            self.skip_now("votes");
            true
        } else {
            false
        }
    }

    fn request(&mut self, actor: Actor, track_id: i64, reply: Option<ReplyTx>) {
        if let Err(e) = self.guest_ok(actor) {
            self.answer(reply, Err(e));
            return;
        }
        // The library lives in the store; look the track up there and continue when it answers.
        let internal = self.internal.clone();
        let _ = self.store.read(move |db| {
            let track = db.track(track_id).map_err(|e| e.to_string());
            let _ = internal.send(Internal::RequestTrack {
                actor,
                track_id,
                track,
                reply,
            });
        });
    }

    fn request_with_track(
        &mut self,
        actor: Actor,
        track: Option<Track>,
    ) -> Result<Reply, HubError> {
        self.guest_ok(actor)?;
        let is_host = self.host(actor).is_ok();
        let track = track.filter(|t| t.present && !self.unplayable.contains(&t.id));
        let entries = self.entries();
        let ctx = party::RequestCtx {
            settings: &self.settings,
            guest: if is_host { None } else { Some(actor.guest) },
            banned: &self.banned,
            track: track.as_ref().map(|t| (t.id, t.artist.as_str())),
            queue: &entries,
            playing: self.now.as_ref().map(|n| n.track.id),
            recent: &self.recent,
            now_ms: now_ms(),
        };
        let admission = party::admit_request(&ctx).map_err(HubError::Refused)?;
        let Some(track) = track else {
            return Err(HubError::NotFound("track"));
        };
        let g = actor.guest;
        match admission {
            Admission::UpVote(id) => {
                let q = self.queue.get_mut(&id).ok_or(HubError::NotFound("entry"))?;
                if q.entry.voters.insert(g) {
                    self.op(move |db| db.add_vote(id, g));
                    self.push_entry(id);
                    self.reorder();
                    self.push_me(g);
                }
                Ok(Reply::Requested {
                    entry_id: id,
                    upvoted: true,
                })
            }
            Admission::NewEntry => {
                self.ids.request += 1;
                let id = self.ids.request;
                let entry = Entry {
                    id,
                    track_id: track.id,
                    artist: track.artist.clone(),
                    guest: Some(g),
                    created_ms: now_ms(),
                    voters: [g].into_iter().collect(),
                    pin: None,
                };
                let row = entry.clone();
                self.op(move |db| db.insert_request(&row));
                let ev = Event::Requested {
                    entry_id: id,
                    track_id: track.id,
                    title: track.title.clone(),
                    artist: track.artist.clone(),
                    by: Some(self.display_name(g)),
                    by_id: Some(g),
                    by_host: self.is_host(g),
                };
                self.queue.insert(id, Queued { entry, track });
                self.push_entry(id);
                self.reorder();
                self.push_me(g);
                self.push_guest(g);
                self.push_event(None, ev);
                if self.now.is_none() && self.loading.is_none() {
                    self.advance();
                }
                Ok(Reply::Requested {
                    entry_id: id,
                    upvoted: false,
                })
            }
        }
    }

    fn vote(&mut self, actor: Actor, entry_id: EntryId, on: bool) -> Result<Reply, HubError> {
        self.guest_ok(actor)?;
        let g = actor.guest;
        let q = self
            .queue
            .get_mut(&entry_id)
            .ok_or(HubError::NotFound("entry"))?;
        if !on && q.entry.guest == Some(g) {
            return Err(HubError::BadRequest {
                field: "on",
                message: "your own request always keeps your vote".into(),
            });
        }
        if q.entry.voters.contains(&g) != on {
            self.toggle_ok(g)?;
        }
        let Some(q) = self.queue.get_mut(&entry_id) else {
            return Err(HubError::NotFound("entry"));
        };
        let changed = if on {
            q.entry.voters.insert(g)
        } else {
            q.entry.voters.remove(&g)
        };
        if changed {
            if on {
                self.op(move |db| db.add_vote(entry_id, g));
            } else {
                self.op(move |db| db.remove_vote(entry_id, g));
            }
            self.push_entry(entry_id);
            self.reorder();
            self.push_me(g);
        }
        Ok(Reply::Done)
    }

    fn play(&mut self) -> Result<Reply, HubError> {
        match self.now.as_mut() {
            Some(n) if n.paused => {
                n.paused = false;
                n.position_at_ms = now_ms();
                self.player(PlayerCommand::Resume);
                self.op(|db| db.set_meta(PAUSED_PLAY, ""));
                self.push_now();
            }
            Some(_) => {}
            None => {
                if self.loading.is_none() {
                    self.advance();
                }
            }
        }
        Ok(Reply::Done)
    }

    fn pause(&mut self) -> Result<Reply, HubError> {
        let pos = self.now.as_ref().map(|n| self.position(n));
        if let (Some(n), Some(pos)) = (self.now.as_mut(), pos) {
            if !n.paused {
                n.paused = true;
                n.position_ms = pos;
                n.position_at_ms = now_ms();
                let id = n.play_id;
                self.player(PlayerCommand::Pause);
                self.op(move |db| {
                    db.save_position(id, pos)?;
                    db.set_meta(PAUSED_PLAY, &id.to_string())
                });
                self.push_now();
            }
        }
        Ok(Reply::Done)
    }

    fn seek(&mut self, position_ms: u64) -> Result<Reply, HubError> {
        let n = self.now.as_mut().ok_or(HubError::NotFound("play"))?;
        let pos = position_ms.min(n.track.duration_ms.saturating_sub(1));
        n.position_ms = pos;
        n.position_at_ms = now_ms();
        self.player(PlayerCommand::Seek(pos));
        self.push_now();
        Ok(Reply::Done)
    }

    fn save_settings(&mut self) {
        let json = serde_json::to_string(&self.settings).unwrap_or_default();
        self.op(move |db| db.set_meta("settings", &json));
    }

    fn set_volume(&mut self, volume: u32) -> Result<Reply, HubError> {
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
        if self.now.is_some() {
            self.push_now();
        }
        Ok(Reply::Done)
    }

    fn remove_entry(&mut self, id: EntryId, state: &'static str) -> Option<Queued> {
        let q = self.queue.remove(&id)?;
        let at = now_ms();
        self.op(move |db| db.end_request(id, state, at));
        self.push_entry(id);
        Some(q)
    }

    fn remove(&mut self, entry_id: EntryId) -> Result<Reply, HubError> {
        let q = self
            .remove_entry(entry_id, "removed")
            .ok_or(HubError::NotFound("entry"))?;
        self.reorder();
        if let Some(g) = q.entry.guest {
            self.push_me(g);
            self.push_guest(g);
        }
        for v in q.entry.voters {
            if Some(v) != q.entry.guest {
                self.push_me(v);
            }
        }
        Ok(Reply::Done)
    }

    fn move_entry(&mut self, entry_id: EntryId, to: usize) -> Result<Reply, HubError> {
        let pinned: HashSet<EntryId> = self
            .queue
            .values()
            .filter(|q| q.entry.pin.is_some())
            .map(|q| q.entry.id)
            .collect();
        let pins = party::move_entry(&self.order, &pinned, entry_id, to)
            .ok_or(HubError::NotFound("entry"))?;
        for (id, pin) in pins {
            if let Some(q) = self.queue.get_mut(&id) {
                if q.entry.pin != Some(pin) {
                    let was_pinned = q.entry.pin.is_some();
                    q.entry.pin = Some(pin);
                    self.op(move |db| db.set_pin(id, Some(pin)));
                    if !was_pinned {
                        self.push_entry(id);
                    }
                }
            }
        }
        self.reorder();
        Ok(Reply::Done)
    }

    /// A ban covers the guest's token and, for the night (`ADDRESS_BAN_MS`), every address it
    /// used: no new token from there, and every other guest seen there is banned with it. An
    /// unban lifts the token's ban and every ban of its addresses.
    fn ban(&mut self, target: GuestId, on: bool) -> Result<Reply, HubError> {
        let guest = self
            .guests
            .get_mut(&target)
            .ok_or(HubError::NotFound("guest"))?;
        if guest.host {
            return Err(HubError::BadRequest {
                field: "guest_id",
                message: "the host cannot be banned".into(),
            });
        }
        if guest.screen {
            return Err(HubError::BadRequest {
                field: "guest_id",
                message: "a screen cannot vote; remove it instead (remove_screen)".into(),
            });
        }
        let addrs: Vec<String> = guest.addrs.iter().cloned().collect();
        if on {
            let until = now_ms() + ADDRESS_BAN_MS;
            let already = guest.banned;
            guest.banned = true;
            if !already {
                self.op(move |db| db.set_banned(target, true));
            }
            for a in addrs {
                self.addr_bans
                    .entry(a.clone())
                    .or_default()
                    .insert(target, until);
                self.op(move |db| db.ban_address(&a, target, until));
            }
        } else {
            if !guest.banned && !self.banned.contains(&target) {
                return Ok(Reply::Done);
            }
            guest.banned = false;
            self.op(move |db| db.set_banned(target, false));
            for a in &addrs {
                self.addr_bans.remove(a);
            }
            self.op(move |db| db.unban_addresses(&addrs));
        }
        self.bans_changed();
        self.push_me(target);
        self.push_guest(target);
        Ok(Reply::Done)
    }

    /// Recomputes who is banned (by token or address) and applies the difference: the newly
    /// banned lose their queued requests, and everyone's votes stop or start counting.
    fn bans_changed(&mut self) {
        let new = self.compute_banned();
        let added: Vec<GuestId> = new.difference(&self.banned).copied().collect();
        let lifted: Vec<GuestId> = self.banned.difference(&new).copied().collect();
        self.banned = new;
        if added.is_empty() && lifted.is_empty() {
            return;
        }
        for g in &added {
            let theirs: Vec<EntryId> = self
                .queue
                .values()
                .filter(|q| q.entry.guest == Some(*g))
                .map(|q| q.entry.id)
                .collect();
            for id in theirs {
                self.remove_entry(id, "removed");
            }
        }
        let touched: HashSet<GuestId> = added.iter().chain(lifted.iter()).copied().collect();
        let voted: Vec<EntryId> = self
            .queue
            .values()
            .filter(|q| q.entry.voters.iter().any(|v| touched.contains(v)))
            .map(|q| q.entry.id)
            .collect();
        for id in voted {
            self.push_entry(id);
        }
        self.reorder();
        for g in touched {
            self.push_me(g);
            self.push_guest(g);
        }
        self.push_room();
        if !self.check_skip() && self.now.is_some() {
            self.push_now();
        }
    }

    fn change_settings(&mut self, p: SettingsPatch) -> Result<Reply, HubError> {
        for (field, v) in [
            ("request_limit", p.request_limit),
            ("no_repeat_minutes", p.no_repeat_minutes),
            ("artist_spacing", p.artist_spacing),
            ("skip_min_votes", p.skip_min_votes),
            ("skip_percent", p.skip_percent),
            ("max_volume", p.max_volume),
        ] {
            if let Some(v) = v {
                party::check_setting(field, i64::from(v))
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
        if let Some(v) = p.max_volume {
            s.max_volume = v;
            if s.volume > v {
                s.volume = v;
                self.player(PlayerCommand::SetVolume(v));
            }
        }
        self.save_settings();
        self.push_room();
        // `requests_left` is personal: only a new cap changes it, for guests with requests.
        if p.request_limit.is_some() {
            let with_requests: HashSet<GuestId> =
                self.queue.values().filter_map(|q| q.entry.guest).collect();
            for g in with_requests {
                self.push_me(g);
            }
        }
        if !self.check_skip() && self.now.is_some() {
            self.push_now();
        }
        Ok(Reply::Done)
    }

    fn announce(&mut self, text: &str) -> Result<Reply, HubError> {
        let text = text.trim();
        let n = text.chars().count();
        if n == 0 || n > 280 {
            return Err(HubError::BadRequest {
                field: "text",
                message: "1 to 280 characters".into(),
            });
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(HubError::BadRequest {
                field: "text",
                message: "control characters are not allowed".into(),
            });
        }
        self.push_event(
            None,
            Event::HostMessage {
                text: text.to_string(),
            },
        );
        Ok(Reply::Done)
    }

    // ---- playback ----------------------------------------------------------------------

    /// When nothing plays or loads: resume the play that was going on (at start, or after a
    /// reload), or start the next one.
    fn kick(&mut self) {
        if self.now.is_some() || self.loading.is_some() {
            return;
        }
        match self.pending_resume.take() {
            Some(p @ Planned::Resume(..)) => {
                if let Planned::Resume(open, track) = &p {
                    tracing::info!(
                        "resuming {} - {} at {} s",
                        track.artist,
                        track.title,
                        open.position_ms / 1000
                    );
                }
                self.load(p);
            }
            _ => self.advance(),
        }
    }

    /// Ends the current play (if any) as skipped and moves on.
    fn skip_now(&mut self, reason: &'static str) {
        if let Some(n) = self.now.take() {
            let pos = self.position(&n);
            let (id, at) = (n.play_id, now_ms());
            self.op(move |db| db.end_play(id, at, "skipped", pos));
            self.push_event(
                None,
                Event::Skipped {
                    play_id: Some(n.play_id),
                    track_id: n.track.id,
                    reason,
                },
            );
            self.forget_play(&n);
        }
        self.loading = None;
        self.advance();
    }

    /// Guests who liked or skip-voted a play that ended get their (now empty) lists.
    fn forget_play(&mut self, n: &Now) {
        let touched: HashSet<GuestId> = n.likes.union(&n.skip_votes).copied().collect();
        for g in touched {
            self.push_me(g);
        }
    }

    /// Starts the next thing: the head of the queue, else an auto-DJ pick.
    fn advance(&mut self) {
        self.preloaded = None;
        let planned = if let Some(p) = self.head() {
            Some(p)
        } else {
            self.auto_next.take().map(Planned::Auto)
        };
        match planned {
            Some(p) => self.load(p),
            None => {
                if !self.auto_pending && self.library_size > 0 {
                    self.request_auto();
                }
                if self.now.is_none() && self.loading.is_none() {
                    self.stop();
                    if !self.idle_announced {
                        self.idle_announced = true;
                        self.push_now();
                    }
                }
            }
        }
    }

    /// The first entry of the queue order that is still queued.
    fn head(&self) -> Option<Planned> {
        self.order.iter().find_map(|id| {
            self.queue
                .get(id)
                .map(|q| Planned::Entry(*id, q.track.clone()))
        })
    }

    fn load(&mut self, p: Planned) {
        let key = self.key();
        let start_ms = match &p {
            Planned::Resume(open, _) => open.position_ms,
            _ => 0,
        };
        // A Load clears the player's "next": forget everything planned before.
        self.planned.clear();
        self.preloaded = None;
        self.player(PlayerCommand::Load(PlayItem {
            key,
            path: p.track().path.clone(),
            start_ms,
        }));
        self.planned.insert(key, p);
        self.loading = Some(key);
        self.last_load = key;
    }

    /// Nothing left to play: the player stops and forgets its "next".
    fn stop(&mut self) {
        self.player(PlayerCommand::Stop);
        self.planned.clear();
        self.preloaded = None;
        self.loading = None;
    }

    fn request_auto(&mut self) {
        self.auto_pending = true;
        self.auto_generation += 1;
        let generation = self.auto_generation;
        let now = now_ms();
        let window = i64::from(self.settings.no_repeat_minutes) * 60_000;
        let mut exclude: Vec<i64> = self
            .recent
            .iter()
            .filter(|p| now - p.started_ms < window)
            .map(|p| p.track_id)
            .collect();
        exclude.extend(self.queue.values().map(|q| q.track.id));
        exclude.extend(self.unplayable.iter().copied());
        if let Some(n) = &self.now {
            exclude.push(n.track.id);
        }
        let mut recent = self.recent.clone();
        if let Some(n) = &self.now {
            if recent.first().map(|r| r.track_id) != Some(n.track.id) {
                recent.insert(
                    0,
                    RecentPlay {
                        track_id: n.track.id,
                        artist: n.track.artist.clone(),
                        started_ms: now,
                    },
                );
            }
        }
        let settings = self.settings.clone();
        let unplayable = self.unplayable.clone();
        let internal = self.internal.clone();
        let _ = self.store.read(move |db| {
            let pick = db
                .autodj_candidates(&exclude, AUTODJ_SAMPLE)
                .map(|c| {
                    let c: Vec<_> = c
                        .into_iter()
                        .filter(|c| !unplayable.contains(&c.track_id))
                        .collect();
                    party::pick_autodj(&c, &recent, &settings, now, rand::rng().random())
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
    fn refresh_preload(&mut self) {
        if self.now.is_none() {
            return;
        }
        let desired = if let Some(p) = self.head() {
            Some(p)
        } else if let Some(t) = &self.auto_next {
            Some(Planned::Auto(t.clone()))
        } else {
            if !self.auto_pending && self.library_size > 0 {
                self.request_auto();
            }
            None
        };
        let same = match (&self.preloaded, &desired) {
            (Some((_, a)), Some(b)) => a.same(b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        match desired {
            Some(p) => {
                let key = self.key();
                self.player(PlayerCommand::Preload(Some(PlayItem {
                    key,
                    path: p.track().path.clone(),
                    start_ms: 0,
                })));
                self.planned.insert(key, p.clone());
                self.preloaded = Some((key, p));
            }
            None => {
                self.player(PlayerCommand::Preload(None));
                self.preloaded = None;
            }
        }
    }

    fn on_player(&mut self, ev: PlayerEvent) {
        match ev {
            PlayerEvent::Started {
                key,
                duration_ms,
                position_ms,
            } => self.started(key, duration_ms, position_ms),
            PlayerEvent::Position { key, position_ms } => {
                if let Some(n) = self.now.as_mut().filter(|n| n.key == key) {
                    n.position_ms = position_ms;
                    n.position_at_ms = now_ms();
                    if position_ms.abs_diff(n.last_saved_ms) >= SAVE_POSITION_EVERY_MS {
                        n.last_saved_ms = position_ms;
                        let id = n.play_id;
                        self.op(move |db| db.save_position(id, position_ms));
                    }
                }
            }
            PlayerEvent::Finished { key, next } => {
                // Only the play going on now can finish; anything else was already replaced.
                if let Some(n) = self.now.take_if(|n| n.key == key) {
                    let (id, at, pos) = (n.play_id, now_ms(), n.track.duration_ms);
                    self.op(move |db| db.end_play(id, at, "finished", pos));
                    self.forget_play(&n);
                    self.preloaded = None;
                    match next.filter(|k| *k > self.last_load) {
                        // The player went on to it without a gap; its Started follows.
                        Some(k) => self.loading = Some(k),
                        None => self.advance(),
                    }
                }
            }
            PlayerEvent::Error { key, message } => {
                if key < self.last_load {
                    return;
                }
                let Some(p) = self.planned.remove(&key) else {
                    return;
                };
                let track = p.track().clone();
                tracing::warn!(
                    "skipping unplayable track {}: {message}",
                    track.path.display()
                );
                self.unplayable.insert(track.id);
                if let Planned::Entry(id, _) = &p {
                    if let Some(q) = self.remove_entry(*id, "removed") {
                        if let Some(g) = q.entry.guest {
                            self.push_me(g);
                        }
                    }
                    self.reorder();
                }
                if let Planned::Resume(open, _) = &p {
                    let (id, at) = (open.id, now_ms());
                    self.op(move |db| db.end_play(id, at, "error", 0));
                }
                self.push_event(
                    None,
                    Event::Skipped {
                        play_id: None,
                        track_id: track.id,
                        reason: "unplayable",
                    },
                );
                if self.loading == Some(key) || self.now.is_none() {
                    self.loading = None;
                    if self.preloaded.as_ref().is_some_and(|(k, _)| *k == key) {
                        self.preloaded = None;
                    }
                    self.advance();
                }
            }
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

    fn started(&mut self, key: Key, duration_ms: Option<u64>, start_ms: u64) {
        if key < self.last_load {
            // Superseded by a later Load that the player is about to start.
            return;
        }
        let Some(p) = self.planned.remove(&key) else {
            // The player plays something no longer planned: take control again.
            tracing::warn!("the player started an item that is no longer planned; moving on");
            self.loading = None;
            self.now = None;
            self.advance();
            return;
        };
        // Anything planned before this key is stale now.
        self.planned.retain(|k, _| *k > key);
        if self.preloaded.as_ref().is_some_and(|(k, _)| *k <= key) {
            self.preloaded = None;
        }
        if let Planned::Entry(id, _) = &p {
            if !self.queue.contains_key(id) {
                // Removed (or its guest banned) after it was preloaded: not played.
                tracing::info!("not playing entry {id}: it left the queue");
                self.loading = None;
                self.advance();
                return;
            }
        }
        self.loading = None;
        self.idle_announced = false;
        if let Some(old) = self.now.take() {
            let (id, at, pos) = (old.play_id, now_ms(), self.position(&old));
            self.op(move |db| db.end_play(id, at, "skipped", pos));
            self.forget_play(&old);
        }
        let started_ms = now_ms();
        let mut track = p.track().clone();
        if let Some(d) = duration_ms.filter(|d| *d > 0) {
            track.duration_ms = d;
        }
        let resumed = matches!(p, Planned::Resume(..));
        let (play_id, entry_id, requester, auto, position, likes, skips) = match p {
            Planned::Resume(open, _) => (
                open.id,
                open.request_id,
                open.guest_id,
                open.request_id.is_none(),
                start_ms,
                open.likes.iter().copied().collect(),
                open.skip_votes.iter().copied().collect(),
            ),
            Planned::Entry(id, _) => {
                self.ids.play += 1;
                let play_id = self.ids.play;
                let (requester, entry) = match self.remove_entry(id, "played") {
                    Some(q) => (q.entry.guest, Some(id)),
                    None => (None, None),
                };
                if let Some(g) = requester {
                    *self.played_tonight.entry(g).or_default() += 1;
                }
                let track_id = track.id;
                self.op(move |db| db.insert_play(play_id, track_id, entry, started_ms));
                (
                    play_id,
                    entry,
                    requester,
                    false,
                    0,
                    HashSet::new(),
                    HashSet::new(),
                )
            }
            Planned::Auto(_) => {
                self.ids.play += 1;
                let play_id = self.ids.play;
                let track_id = track.id;
                self.op(move |db| db.insert_play(play_id, track_id, None, started_ms));
                (play_id, None, None, true, 0, HashSet::new(), HashSet::new())
            }
        };
        // A long break means a new party: fairness starts over.
        if self
            .recent
            .first()
            .is_some_and(|r| started_ms - r.started_ms >= PARTY_GAP_MS)
        {
            self.played_tonight.clear();
        }
        // A resumed play is already in the history read at start.
        if !resumed {
            self.recent.insert(
                0,
                RecentPlay {
                    track_id: track.id,
                    artist: track.artist.clone(),
                    started_ms,
                },
            );
            // Keep every play inside the no-repeat window, and a few more for artist spacing.
            let window = i64::from(self.settings.no_repeat_minutes) * 60_000;
            let mut i = 0;
            self.recent.retain(|r| {
                i += 1;
                i <= RECENT_KEEP || started_ms - r.started_ms < window
            });
        }
        self.auto_next = None;
        self.auto_pending = false;
        self.auto_generation += 1;
        tracing::info!(
            "playing: {} - {}{}",
            if track.artist.is_empty() {
                "?"
            } else {
                &track.artist
            },
            track.title,
            match requester {
                Some(g) => format!(" (requested by {})", self.display_name(g)),
                None if resumed => " (resumed)".to_string(),
                None => " (auto-DJ)".to_string(),
            }
        );
        let ev = Event::TrackStarted {
            play_id,
            track_id: track.id,
            title: track.title.clone(),
            artist: track.artist.clone(),
            requested_by: requester.map(|g| self.display_name(g)),
            requested_by_id: requester,
            requested_by_host: requester.is_some_and(|g| self.is_host(g)),
        };
        // Paused by the host when the jukebox stopped: it stays paused until the host plays.
        let paused = resumed && self.resume_paused.take() == Some(play_id);
        if paused {
            self.player(PlayerCommand::Pause);
        }
        self.now = Some(Now {
            play_id,
            key,
            track,
            entry_id,
            requester,
            auto,
            position_ms: position,
            position_at_ms: started_ms,
            paused,
            // A like announced before a restart is not announced again.
            like_announced: likes.clone(),
            likes,
            skip_votes: skips,
            last_saved_ms: position,
        });
        self.push_now();
        self.push_event(None, ev);
        if let Some(g) = requester {
            self.push_me(g);
            self.push_guest(g);
        }
        self.reorder();
        // A resumed play may already have enough skip votes for the guests connected now.
        self.check_skip();
    }

    // ---- internal ----------------------------------------------------------------------

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::RequestTrack {
                actor,
                track_id,
                track,
                reply,
            } => {
                let result = match track {
                    Ok(t) => self.request_with_track(actor, t),
                    Err(e) => Err(HubError::Internal(format!("reading track {track_id}: {e}"))),
                };
                self.answer(reply, result);
                return;
            }
            Internal::AutoPicked { generation, track } => {
                if generation != self.auto_generation {
                    return;
                }
                self.auto_pending = false;
                if self.now.is_none() && self.loading.is_none() {
                    match track {
                        Some(t) => self.load(Planned::Auto(t)),
                        None => tracing::info!("nothing to play: the library is empty"),
                    }
                } else {
                    self.auto_next = track;
                    self.refresh_preload();
                }
            }
            Internal::StoreFailed => self.needs_resync = true,
            Internal::Socket(g, true, _) => {
                let _ = self.sockets(g, true);
            }
            Internal::Socket(g, false, addr) => self.socket_closed(g, addr),
            Internal::Scan(p) => {
                self.scan = Some(p.into());
                self.push_room();
                // A first scan of a big library: start the music with what is indexed so far.
                if p.read > 0 && self.now.is_none() && self.loading.is_none() && !self.auto_pending
                {
                    self.request_auto();
                }
            }
            Internal::ScanDone(res) => {
                self.scanning = false;
                match res {
                    Ok(size) => {
                        self.library_size = size;
                        if let Some(s) = self.scan.as_mut() {
                            s.done = true;
                        }
                    }
                    Err(e) => {
                        tracing::error!("library scan failed: {e}");
                        // Over all the same: nobody should wait for it (the host's progress
                        // bar, systemd's READY on a first start).
                        if let Some(s) = self.scan.as_mut() {
                            s.done = true;
                        }
                    }
                }
                self.push_room();
                if self.now.is_none() && self.loading.is_none() {
                    self.advance();
                } else {
                    self.refresh_preload();
                }
            }
            Internal::Shutdown(_) => {}
        }
        self.finish(None, Ok(Reply::Done));
    }

    fn start_scan(&mut self) {
        if self.scanning {
            return;
        }
        self.scanning = true;
        self.scan = Some(ScanView {
            files: 0,
            read: 0,
            done: false,
        });
        self.push_room();
        let (store, music, internal, cancel) = (
            self.store.clone(),
            self.music.clone(),
            self.internal.clone(),
            self.scan_cancel.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("scan".into())
            .spawn(move || {
                let progress_tx = internal.clone();
                let progress = move |p: ScanProgress| {
                    let _ = progress_tx.send(Internal::Scan(p));
                };
                let res = library::scan(&music, &store, &progress, &cancel)
                    .map_err(|e| e.to_string())
                    .and_then(|report| {
                        tracing::info!(
                            "library: {} audio files in {} ({} read, {} unchanged, {} removed, {} unreadable) in {} ms",
                            report.files,
                            music.display(),
                            report.read,
                            report.unchanged,
                            report.removed,
                            report.skipped,
                            report.elapsed.as_millis()
                        );
                        store
                            .call_blocking(|db| db.track_count())
                            .map_err(|e| e.to_string())
                    });
                let _ = internal.send(Internal::ScanDone(res));
            });
        if let Err(e) = spawned {
            self.scanning = false;
            tracing::error!("cannot start the library scan: {e}");
        }
    }
}
