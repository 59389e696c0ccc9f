//! The party rules as plain data and pure functions: queue order with round-robin fairness,
//! request admission (cap, duplicates, no-repeat window, artist spacing, pause), the skip
//! threshold, host moves, and the auto-DJ pick. No IO, no async, no clocks: every input,
//! including "now" and the random draw, is a parameter, so each rule is a table of cases.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::protocol::ErrorCode;

pub use crate::ids::{EntryId, GuestId, PlayId, TrackId};

pub mod rules;
pub use rules::{Facts, Rule, Rules};

/// Party settings; every one is configurable at start and changeable live by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Most pending requests one guest may have.
    pub request_limit: u32,
    /// A track played within this many minutes is refused and not auto-played.
    pub no_repeat_minutes: u32,
    /// A request is refused when its artist is among this many most recent plays.
    pub artist_spacing: u32,
    /// Skip votes that are always needed, however few guests are connected.
    pub skip_min_votes: u32,
    /// Share (percent) of connected guests whose votes skip a play.
    pub skip_percent: u32,
    /// Current volume, 0..=100.
    pub volume: u32,
    /// Volume cap set by the host; nobody can set the volume above it.
    pub max_volume: u32,
    /// While true only the host can add requests.
    pub requests_paused: bool,
    /// How tracks are brought to one loudness.
    pub normalize: Normalize,
    /// The loudness every track is brought to, in whole LUFS.
    pub loudness_lufs: i32,
    /// Seconds two tracks of different albums overlap (0: none).
    pub crossfade_s: u32,
    /// Whether Snapcast's clients (Snapweb, Snapdroid) may play, pause and skip through the
    /// stream plugin: snapserver 0.26 lets anyone on its control port do what the plugin
    /// allows.
    #[serde(deserialize_with = "on_off")]
    pub snapcast_control: bool,
    /// Content rules ([`rules`]): artists whose songs guests may not request and the auto-DJ
    /// does not pick.
    pub blocked_artists: Vec<String>,
    /// Words (or phrases) that refuse a song when its title, artist or album has them.
    pub blocked_words: Vec<String>,
    /// The longest song allowed, in minutes (0: no limit).
    pub max_track_minutes: u32,
    /// Requests and the auto-DJ only from this folder of the library (relative to it).
    pub pool: Option<String>,
}

/// An on/off setting: `true`/`false`, or the words `on`/`off` a flag or the file gives.
fn on_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OnOff {
        Bool(bool),
        Word(String),
    }
    match OnOff::deserialize(d)? {
        OnOff::Bool(b) => Ok(b),
        OnOff::Word(w) => match w.as_str() {
            "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("{w:?} is not on or off"))),
        },
    }
}

/// Loudness levelling: which loudness a track's gain is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// The album's while consecutive plays come from one album, the track's otherwise.
    Auto,
    /// Always the track's own.
    Track,
    /// Always the album's (the track's while its album is not known yet).
    Album,
    /// No levelling: every track as mastered.
    Off,
}

impl Normalize {
    /// Every mode, as the wire and the configuration spell it.
    pub const NAMES: &'static [&'static str] = &["auto", "track", "album", "off"];

    pub fn as_str(self) -> &'static str {
        match self {
            Normalize::Auto => "auto",
            Normalize::Track => "track",
            Normalize::Album => "album",
            Normalize::Off => "off",
        }
    }
}

/// The values a setting may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// A whole number in `lo..=hi`.
    Range(i64, i64),
    /// One of these words.
    Words(&'static [&'static str]),
    /// A list of names or words ([`rules::check_list`]).
    List,
    /// A folder inside the music folder, or none ([`rules::check_pool`]).
    Folder,
}

impl Allowed {
    /// `value`, or why it is refused with what is allowed.
    pub fn number(self, value: i64) -> Result<i64, String> {
        match self {
            Allowed::Range(lo, hi) if (lo..=hi).contains(&value) => Ok(value),
            Allowed::Range(lo, hi) => Err(format!("{value} is out of range; allowed {lo}..={hi}")),
            _ => Err(format!("{value} is not a word; allowed {self}")),
        }
    }

    /// `word`, or why it is refused with what is allowed.
    pub fn word(self, word: &str) -> Result<&'static str, String> {
        match self {
            Allowed::Words(words) => words
                .iter()
                .find(|w| **w == word)
                .copied()
                .ok_or_else(|| format!("{word:?} is not allowed; allowed {self}")),
            Allowed::Range(..) => Err(format!("{word:?} is not a number; allowed {self}")),
            Allowed::List | Allowed::Folder => Err(format!("{word:?}: allowed {self}")),
        }
    }
}

impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allowed::Range(lo, hi) => write!(f, "{lo}..={hi}"),
            Allowed::Words(words) => f.write_str(&words.join(", ")),
            Allowed::List => write!(
                f,
                "a list of at most {} entries of up to {} characters",
                rules::MAX_LIST_ITEMS,
                rules::MAX_ITEM_CHARS
            ),
            Allowed::Folder => f.write_str("a folder inside the music folder, or none"),
        }
    }
}

