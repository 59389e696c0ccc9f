//! The library's rows: tracks as the scanner finds them, search, and the auto-DJ's candidates.

use super::*;

impl Db {
    /// Size, modification time and presence of every known file, keyed by [`path_key`], so a
    /// rescan re-reads only what changed. Keys, not paths: at 50,000 tracks this map is a
    /// fraction of the size, and the scan needs no more.
    pub fn known_files(&self) -> Result<HashMap<u64, FileStamp>, StoreError> {
        let mut st = self
            .conn
            // A row from before its details were stored looks changed, to be read again.
            .prepare(
                "SELECT path, size, CASE WHEN details_read THEN mtime_ns ELSE -1 END, present
                 FROM tracks",
            )?;
        let mut rows = st.query([])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            let path: String = r.get(0)?;
            out.insert(
                path_key(Path::new(&path)),
                FileStamp {
                    size: r.get::<_, i64>(1)? as u64,
                    mtime_ns: r.get(2)?,
                    present: r.get(3)?,
                },
            );
        }
        Ok(out)
    }

    /// Marks absent every present track whose path key is in `keys` (files not found by a
    /// scan). Returns how many it marked.
    pub fn mark_absent(&self, keys: &std::collections::HashSet<u64>) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut gone = Vec::new();
        {
            let mut st = self
                .conn
                .prepare("SELECT id, path FROM tracks WHERE present = 1")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let path: String = r.get(1)?;
                if keys.contains(&path_key(Path::new(&path))) {
                    gone.push(r.get::<_, TrackId>(0)?);
                }
            }
        }
        let mut st = self
            .conn
            .prepare_cached("UPDATE tracks SET present = 0 WHERE id = ?1")?;
        for id in &gone {
            st.execute([id])?;
        }
        Ok(gone.len() as u64)
    }

    /// Writes what the scan read. A file whose size or modification time changed loses its
    /// measurement (and its album's value on it): the pass measures it again.
    pub fn upsert_track(&self, t: &ScannedTrack) -> Result<TrackId, StoreError> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO tracks (path, size, mtime_ns, title, artist, album, track_no,
                                 duration_ms, has_art, present, tag_track_lufs, tag_album_lufs,
                                 album_artist, genre, date, disc, sample_rate, bits, channels,
                                 bitrate_kbps, details_read)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?11,
                     ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, 1)
             ON CONFLICT (path) DO UPDATE SET
                album_artist = excluded.album_artist, genre = excluded.genre,
                date = excluded.date, disc = excluded.disc, sample_rate = excluded.sample_rate,
                bits = excluded.bits, channels = excluded.channels,
                bitrate_kbps = excluded.bitrate_kbps, details_read = 1,
                size = excluded.size, mtime_ns = excluded.mtime_ns, title = excluded.title,
                artist = excluded.artist, album = excluded.album, track_no = excluded.track_no,
                duration_ms = excluded.duration_ms, has_art = excluded.has_art, present = 1,
                tag_track_lufs = excluded.tag_track_lufs, tag_album_lufs = excluded.tag_album_lufs,
                lufs = CASE WHEN (size = excluded.size AND mtime_ns = excluded.mtime_ns)
                    THEN lufs END,
                peak = CASE WHEN (size = excluded.size AND mtime_ns = excluded.mtime_ns)
                    THEN peak END,
                measured_ms = CASE WHEN (size = excluded.size AND mtime_ns = excluded.mtime_ns)
                    THEN measured_ms END,
                loudness_error = CASE WHEN (size = excluded.size AND mtime_ns = excluded.mtime_ns)
                    THEN loudness_error END,
                album_lufs = CASE WHEN (size = excluded.size AND mtime_ns = excluded.mtime_ns)
                    AND album = excluded.album THEN album_lufs END
             RETURNING id",
        )?;
        Ok(st.query_row(
            params![
                path_str(&t.path),
                t.size as i64,
                t.mtime_ns,
                t.title,
                t.artist,
                t.album,
                t.track_no,
                t.duration_ms as i64,
                t.has_art,
                t.tag_levels.track_lufs.map(f64::from),
                t.tag_levels.album_lufs.map(f64::from),
                t.details.album_artist,
                t.details.genre,
                t.details.date,
                t.details.disc,
                t.details.format.map(|f| f.sample_rate),
                t.details.format.and_then(|f| f.bits),
                t.details.format.map(|f| f.channels),
                t.details.bitrate_kbps,
            ],
            |r| r.get(0),
        )?)
    }

    /// Marks files present or absent (an absent track leaves search but stays in history).
    pub fn set_present(&self, path: &Path, present: bool) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE tracks SET present = ?2 WHERE path = ?1")?
            .execute(params![path_str(path), present])?;
        Ok(())
    }

    pub fn track_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM tracks WHERE present = 1", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Every track of the library, by path (the MPD front end browses and filters these).
    pub fn all_tracks(&self) -> Result<Vec<Track>, StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {TRACK_COLS} FROM tracks t WHERE t.present = 1 ORDER BY t.path"
        ))?;
        let rows = st.query_map([], track_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every present track with its details, by path (what MPD clients browse).
    pub fn all_described(&self) -> Result<Vec<Described>, StoreError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {TRACK_COLS}, {DETAIL_COLS} FROM tracks t WHERE t.present = 1 ORDER BY t.path"
        ))?;
        let rows = st.query_map([], described_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn described(&self, id: TrackId) -> Result<Option<Described>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {TRACK_COLS}, {DETAIL_COLS} FROM tracks t WHERE t.id = ?1"
            ))?
            .query_row([id], described_row)
            .optional()?)
    }

    pub fn track(&self, id: TrackId) -> Result<Option<Track>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {TRACK_COLS} FROM tracks t WHERE t.id = ?1"
            ))?
            .query_row([id], track_row)
            .optional()?)
    }

    /// Ranked, paginated search: every word of `q` is a prefix, across title, artist and
    /// album; case and accents do not matter. An empty query lists the library A-Z.
    pub fn search(&self, q: &str, limit: u32, offset: u32) -> Result<Vec<Track>, StoreError> {
        let fts = fts_query(q);
        // Callers ask for one more than they show, to know whether there is a next page.
        let limit = limit.clamp(1, 101);
        if fts.is_empty() {
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {TRACK_COLS} FROM tracks t WHERE t.present = 1
                 ORDER BY t.artist COLLATE NOCASE, t.album COLLATE NOCASE, t.track_no, t.title
                 LIMIT ?1 OFFSET ?2"
            ))?;
            let rows = st.query_map(params![limit, offset], track_row)?;
            return Ok(rows.collect::<Result<_, _>>()?);
        }
        // Title matches weigh most, then artist, then album.
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {TRACK_COLS} FROM tracks_fts f JOIN tracks t ON t.id = f.rowid
             WHERE tracks_fts MATCH ?1 AND t.present = 1
             ORDER BY bm25(tracks_fts, 10.0, 5.0, 2.0), t.likes DESC, t.title, t.id
             LIMIT ?2 OFFSET ?3"
        ))?;
        let rows = st.query_map(params![fts, limit, offset], track_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Candidates for the auto-DJ: a random sample of the library plus the most liked tracks,
    /// minus the tracks played most recently, inside the content rules' pool and length (so a
    /// small pool in a large library is found, not sampled away). The party rules choose among
    /// them, and check the rest of the content rules.
    pub fn autodj_candidates(
        &self,
        exclude: &[TrackId],
        sample: u32,
        rules: &Rules,
    ) -> Result<Vec<Candidate>, StoreError> {
        let exclude_json = serde_json::to_string(exclude).unwrap_or_else(|_| "[]".into());
        // The pool as a folder: its path and a separator, so "Pop" does not take "Popular".
        let pool = rules.pool().map(|p| {
            let mut s = p.to_string_lossy().into_owned();
            if !s.ends_with(std::path::MAIN_SEPARATOR) {
                s.push(std::path::MAIN_SEPARATOR);
            }
            s
        });
        let max_ms = rules.max_ms().map_or(i64::MAX, |m| m as i64);
        const COLS: &str = "id, artist, likes, title, album, duration_ms, path";
        const ALLOWED: &str = "present = 1
            AND (?4 IS NULL OR substr(path, 1, length(?4)) = ?4)
            AND (duration_ms <= ?5 OR duration_ms = 0)";
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {COLS} FROM (
                 SELECT {COLS} FROM tracks
                 WHERE {ALLOWED} AND id NOT IN (SELECT value FROM json_each(?1))
                 ORDER BY random() LIMIT ?2)
             UNION
             SELECT {COLS} FROM (
                 SELECT {COLS} FROM tracks
                 WHERE {ALLOWED} AND likes > 0 AND id NOT IN (SELECT value FROM json_each(?1))
                 ORDER BY likes DESC LIMIT ?3)"
        ))?;
        let rows = st.query_map(
            params![exclude_json, sample, sample / 4, pool, max_ms],
            candidate_row,
        )?;
        let mut out: Vec<Candidate> = rows.collect::<Result<_, _>>()?;
        if out.is_empty() && !exclude.is_empty() {
            // A tiny library (or pool): everything was excluded; let the rules pick among all
            // of it.
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {COLS} FROM tracks WHERE {ALLOWED} AND ?1 IS NOT NULL
                 ORDER BY random() LIMIT ?2"
            ))?;
            out = st
                .query_map(
                    params![exclude_json, sample, 0, pool, max_ms],
                    candidate_row,
                )?
                .collect::<Result<_, _>>()?;
        }
        Ok(out)
    }
}

fn candidate_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        track_id: r.get(0)?,
        artist: r.get(1)?,
        likes: r.get::<_, i64>(2)?.clamp(0, u32::MAX as i64) as u32,
        title: r.get(3)?,
        album: r.get(4)?,
        duration_ms: r.get::<_, i64>(5)?.max(0) as u64,
        path: std::path::PathBuf::from(r.get::<_, String>(6)?),
    })
}
