//! What the hub reads from the store: everything at start, and again after a failed write
//! (to resync with what is durable).

use std::collections::HashMap;

use crate::party::{Entry, GuestId, PlayId, RecentPlay};
use crate::store::{Db, GuestRow, MaxIds, OpenPlay, PastPlay, Store, StoreError, Track};

use super::PARTY_GAP_MS;

/// The meta key holding the id of the play the host paused (empty while nothing is paused).
pub(crate) const PAUSED_PLAY: &str = "paused_play";
/// Recent plays kept in memory beyond the no-repeat window (artist spacing looks at these).
pub(crate) const RECENT_KEEP: usize = 32;

/// Everything read from the store at start (and after a failed write, to resync).
pub(crate) struct Loaded {
    pub guests: Vec<GuestRow>,
    pub guest_addrs: Vec<(GuestId, String)>,
    pub addr_bans: Vec<(String, GuestId, i64)>,
    pub queue: Vec<(Entry, Track)>,
    pub open: Option<(OpenPlay, Track)>,
    pub recent: Vec<RecentPlay>,
    pub history: Vec<PastPlay>,
    pub played_tonight: HashMap<GuestId, u32>,
    pub settings: Option<String>,
    /// The play the host paused, if the jukebox stopped while it was paused.
    pub paused_play: Option<PlayId>,
    pub ids: MaxIds,
    pub library_size: u64,
}

impl Loaded {
    /// Reads it all as of `now` (ms): the address bans still in force, tonight's plays.
    pub(crate) fn read(db: &Db, now: i64) -> Result<Loaded, StoreError> {
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
            history: db.history(super::history::HISTORY_LEN as u32)?,
            played_tonight: db.played_counts(tonight)?,
            settings: db.meta("settings")?,
            // The meta value is the bare row id (written before ids had a type), not `p<id>`.
            paused_play: db
                .meta(PAUSED_PLAY)?
                .and_then(|v| v.parse::<i64>().ok())
                .map(PlayId::new),
            ids: db.max_ids()?,
            library_size: db.track_count()?,
        })
    }

    /// Reads it after every write submitted before.
    pub(crate) async fn load(store: &Store, now: i64) -> Result<Loaded, StoreError> {
        store.read(move |db| Loaded::read(db, now)).await
    }
}