/// What each setting that is not on/off may be, by its configuration key. One table, used
/// by the configuration at start and by the host's live changes.
pub const SETTING_RULES: &[(&str, Allowed)] = &[
    ("request_limit", Allowed::Range(1, 50)),
    ("no_repeat_minutes", Allowed::Range(0, 1440)),
    ("artist_spacing", Allowed::Range(0, 20)),
    ("skip_min_votes", Allowed::Range(1, 100)),
    ("skip_percent", Allowed::Range(1, 100)),
    ("volume", Allowed::Range(0, 100)),
    ("max_volume", Allowed::Range(0, 100)),
    ("normalize", Allowed::Words(Normalize::NAMES)),
    ("loudness_lufs", Allowed::Range(-30, -5)),
    ("crossfade_s", Allowed::Range(0, 12)),
    ("snapcast_control", Allowed::Words(&["on", "off"])),
    ("blocked_artists", Allowed::List),
    ("blocked_words", Allowed::List),
    ("max_track_minutes", Allowed::Range(0, 600)),
    ("pool", Allowed::Folder),
];

/// The rule of `key`, if it has one.
pub fn allowed(key: &str) -> Option<Allowed> {
    SETTING_RULES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, a)| *a)
}

/// Checks the number `value` against the rule of `key`; the error says the value and what
/// is allowed.
pub fn check_setting(key: &str, value: i64) -> Result<i64, String> {
    match allowed(key) {
        Some(a) => a.number(value),
        None => Ok(value),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            request_limit: 3,
            no_repeat_minutes: 60,
            artist_spacing: 2,
            skip_min_votes: 2,
            skip_percent: 50,
            volume: 70,
            max_volume: 100,
            requests_paused: false,
            normalize: Normalize::Auto,
            loudness_lufs: -14,
            crossfade_s: 0,
            snapcast_control: false,
            blocked_artists: Vec::new(),
            blocked_words: Vec::new(),
            max_track_minutes: 0,
            pool: None,
        }
    }
}

/// A pending request in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: EntryId,
    pub track_id: TrackId,
    pub artist: String,
    /// Who asked for it; `None` for the host or the auto-DJ.
    pub guest: Option<GuestId>,
    pub created_ms: i64,
    /// Everyone who up-voted it, the requester included (their request is their first vote).
    pub voters: HashSet<GuestId>,
    /// Set by a host move: pinned entries come first, in pin order, ahead of the vote order.
    pub pin: Option<u32>,
    /// Who the requester dedicated it to ("for Anna"), as [`dedication`] accepted it.
    pub dedication: Option<String>,
}

impl Entry {
    /// Votes that count: banned guests' votes do not.
    pub fn votes(&self, banned: &HashSet<GuestId>) -> u32 {
        self.voters.iter().filter(|g| !banned.contains(g)).count() as u32
    }
}

/// A play that already happened (or is happening), newest first in the slices below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentPlay {
    pub track_id: TrackId,
    pub artist: String,
    pub started_ms: i64,
}

/// The queue order: pinned entries first (host moves), then more votes first; among equal
/// votes the guest who has had fewer requests played tonight; then the earlier request.
pub fn order(
    entries: &[Entry],
    banned: &HashSet<GuestId>,
    played_tonight: &HashMap<GuestId, u32>,
) -> Vec<EntryId> {
    let mut keyed: Vec<(&Entry, u32, u32)> = entries
        .iter()
        .map(|e| {
            let played = e
                .guest
                .and_then(|g| played_tonight.get(&g).copied())
                .unwrap_or(0);
            (e, e.votes(banned), played)
        })
        .collect();
    keyed.sort_by(|(a, av, ap), (b, bv, bp)| {
        let pin = |e: &Entry| e.pin.map_or(u64::MAX, u64::from);
        pin(a)
            .cmp(&pin(b))
            .then(bv.cmp(av))
            .then(ap.cmp(bp))
            .then(a.created_ms.cmp(&b.created_ms))
            .then(a.id.cmp(&b.id))
    });
    keyed.into_iter().map(|(e, _, _)| e.id).collect()
}

/// Why a request was refused; each says it in words a guest understands, and carries the
/// numbers it states (the wire sends them as `error.data`, protocol::refusal_data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you have been removed from this party by the host")]
    Banned,
    #[error("that song is not in the library")]
    NotFound,
    #[error("the host has paused requests")]
    RequestsPaused,
    #[error("that song is playing right now")]
    PlayingNow,
    #[error(
        "played {minutes_ago} minutes ago; it can be requested again in {wait_minutes} minutes"
    )]
    RecentlyPlayed { minutes_ago: i64, wait_minutes: i64 },
    /// `plays_ago` plays came after the artist's (0: it is the latest); a request waits until
    /// `spacing` plays came after it.
    #[error("{}", artist_spacing_message(artist, *plays_ago))]
    ArtistSpacing {
        artist: String,
        plays_ago: u32,
        spacing: u32,
    },
    #[error("you already have {limit} songs waiting")]
    LimitReached { limit: u32 },
    #[error("{}", not_allowed_message(*rule, *max_minutes))]
    NotAllowed { rule: Rule, max_minutes: u32 },
}

