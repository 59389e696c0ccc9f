//! The party's rows: the queue and its votes, plays and their likes and skip votes, and
//! the meta keys (settings, the paused play).

use super::*;

impl Db {
    pub fn insert_request(&self, e: &Entry) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO requests (id, track_id, guest_id, created_ms, state, dedication)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                e.id,
                e.track_id,
                e.guest,
                e.created_ms,
                RequestState::Queued,
                e.dedication
            ])?;
        for g in &e.voters {
            self.add_vote(e.id, *g)?;
        }
        Ok(())
    }

    pub fn add_vote(&self, request: EntryId, guest: GuestId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO votes (request_id, guest_id) VALUES (?1, ?2)")?
            .execute(params![request, guest])?;
        Ok(())
    }

    pub fn remove_vote(&self, request: EntryId, guest: GuestId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM votes WHERE request_id = ?1 AND guest_id = ?2")?
            .execute(params![request, guest])?;
        Ok(())
    }

    /// Ends a queue entry: `Played` when it starts playing, `Removed` otherwise.
    pub fn end_request(
        &self,
        id: EntryId,
        state: RequestState,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE requests SET state = ?2, ended_ms = ?3 WHERE id = ?1")?
            .execute(params![id, state, at_ms])?;
        Ok(())
    }

    pub fn set_pin(&self, id: EntryId, pin: Option<u32>) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE requests SET pin = ?2 WHERE id = ?1")?
            .execute(params![id, pin])?;
        Ok(())
    }

    /// The queue as it was left, with every vote.
    pub fn queued(&self) -> Result<Vec<(Entry, Track)>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT r.id, r.guest_id, r.created_ms, r.pin, r.dedication, {TRACK_COLS}
             FROM requests r JOIN tracks t ON t.id = r.track_id
             WHERE r.state = ?1 ORDER BY r.id"
        ))?;
        let rows = st.query_map([RequestState::Queued], |r| {
            let track = track_row_at(r, 5)?;
            Ok((
                Entry {
                    id: r.get(0)?,
                    track_id: track.id,
                    artist: track.artist.clone(),
                    guest: r.get(1)?,
                    created_ms: r.get(2)?,
                    voters: Default::default(),
                    pin: r.get(3)?,
                    dedication: r.get(4)?,
                },
                track,
            ))
        })?;
        let mut entries: Vec<(Entry, Track)> = rows.collect::<Result<_, _>>()?;
        let mut st = self.conn.prepare(
            "SELECT v.request_id, v.guest_id FROM votes v
             JOIN requests r ON r.id = v.request_id WHERE r.state = ?1",
        )?;
        let votes = st.query_map([RequestState::Queued], |r| {
            Ok((r.get::<_, EntryId>(0)?, r.get::<_, GuestId>(1)?))
        })?;
        let index: HashMap<EntryId, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, (e, _))| (e.id, i))
            .collect();
        for v in votes {
            let (req, guest) = v?;
            if let Some(&i) = index.get(&req) {
                entries[i].0.voters.insert(guest);
            }
        }
        Ok(entries)
    }

    // ---- plays ---------------------------------------------------------------------------

    pub fn insert_play(
        &self,
        id: PlayId,
        track: TrackId,
        request: Option<EntryId>,
        started_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO plays (id, track_id, request_id, started_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, track, request, started_ms])?;
        Ok(())
    }

    pub fn save_position(&self, play: PlayId, position_ms: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE plays SET position_ms = ?2 WHERE id = ?1")?
            .execute(params![play, position_ms as i64])?;
        Ok(())
    }

    pub fn end_play(
        &self,
        play: PlayId,
        ended_ms: i64,
        reason: PlayEnd,
        position_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE plays SET ended_ms = ?2, end_reason = ?3, position_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![play, ended_ms, reason, position_ms as i64])?;
        Ok(())
    }

    /// The play that was going on when the jukebox stopped, if any.
    pub fn open_play(&self) -> Result<Option<OpenPlay>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT p.id, p.track_id, p.request_id, r.guest_id, p.started_ms, p.position_ms,
                        r.dedication
                 FROM plays p LEFT JOIN requests r ON r.id = p.request_id
                 WHERE p.ended_ms IS NULL ORDER BY p.id DESC LIMIT 1",
                [],
                |r| {
                    Ok(OpenPlay {
                        id: r.get(0)?,
                        track_id: r.get(1)?,
                        request_id: r.get(2)?,
                        guest_id: r.get(3)?,
                        started_ms: r.get(4)?,
                        position_ms: r.get::<_, i64>(5)?.max(0) as u64,
                        dedication: r.get(6)?,
                        likes: vec![],
                        skip_votes: vec![],
                    })
                },
            )
            .optional()?;
        let Some(mut p) = row else { return Ok(None) };
        p.likes = self.guest_ids("SELECT guest_id FROM likes WHERE play_id = ?1", p.id)?;
        p.skip_votes =
            self.guest_ids("SELECT guest_id FROM skip_votes WHERE play_id = ?1", p.id)?;
        Ok(Some(p))
    }

    fn guest_ids(&self, sql: &str, play: PlayId) -> Result<Vec<GuestId>, StoreError> {
        let mut st = self.conn.prepare_cached(sql)?;
        let rows = st.query_map([play], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The most recent plays, newest first: those started since `since_ms`, and at least `n`.
    pub fn recent_plays(&self, since_ms: i64, n: u32) -> Result<Vec<RecentPlay>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT p.track_id, t.artist, p.started_ms FROM plays p
             JOIN tracks t ON t.id = p.track_id
             WHERE p.id IN (SELECT id FROM plays ORDER BY id DESC LIMIT ?2)
                OR p.started_ms >= ?1
             ORDER BY p.started_ms DESC, p.id DESC",
        )?;
        let rows = st.query_map(params![since_ms, n], |r| {
            Ok(RecentPlay {
                track_id: r.get(0)?,
                artist: r.get(1)?,
                started_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last `n` plays, newest first, with their requester, dedication and likes (those of
    /// guests banned since do not count).
    pub fn history(&self, n: u32) -> Result<Vec<PastPlay>, StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT p.id, r.guest_id, r.dedication, p.started_ms, p.end_reason,
                    (SELECT count(*) FROM likes l JOIN guests g ON g.id = l.guest_id
                     WHERE l.play_id = p.id AND g.banned = 0),
                    {TRACK_COLS}
             FROM plays p JOIN tracks t ON t.id = p.track_id
             LEFT JOIN requests r ON r.id = p.request_id
             ORDER BY p.id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map([n], |r| {
            Ok(PastPlay {
                play_id: r.get(0)?,
                requester: r.get(1)?,
                dedication: r.get(2)?,
                started_ms: r.get(3)?,
                ended: r.get(4)?,
                likes: r.get::<_, i64>(5)?.clamp(0, u32::MAX as i64) as u32,
                track: track_row_at(r, 6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many requests of each guest were played since `since_ms` (round-robin fairness).
    pub fn played_counts(&self, since_ms: i64) -> Result<HashMap<GuestId, u32>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT r.guest_id, count(*) FROM plays p JOIN requests r ON r.id = p.request_id
             WHERE p.started_ms >= ?1 AND r.guest_id IS NOT NULL GROUP BY r.guest_id",
        )?;
        let rows = st.query_map([since_ms], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Where the current party began: the first play after the last gap of `gap_ms` or more.
    pub fn party_start(&self, gap_ms: i64) -> Result<Option<i64>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT started_ms FROM plays ORDER BY started_ms DESC")?;
        let mut rows = st.query([])?;
        let mut start: Option<i64> = None;
        while let Some(r) = rows.next()? {
            let t: i64 = r.get(0)?;
            if let Some(s) = start {
                if s - t >= gap_ms {
                    break;
                }
            }
            start = Some(t);
        }
        Ok(start)
    }

    pub fn plays_since(&self, since_ms: i64) -> Result<Vec<PlayReport>, StoreError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT p.id, p.started_ms, p.ended_ms, p.end_reason, g.name,
                    (SELECT count(*) FROM votes v WHERE v.request_id = p.request_id),
                    (SELECT count(*) FROM likes l WHERE l.play_id = p.id),
                    r.dedication,
                    {TRACK_COLS}
             FROM plays p JOIN tracks t ON t.id = p.track_id
             LEFT JOIN requests r ON r.id = p.request_id
             LEFT JOIN guests g ON g.id = r.guest_id
             WHERE p.started_ms >= ?1 ORDER BY p.started_ms, p.id"
        ))?;
        let rows = st.query_map([since_ms], |r| {
            Ok(PlayReport {
                play_id: r.get(0)?,
                started_ms: r.get(1)?,
                ended_ms: r.get(2)?,
                end_reason: r.get(3)?,
                requested_by: r.get(4)?,
                votes: r.get::<_, i64>(5)? as u32,
                likes: r.get::<_, i64>(6)? as u32,
                dedication: r.get(7)?,
                track: track_row_at(r, 8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn max_ids(&self) -> Result<MaxIds, StoreError> {
        let max = |table: &str| -> Result<i64, StoreError> {
            Ok(self.conn.query_row(
                &format!("SELECT coalesce(max(id), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )?)
        };
        Ok(MaxIds {
            guest: max("guests")?,
            request: max("requests")?,
            play: max("plays")?,
        })
    }

    // ---- likes and skip votes ------------------------------------------------------------

    /// Records a like and bumps the track's all-time count in the same transaction.
    pub fn set_like(
        &self,
        play: PlayId,
        track: TrackId,
        guest: GuestId,
        on: bool,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let changed = if on {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO likes (play_id, guest_id, created_ms) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![play, guest, at_ms])?
        } else {
            self.conn
                .prepare_cached("DELETE FROM likes WHERE play_id = ?1 AND guest_id = ?2")?
                .execute(params![play, guest])?
        };
        if changed > 0 {
            let delta: i64 = if on { 1 } else { -1 };
            self.conn
                .prepare_cached("UPDATE tracks SET likes = max(0, likes + ?2) WHERE id = ?1")?
                .execute(params![track, delta])?;
        }
        Ok(())
    }

    pub fn add_skip_vote(&self, play: PlayId, guest: GuestId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO skip_votes (play_id, guest_id) VALUES (?1, ?2)")?
            .execute(params![play, guest])?;
        Ok(())
    }

    // ---- meta ----------------------------------------------------------------------------

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM meta WHERE key = ?1")?
            .execute([key])?;
        Ok(())
    }
}