fn not_allowed_message(rule: Rule, max_minutes: u32) -> String {
    match rule {
        Rule::BlockedArtist => "the host does not allow songs by this artist tonight".into(),
        Rule::BlockedWord => "the host does not allow this song tonight".into(),
        Rule::TooLong => format!("the host allows songs of up to {max_minutes} minutes tonight"),
        Rule::NotInPool => "the host plays only songs from tonight's playlist".into(),
    }
}

impl Refusal {
    /// The refusal of a content rule.
    pub fn not_allowed(rule: Rule, rules: &Rules) -> Refusal {
        Refusal::NotAllowed {
            rule,
            max_minutes: rules.max_minutes(),
        }
    }
}

/// The longest dedication, in characters.
pub const MAX_DEDICATION_CHARS: usize = 40;

/// A request's dedication ("for Anna") as given: trimmed, `None` when empty; refused when
/// longer than [`MAX_DEDICATION_CHARS`] or with control or invisible formatting characters.
pub fn dedication(given: Option<&str>) -> Result<Option<String>, String> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let Some(d) = given.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    if d.chars().count() > MAX_DEDICATION_CHARS {
        return Err(format!("at most {MAX_DEDICATION_CHARS} characters"));
    }
    if d.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    if d.chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err("invisible formatting characters are not allowed".into());
    }
    Ok(Some(d.to_string()))
}

fn artist_spacing_message(artist: &str, plays_ago: u32) -> String {
    match plays_ago {
        0 => format!("{artist} was just played; pick another artist for now"),
        1 => format!("{artist} played 1 song ago; pick another artist for now"),
        n => format!("{artist} played {n} songs ago; pick another artist for now"),
    }
}

impl Refusal {
    /// The stable protocol error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Banned => ErrorCode::Forbidden,
            Refusal::NotFound => ErrorCode::NotFound,
            Refusal::RequestsPaused => ErrorCode::RequestsPaused,
            Refusal::PlayingNow | Refusal::RecentlyPlayed { .. } => ErrorCode::RecentlyPlayed,
            Refusal::ArtistSpacing { .. } => ErrorCode::ArtistSpacing,
            Refusal::LimitReached { .. } => ErrorCode::LimitReached,
            Refusal::NotAllowed { .. } => ErrorCode::NotAllowed,
        }
    }
}

/// What a request turns into when it is admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A new queue entry.
    NewEntry,
    /// The track is already queued: the request counts as an up-vote on that entry.
    UpVote(EntryId),
}

/// Everything the request rule looks at.
pub struct RequestCtx<'a> {
    pub settings: &'a Settings,
    /// `None` when the host requests: the host is not capped, paused or spaced.
    pub guest: Option<GuestId>,
    pub banned: &'a HashSet<GuestId>,
    /// The requested track and what the content rules look at, or `None` when the track is
    /// not (or no longer) in the library.
    pub track: Option<(TrackId, Facts<'a>)>,
    pub rules: &'a Rules,
    pub queue: &'a [Entry],
    /// The play going on now, if any: its track cannot be requested.
    pub playing: Option<TrackId>,
    /// Newest first, the play going on now included.
    pub recent: &'a [RecentPlay],
    pub now_ms: i64,
}

pub fn admit_request(ctx: &RequestCtx<'_>) -> Result<Admission, Refusal> {
    if let Some(g) = ctx.guest {
        if ctx.banned.contains(&g) {
            return Err(Refusal::Banned);
        }
    }
    let Some((track_id, facts)) = ctx.track else {
        return Err(Refusal::NotFound);
    };
    let artist = facts.artist;
    // A guest's request for a refused song is refused even when it is queued already (the
    // host's, or from before the rule): it would be an up-vote for what the rules keep out.
    if ctx.guest.is_some() {
        if let Some(rule) = ctx.rules.check(&facts) {
            return Err(Refusal::not_allowed(rule, ctx.rules));
        }
    }
    if let Some(e) = ctx.queue.iter().find(|e| e.track_id == track_id) {
        return Ok(Admission::UpVote(e.id));
    }
    let Some(guest) = ctx.guest else {
        return Ok(Admission::NewEntry);
    };
    let s = ctx.settings;
    if s.requests_paused {
        return Err(Refusal::RequestsPaused);
    }
    if ctx.playing == Some(track_id) {
        return Err(Refusal::PlayingNow);
    }
    let window_ms = i64::from(s.no_repeat_minutes) * 60_000;
    if let Some(p) = ctx
        .recent
        .iter()
        .find(|p| p.track_id == track_id && ctx.now_ms - p.started_ms < window_ms)
    {
        let ago = (ctx.now_ms - p.started_ms).max(0);
        return Err(Refusal::RecentlyPlayed {
            minutes_ago: ago / 60_000,
            wait_minutes: (window_ms - ago + 59_999) / 60_000,
        });
    }
    if let Some(plays_ago) = artist_recent(artist, ctx.recent, s.artist_spacing) {
        return Err(Refusal::ArtistSpacing {
            artist: artist.trim().to_string(),
            plays_ago,
            spacing: s.artist_spacing,
        });
    }
    let pending = ctx.queue.iter().filter(|e| e.guest == Some(guest)).count() as u32;
    if pending >= s.request_limit {
        return Err(Refusal::LimitReached {
            limit: s.request_limit,
        });
    }
    Ok(Admission::NewEntry)
}

/// Artists compare case-insensitively; an unknown (empty) artist never collides.
fn same_artist(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    !a.is_empty() && a.to_lowercase() == b.to_lowercase()
}

/// How many plays came after the artist's latest one, when that is fewer than `spacing`.
fn artist_recent(artist: &str, recent: &[RecentPlay], spacing: u32) -> Option<u32> {
    recent
        .iter()
        .take(spacing as usize)
        .position(|p| same_artist(&p.artist, artist))
        .map(|i| i as u32)
}

/// Skip votes needed to skip the current play: max(min votes, ceil(percent × connected)).
pub fn skip_needed(s: &Settings, connected_guests: usize) -> u32 {
    let by_share = (connected_guests as u64 * u64::from(s.skip_percent)).div_ceil(100) as u32;
    by_share.max(s.skip_min_votes)
}

/// Skip votes that count (banned guests' do not).
pub fn skip_votes(voters: &HashSet<GuestId>, banned: &HashSet<GuestId>) -> u32 {
    voters.iter().filter(|g| !banned.contains(g)).count() as u32
}

/// A host move: put `entry` at `to` (0 = next) in the current order. The entries from the
/// front down to the moved one become pinned in their new order, so later votes cannot undo
/// the host's decision; the rest stays ordered by votes. Returns the new pins.
pub fn move_entry(
    current_order: &[EntryId],
    pinned: &HashSet<EntryId>,
    entry: EntryId,
    to: usize,
) -> Option<Vec<(EntryId, u32)>> {
    let from = current_order.iter().position(|&e| e == entry)?;
    let mut new_order = current_order.to_vec();
    new_order.remove(from);
    let to = to.min(new_order.len());
    new_order.insert(to, entry);
    let pinned_len = new_order
        .iter()
        .rposition(|e| pinned.contains(e))
        .map_or(0, |i| i + 1)
        .max(to + 1);
    Some(
        new_order[..pinned_len]
            .iter()
            .enumerate()
            .map(|(i, &e)| (e, i as u32))
            .collect(),
    )
}

/// A track the auto-DJ may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub track_id: TrackId,
    pub artist: String,
    /// All-time likes: more likes, more likely.
    pub likes: u32,
    pub title: String,
    pub album: String,
    pub duration_ms: u64,
    pub path: std::path::PathBuf,
}

impl Candidate {
    fn facts(&self) -> Facts<'_> {
        Facts {
            artist: &self.artist,
            title: &self.title,
            album: &self.album,
            duration_ms: self.duration_ms,
            path: &self.path,
        }
    }
}

/// Picks the next track when the queue is empty. Only tracks the content rules allow; among
/// them it prefers tracks outside the no-repeat window whose artist was not among the last
/// `artist_spacing` plays; relaxes spacing, then the window, rather than let the music stop
/// (a small library), but never the content rules: with nothing they allow, `None`.
/// Weighted by likes; `draw` is a uniform number in [0, 1).
pub fn pick_autodj(
    candidates: &[Candidate],
    recent: &[RecentPlay],
    s: &Settings,
    rules: &Rules,
    now_ms: i64,
    draw: f64,
) -> Option<TrackId> {
    let allowed: Vec<Candidate>;
    let candidates = if rules.is_open() {
        candidates
    } else {
        allowed = candidates
            .iter()
            .filter(|c| rules.check(&c.facts()).is_none())
            .cloned()
            .collect();
        &allowed[..]
    };
    let window_ms = i64::from(s.no_repeat_minutes) * 60_000;
    let last_played = |t: TrackId| recent.iter().find(|p| p.track_id == t);
    let in_window =
        |c: &Candidate| last_played(c.track_id).is_some_and(|p| now_ms - p.started_ms < window_ms);
    let strict = |c: &Candidate| {
        !in_window(c) && artist_recent(&c.artist, recent, s.artist_spacing.max(1)).is_none()
    };
    for pool in [
        candidates.iter().filter(|c| strict(c)).collect::<Vec<_>>(),
        candidates.iter().filter(|c| !in_window(c)).collect(),
    ] {
        if !pool.is_empty() {
            return Some(weighted(&pool, draw));
        }
    }
    // Everything was played within the window (a small library): replay the track heard
    // longest ago rather than let the music stop.
    let started = |c: &Candidate| last_played(c.track_id).map_or(i64::MIN, |p| p.started_ms);
    candidates
        .iter()
        .min_by_key(|c| started(c))
        .map(|c| c.track_id)
}

fn weighted(pool: &[&Candidate], draw: f64) -> TrackId {
    let weight = |c: &Candidate| 1.0 + f64::from(c.likes.min(1000));
    let total: f64 = pool.iter().map(|c| weight(c)).sum();
    let mut target = draw.clamp(0.0, 1.0) * total;
    for c in pool {
        target -= weight(c);
        if target < 0.0 {
            return c.track_id;
        }
    }
    pool[pool.len() - 1].track_id
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tables below spell ids as plain numbers; these build the typed ids from them.
    fn entry(id: i64, guest: Option<i64>, created: i64, voters: &[i64]) -> Entry {
        Entry {
            id: EntryId::new(id),
            track_id: TrackId::new(id * 10),
            artist: format!("artist{id}"),
            guest: guest.map(GuestId::new),
            created_ms: created,
            voters: set(voters),
            pin: None,
            dedication: None,
        }
    }

    fn set<T: From<i64> + Eq + std::hash::Hash>(ids: &[i64]) -> HashSet<T> {
        ids.iter().map(|&i| T::from(i)).collect()
    }

    fn ids<T: From<i64>>(ids: &[i64]) -> Vec<T> {
        ids.iter().map(|&i| T::from(i)).collect()
    }

    #[test]
    fn order_rule() {
        struct Case {
            name: &'static str,
            entries: Vec<Entry>,
            banned: Vec<i64>,
            played: Vec<(i64, u32)>,
            want: Vec<i64>,
        }
        let cases = vec![
            Case {
                name: "more votes plays sooner",
                entries: vec![entry(1, Some(1), 1, &[1]), entry(2, Some(2), 2, &[2, 3, 4])],
                banned: vec![],
                played: vec![],
                want: vec![2, 1],
            },
            Case {
                name: "equal votes: fewer played tonight first (round robin)",
                entries: vec![entry(1, Some(1), 1, &[1]), entry(2, Some(2), 2, &[2])],
                banned: vec![],
                played: vec![(1, 2), (2, 0)],
                want: vec![2, 1],
            },
            Case {
                name: "equal votes, equal fairness: earlier request first",
                entries: vec![entry(2, Some(2), 5, &[2]), entry(1, Some(1), 3, &[1])],
                banned: vec![],
                played: vec![(1, 1), (2, 1)],
                want: vec![1, 2],
            },
            Case {
                name: "a banned guest's votes stop counting",
                entries: vec![
                    entry(1, Some(1), 1, &[1, 9, 8]),
                    entry(2, Some(2), 2, &[2, 3]),
                ],
                banned: vec![9, 8],
                played: vec![],
                want: vec![2, 1],
            },
            Case {
                name: "host and auto entries have no fairness penalty",
                entries: vec![entry(1, Some(1), 1, &[1]), entry(2, None, 2, &[5])],
                banned: vec![],
                played: vec![(1, 3)],
                want: vec![2, 1],
            },
            Case {
                name: "a pinned entry stays ahead of votes",
                entries: vec![
                    Entry {
                        pin: Some(0),
                        ..entry(1, Some(1), 1, &[1])
                    },
                    entry(2, Some(2), 2, &[2, 3, 4, 5]),
                ],
                banned: vec![],
                played: vec![],
                want: vec![1, 2],
            },
            Case {
                name: "empty queue",
                entries: vec![],
                banned: vec![],
                played: vec![],
                want: vec![],
            },
        ];
        for c in cases {
            let played = c.played.into_iter().map(|(g, n)| (GuestId::new(g), n));
            let got = order(&c.entries, &set(&c.banned), &played.collect());
            assert_eq!(got, ids::<EntryId>(&c.want), "{}", c.name);
        }
    }

    #[test]
    fn request_rule() {
        let now = 100 * 60_000;
        let recent = vec![
            RecentPlay {
                track_id: TrackId::new(500),
                artist: "ABBA".into(),
                started_ms: now - 3 * 60_000,
            },
            RecentPlay {
                track_id: TrackId::new(501),
                artist: "Queen".into(),
                started_ms: now - 20 * 60_000,
            },
            RecentPlay {
                track_id: TrackId::new(502),
                artist: "Blur".into(),
                started_ms: now - 70 * 60_000,
            },
        ];
        let queue = vec![
            entry(1, Some(7), 1, &[7]),
            entry(2, Some(7), 2, &[7]),
            entry(3, Some(8), 3, &[8]),
        ];
        struct Case {
            name: &'static str,
            guest: Option<i64>,
            track: Option<(i64, &'static str)>,
            settings: Settings,
            banned: Vec<i64>,
            want: Result<Admission, Refusal>,
        }
        let s = Settings::default();
        let cases = vec![
            Case {
                name: "a fresh track is queued",
                guest: Some(8),
                track: Some((900, "Pulp")),
                settings: s.clone(),
                banned: vec![],
                want: Ok(Admission::NewEntry),
            },
            Case {
                name: "already queued counts as an up-vote",
                guest: Some(9),
                track: Some((30, "artist3")),
                settings: s.clone(),
                banned: vec![],
                want: Ok(Admission::UpVote(EntryId::new(3))),
            },
            Case {
                name: "unknown track",
                guest: Some(8),
                track: None,
                settings: s.clone(),
                banned: vec![],
                want: Err(Refusal::NotFound),
            },
            Case {
                name: "banned guest",
                guest: Some(8),
                track: Some((900, "Pulp")),
                settings: s.clone(),
                banned: vec![8],
                want: Err(Refusal::Banned),
            },
            Case {
                name: "requests paused",
                guest: Some(8),
                track: Some((900, "Pulp")),
                settings: Settings {
                    requests_paused: true,
                    ..s.clone()
                },
                banned: vec![],
                want: Err(Refusal::RequestsPaused),
            },
            Case {
                name: "playing right now",
                guest: Some(8),
                track: Some((500, "ABBA")),
                settings: s.clone(),
                banned: vec![],
                want: Err(Refusal::PlayingNow),
            },
            Case {
                name: "played within the window",
                guest: Some(8),
                track: Some((501, "Queen")),
                settings: Settings {
                    artist_spacing: 0,
                    ..s.clone()
                },
                banned: vec![],
                want: Err(Refusal::RecentlyPlayed {
                    minutes_ago: 20,
                    wait_minutes: 40,
                }),
            },
            Case {
                name: "played before the window is fine",
                guest: Some(8),
                track: Some((502, "Blur")),
                settings: s.clone(),
                banned: vec![],
                want: Ok(Admission::NewEntry),
            },
            Case {
                name: "artist heard in the last two tracks (case-insensitive)",
                guest: Some(8),
                track: Some((901, "queen ")),
                settings: s.clone(),
                banned: vec![],
                want: Err(Refusal::ArtistSpacing {
                    artist: "queen".into(),
                    plays_ago: 1,
                    spacing: 2,
                }),
            },
            Case {
                name: "artist of the current play",
                guest: Some(8),
                track: Some((903, "ABBA")),
                settings: s.clone(),
                banned: vec![],
                want: Err(Refusal::ArtistSpacing {
                    artist: "ABBA".into(),
                    plays_ago: 0,
                    spacing: 2,
                }),
            },
            Case {
                name: "artist spacing 1 only looks at the current play",
                guest: Some(8),
                track: Some((901, "Queen")),
                settings: Settings {
                    artist_spacing: 1,
                    ..s.clone()
                },
                banned: vec![],
                want: Ok(Admission::NewEntry),
            },
            Case {
                name: "unknown artist never collides",
                guest: Some(8),
                track: Some((902, "")),
                settings: s.clone(),
                banned: vec![],
                want: Ok(Admission::NewEntry),
            },
            Case {
                name: "cap reached",
                guest: Some(7),
                track: Some((900, "Pulp")),
                settings: Settings {
                    request_limit: 2,
                    ..s.clone()
                },
                banned: vec![],
                want: Err(Refusal::LimitReached { limit: 2 }),
            },
            Case {
                name: "under the cap",
                guest: Some(7),
                track: Some((900, "Pulp")),
                settings: s.clone(),
                banned: vec![],
                want: Ok(Admission::NewEntry),
            },
            Case {
                name: "the host is not capped, paused or spaced",
                guest: None,
                track: Some((501, "Queen")),
                settings: Settings {
                    requests_paused: true,
                    request_limit: 1,
                    ..s.clone()
                },
                banned: vec![],
                want: Ok(Admission::NewEntry),
            },
            Case {
                name: "a duplicate is an up-vote even at the cap",
                guest: Some(7),
                track: Some((30, "artist3")),
                settings: Settings {
                    request_limit: 2,
                    ..s.clone()
                },
                banned: vec![],
                want: Ok(Admission::UpVote(EntryId::new(3))),
            },
        ];
        let open = Rules::default();
        for c in cases {
            let banned = set(&c.banned);
            let ctx = RequestCtx {
                settings: &c.settings,
                guest: c.guest.map(GuestId::new),
                banned: &banned,
                track: c.track.map(|(t, a)| (TrackId::new(t), facts(a))),
                rules: &open,
                queue: &queue,
                playing: Some(TrackId::new(500)),
                recent: &recent,
                now_ms: now,
            };
            assert_eq!(admit_request(&ctx), c.want, "{}", c.name);
        }
    }

    #[test]
    fn refusals_read_as_plain_words() {
        let r = Refusal::RecentlyPlayed {
            minutes_ago: 20,
            wait_minutes: 40,
        };
        assert_eq!(
            r.to_string(),
            "played 20 minutes ago; it can be requested again in 40 minutes"
        );
        assert_eq!(
            Refusal::LimitReached { limit: 3 }.to_string(),
            "you already have 3 songs waiting"
        );
        let spaced = |plays_ago| Refusal::ArtistSpacing {
            artist: "ABBA".into(),
            plays_ago,
            spacing: 3,
        };
        assert_eq!(
            spaced(0).to_string(),
            "ABBA was just played; pick another artist for now"
        );
        assert_eq!(
            spaced(1).to_string(),
            "ABBA played 1 song ago; pick another artist for now"
        );
        assert_eq!(
            spaced(2).to_string(),
            "ABBA played 2 songs ago; pick another artist for now"
        );
    }

    #[test]
    fn skip_threshold_rule() {
        // (min votes, percent, connected guests, needed)
        let table = [
            (2, 50, 0, 2),
            (2, 50, 1, 2),
            (2, 50, 3, 2),
            (2, 50, 4, 2),
            (2, 50, 5, 3),
            (2, 50, 12, 6),
            (2, 50, 13, 7),
            (1, 100, 3, 3),
            (5, 10, 20, 5),
            (2, 34, 10, 4),
        ];
        for (min, pct, connected, want) in table {
            let s = Settings {
                skip_min_votes: min,
                skip_percent: pct,
                ..Settings::default()
            };
            assert_eq!(
                skip_needed(&s, connected),
                want,
                "min {min} pct {pct} connected {connected}"
            );
        }
    }

    #[test]
    fn skip_votes_rule() {
        // (voters, banned, counted)
        let table: [(&[i64], &[i64], u32); 4] = [
            (&[], &[], 0),
            (&[1, 2], &[], 2),
            (&[1, 2, 3], &[2], 2),
            (&[4], &[4], 0),
        ];
        for (voters, banned, want) in table {
            assert_eq!(skip_votes(&set(voters), &set(banned)), want, "{voters:?}");
        }
    }

    #[test]
    fn move_rule() {
        // (order, pinned, entry, to, want pins)
        type Case<'a> = (&'a [i64], &'a [i64], i64, usize, Option<Vec<(i64, u32)>>);
        let table: [Case; 6] = [
            (&[1, 2, 3], &[], 3, 0, Some(vec![(3, 0)])),
            (&[1, 2, 3], &[], 1, 2, Some(vec![(2, 0), (3, 1), (1, 2)])),
            (
                &[1, 2, 3],
                &[1, 2],
                3,
                0,
                Some(vec![(3, 0), (1, 1), (2, 2)]),
            ),
            (&[1, 2, 3], &[1, 2], 1, 1, Some(vec![(2, 0), (1, 1)])),
            (&[1, 2, 3], &[], 2, 99, Some(vec![(1, 0), (3, 1), (2, 2)])),
            (&[1, 2, 3], &[], 7, 0, None),
        ];
        for (order, pinned, e, to, want) in table {
            assert_eq!(
                move_entry(&ids(order), &set(pinned), EntryId::new(e), to),
                want.map(|pins| pins
                    .into_iter()
                    .map(|(e, pin)| (EntryId::new(e), pin))
                    .collect()),
                "{order:?} {e}->{to}"
            );
        }
    }

    fn facts(artist: &str) -> Facts<'_> {
        Facts {
            artist,
            title: "Title",
            album: "Album",
            duration_ms: 180_000,
            path: std::path::Path::new("/music/Pop/x.flac"),
        }
    }

    fn cand(id: i64, artist: &str, likes: u32) -> Candidate {
        Candidate {
            track_id: TrackId::new(id),
            artist: artist.into(),
            likes,
            title: format!("Song {id}"),
            album: String::new(),
            duration_ms: 180_000,
            path: format!(
                "/music/{}/{id}.flac",
                if id % 2 == 0 { "Wedding" } else { "Pop" }
            )
            .into(),
        }
    }

    /// The content rules refuse guests' requests (a queued track too: no up-vote for what
    /// they keep out), and let the host's pass.
    #[test]
    fn content_rules_refuse_guests_requests() {
        let s = Settings {
            blocked_artists: vec!["ABBA".into()],
            ..Settings::default()
        };
        let rules = Rules::new(&s, std::path::Path::new("/music"));
        let mut queued = entry(3, None, 1, &[]);
        queued.track_id = TrackId::new(30);
        let queue = vec![queued];
        let banned = HashSet::new();
        let ask = |guest: Option<i64>, track: i64, artist: &'static str| {
            admit_request(&RequestCtx {
                settings: &s,
                guest: guest.map(GuestId::new),
                banned: &banned,
                track: Some((TrackId::new(track), facts(artist))),
                rules: &rules,
                queue: &queue,
                playing: None,
                recent: &[],
                now_ms: 0,
            })
        };
        let refused = Err(Refusal::NotAllowed {
            rule: Rule::BlockedArtist,
            max_minutes: 0,
        });
        assert_eq!(ask(Some(1), 10, "abba"), refused, "a guest");
        assert_eq!(ask(Some(1), 30, "ABBA"), refused, "queued already");
        assert_eq!(
            ask(Some(1), 30, "Queen"),
            Ok(Admission::UpVote(EntryId::new(3)))
        );
        assert_eq!(ask(Some(1), 10, "Queen"), Ok(Admission::NewEntry));
        assert_eq!(ask(None, 10, "ABBA"), Ok(Admission::NewEntry), "the host");
        assert_eq!(
            Refusal::NotAllowed {
                rule: Rule::TooLong,
                max_minutes: 8
            }
            .to_string(),
            "the host allows songs of up to 8 minutes tonight"
        );
    }

    /// The auto-DJ never breaks a content rule, whatever the window or the spacing leave:
    /// with nothing allowed it picks nothing.
    #[test]
    fn autodj_keeps_the_content_rules() {
        let s = Settings {
            pool: Some("Wedding".into()),
            ..Settings::default()
        };
        let rules = Rules::new(&s, std::path::Path::new("/music"));
        let cands: Vec<Candidate> = (1..=10).map(|i| cand(i, &format!("A{i}"), 0)).collect();
        for draw in 0..20 {
            let pick = pick_autodj(&cands, &[], &s, &rules, 0, f64::from(draw) / 20.0).unwrap();
            assert_eq!(pick.get() % 2, 0, "{pick} is outside the pool");
        }
        // Every pool track was just played: one of them again, never one outside.
        let recent: Vec<RecentPlay> = [2, 4, 6, 8, 10]
            .iter()
            .map(|&i| RecentPlay {
                track_id: TrackId::new(i),
                artist: format!("A{i}"),
                started_ms: -i,
            })
            .collect();
        let pick = pick_autodj(&cands, &recent, &s, &rules, 0, 0.5).unwrap();
        assert_eq!(pick, TrackId::new(10), "the pool track heard longest ago");
        let only_pop: Vec<Candidate> = cands
            .iter()
            .filter(|c| c.track_id.get() % 2 == 1)
            .cloned()
            .collect();
        assert_eq!(pick_autodj(&only_pop, &[], &s, &rules, 0, 0.5), None);
    }

    #[test]
    fn autodj_rule() {
        let now = 1_000 * 60_000;
        let play = |t, a: &str, min_ago: i64| RecentPlay {
            track_id: TrackId::new(t),
            artist: a.into(),
            started_ms: now - min_ago * 60_000,
        };
        let s = Settings::default();
        struct Case {
            name: &'static str,
            candidates: Vec<Candidate>,
            recent: Vec<RecentPlay>,
            draw: f64,
            want: Option<i64>,
        }
        let cases = vec![
            Case {
                name: "empty library: nothing to play",
                candidates: vec![],
                recent: vec![],
                draw: 0.5,
                want: None,
            },
            Case {
                name: "skips tracks in the no-repeat window",
                candidates: vec![cand(1, "A", 0), cand(2, "B", 0)],
                recent: vec![play(1, "A", 10)],
                draw: 0.0,
                want: Some(2),
            },
            Case {
                name: "spaces artists",
                candidates: vec![cand(1, "A", 0), cand(2, "B", 0)],
                recent: vec![play(9, "A", 1)],
                draw: 0.0,
                want: Some(2),
            },
            Case {
                name: "favours liked tracks (weight 1 + likes)",
                candidates: vec![cand(1, "A", 0), cand(2, "B", 9)],
                recent: vec![],
                draw: 0.5,
                want: Some(2),
            },
            Case {
                name: "the low draw still reaches an unliked track",
                candidates: vec![cand(1, "A", 0), cand(2, "B", 9)],
                recent: vec![],
                draw: 0.05,
                want: Some(1),
            },
            Case {
                name: "one artist only: spacing is relaxed",
                candidates: vec![cand(1, "A", 0), cand(2, "A", 0)],
                recent: vec![play(1, "A", 1)],
                draw: 0.0,
                want: Some(2),
            },
            Case {
                name: "everything recent: the longest-ago track, never the current one",
                candidates: vec![cand(1, "A", 0), cand(2, "B", 0), cand(3, "C", 0)],
                recent: vec![play(2, "B", 1), play(3, "C", 5), play(1, "A", 9)],
                draw: 0.99,
                want: Some(1),
            },
            Case {
                name: "a single-track library repeats rather than stop",
                candidates: vec![cand(1, "A", 0)],
                recent: vec![play(1, "A", 1)],
                draw: 0.3,
                want: Some(1),
            },
        ];
        for c in cases {
            assert_eq!(
                pick_autodj(&c.candidates, &c.recent, &s, &Rules::default(), now, c.draw),
                c.want.map(TrackId::new),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn setting_rules_take_numbers_and_words() {
        let table: &[(&str, Result<i64, &str>)] = &[
            ("loudness_lufs", Ok(-30)),
            ("loudness_lufs", Ok(-5)),
            ("crossfade_s", Ok(12)),
        ];
        for (key, want) in table {
            let v = want.unwrap();
            assert_eq!(check_setting(key, v), Ok(v), "{key}");
        }
        let refused: &[(&str, i64, &str)] = &[
            ("loudness_lufs", -31, "allowed -30..=-5"),
            ("loudness_lufs", -4, "allowed -30..=-5"),
            ("crossfade_s", 13, "allowed 0..=12"),
            ("normalize", 1, "allowed auto, track, album, off"),
        ];
        for (key, v, want) in refused {
            let e = check_setting(key, *v).unwrap_err();
            assert!(e.contains(want), "{key} {v}: {e}");
        }
        let n = allowed("normalize").unwrap();
        for w in Normalize::NAMES {
            assert_eq!(n.word(w), Ok(*w));
        }
        assert!(n.word("loud").unwrap_err().contains("allowed auto, track"));
        assert!(allowed("crossfade_s").unwrap().word("4").is_err());
        // The words are the wire spelling of the modes.
        for m in [
            Normalize::Auto,
            Normalize::Track,
            Normalize::Album,
            Normalize::Off,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
            assert!(Normalize::NAMES.contains(&m.as_str()));
        }
    }
}
