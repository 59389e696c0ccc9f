//! The loudness pass's rows: what is left to measure, measurements and failures, and each
//! album's loudness once none of its tracks waits. Every call is one short statement or a
//! handful, so the pass never holds the store thread long enough for a phone to notice.

use super::*;
use crate::loudness::{album_lufs, AlbumKey, Levels, Measured};

/// A track the pass has to measure, with the file's stamp as it was when chosen: a measurement
/// is kept only if the file has not changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoudnessWork {
    pub id: TrackId,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// How far the pass has got over the present tracks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoudnessCounts {
    /// Tracks with a measurement.
    pub measured: u64,
    /// Tracks that cannot be measured (silent, undecodable); not retried until they change.
    pub failed: u64,
    pub total: u64,
}

fn work_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoudnessWork> {
    Ok(LoudnessWork {
        id: r.get(0)?,
        path: PathBuf::from(r.get::<_, String>(1)?),
        size: r.get::<_, i64>(2)?.max(0) as u64,
        mtime_ns: r.get(3)?,
    })
}

impl Db {
    /// Up to `limit` tracks still to measure: the queued requests first (in queue order), then
    /// the rest in path order, which is folder by folder (an album completes early).
    pub fn loudness_todo(&self, limit: u32) -> Result<Vec<LoudnessWork>, StoreError> {
        let mut out: Vec<LoudnessWork> = self
            .conn
            .prepare_cached(
                "SELECT t.id, t.path, t.size, t.mtime_ns FROM requests r
                 JOIN tracks t ON t.id = r.track_id
                 WHERE r.state = 'queued' AND t.present = 1
                   AND t.lufs IS NULL AND t.loudness_error IS NULL
                 GROUP BY t.id ORDER BY min(r.id) LIMIT ?1",
            )?
            .query_map([limit], work_row)?
            .collect::<Result<_, _>>()?;
        let rest = limit.saturating_sub(out.len() as u32);
        if rest > 0 {
            let mut st = self.conn.prepare_cached(
                "SELECT id, path, size, mtime_ns FROM tracks INDEXED BY tracks_unmeasured
                 WHERE lufs IS NULL AND loudness_error IS NULL AND present = 1
                 ORDER BY path LIMIT ?1",
            )?;
            // The queued ones may come again here: ask for enough to fill up without them.
            for w in st.query_map([limit], work_row)? {
                let w = w?;
                if out.len() as u32 >= limit {
                    break;
                }
                if !out.iter().any(|o| o.id == w.id) {
                    out.push(w);
                }
            }
        }
        Ok(out)
    }

    /// The track `id` if it is present and still to measure.
    pub fn loudness_pending(&self, id: TrackId) -> Result<Option<LoudnessWork>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, path, size, mtime_ns FROM tracks
                 WHERE id = ?1 AND present = 1 AND lufs IS NULL AND loudness_error IS NULL",
            )?
            .query_row([id], work_row)
            .optional()?)
    }

    /// Stores the outcome of measuring `work` (a measurement, or why there can be none),
    /// unless the file changed since it was chosen, and the album's loudness when this was
    /// the last of its tracks to wait. Returns every track whose levels changed, with its
    /// levels now.
    pub fn record_loudness(
        &self,
        work: &LoudnessWork,
        outcome: Result<Measured, String>,
    ) -> Result<Vec<(TrackId, Levels)>, StoreError> {
        let (size, mtime) = (work.size as i64, work.mtime_ns);
        let written = match &outcome {
            Ok(m) => self
                .conn
                .prepare_cached(
                    "UPDATE tracks SET lufs = ?4, peak = ?5, measured_ms = ?6,
                            loudness_error = NULL
                     WHERE id = ?1 AND size = ?2 AND mtime_ns = ?3",
                )?
                .execute(params![
                    work.id,
                    size,
                    mtime,
                    f64::from(m.lufs),
                    f64::from(m.peak),
                    m.duration_ms() as i64
                ])?,
            Err(why) => self
                .conn
                .prepare_cached(
                    "UPDATE tracks SET lufs = NULL, peak = NULL, measured_ms = NULL,
                            loudness_error = ?4
                     WHERE id = ?1 AND size = ?2 AND mtime_ns = ?3",
                )?
                .execute(params![work.id, size, mtime, why])?,
        };
        if written == 0 {
            // Changed (or gone) meanwhile: the scan has already asked for a new measurement.
            return Ok(Vec::new());
        }
        let mut changed = self.album_update(work.id)?;
        if !changed.iter().any(|(id, _)| *id == work.id) {
            if let Some(l) = self.levels(work.id)? {
                changed.insert(0, (work.id, l));
            }
        }
        Ok(changed)
    }

    /// Sets the album loudness on every present track of `id`'s album once none of them
    /// waits for the pass. Tracks that cannot be measured do not weigh in, but get the value
    /// (a silent interlude plays at its album's gain). Returns the tracks whose album value
    /// changed, with their levels.
    fn album_update(&self, id: TrackId) -> Result<Vec<(TrackId, Levels)>, StoreError> {
        let Some((path, album)) = self
            .conn
            .prepare_cached("SELECT path, album FROM tracks WHERE id = ?1")?
            .query_row([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?
        else {
            return Ok(Vec::new());
        };
        let Some(key) = AlbumKey::of(Path::new(&path), &album) else {
            return Ok(Vec::new());
        };
        struct Member {
            id: TrackId,
            lufs: Option<f64>,
            ms: Option<i64>,
            failed: bool,
            album_lufs: Option<f64>,
        }
        let mut members = Vec::new();
        {
            let mut st = self.conn.prepare_cached(
                "SELECT id, path, lufs, measured_ms, loudness_error IS NOT NULL, album_lufs
                 FROM tracks WHERE album = ?1 AND present = 1",
            )?;
            let mut rows = st.query([key.album()])?;
            while let Some(r) = rows.next()? {
                let p: String = r.get(1)?;
                if AlbumKey::of(Path::new(&p), key.album()).as_ref() != Some(&key) {
                    continue;
                }
                members.push(Member {
                    id: r.get(0)?,
                    lufs: r.get(2)?,
                    ms: r.get(3)?,
                    failed: r.get(4)?,
                    album_lufs: r.get(5)?,
                });
            }
        }
        if members.iter().any(|m| m.lufs.is_none() && !m.failed) {
            return Ok(Vec::new());
        }
        let measured: Vec<(f32, u64)> = members
            .iter()
            .filter_map(|m| Some((m.lufs? as f32, m.ms.unwrap_or(0).max(0) as u64)))
            .collect();
        let value = album_lufs(&measured).map(f64::from);
        let mut changed = Vec::new();
        let mut st = self
            .conn
            .prepare_cached("UPDATE tracks SET album_lufs = ?2 WHERE id = ?1")?;
        for m in &members {
            let same = match (m.album_lufs, value) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-6,
                (None, None) => true,
                _ => false,
            };
            if !same {
                st.execute(params![m.id, value])?;
                changed.push(m.id);
            }
        }
        let mut out = Vec::with_capacity(changed.len());
        for id in changed {
            if let Some(l) = self.levels(id)? {
                out.push((id, l));
            }
        }
        Ok(out)
    }

    /// What is known of one track's loudness.
    pub fn levels(&self, id: TrackId) -> Result<Option<Levels>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT lufs, peak, album_lufs, tag_track_lufs, tag_album_lufs
                 FROM tracks WHERE id = ?1",
            )?
            .query_row([id], |r| levels_at(r, 0))
            .optional()?)
    }

    /// How far the pass has got over the present tracks.
    pub fn loudness_counts(&self) -> Result<LoudnessCounts, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*), count(lufs), count(loudness_error) FROM tracks WHERE present = 1",
            [],
            |r| {
                Ok(LoudnessCounts {
                    total: r.get::<_, i64>(0)? as u64,
                    measured: r.get::<_, i64>(1)? as u64,
                    failed: r.get::<_, i64>(2)? as u64,
                })
            },
        )?)
    }

    /// Why the track could not be measured, if it could not.
    pub fn loudness_error(&self, id: TrackId) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT loudness_error FROM tracks WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Db {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations().to_latest(&mut conn).unwrap();
        Db { conn }
    }

    fn add(db: &Db, path: &str, album: &str) -> TrackId {
        db.upsert_track(&ScannedTrack {
            path: PathBuf::from(path),
            size: 100,
            mtime_ns: 5,
            title: path.into(),
            artist: String::new(),
            album: album.into(),
            track_no: None,
            duration_ms: 60_000,
            has_art: false,
            tag_levels: Default::default(),
            details: Default::default(),
        })
        .unwrap()
    }

    fn measured(lufs: f32) -> Result<Measured, String> {
        Ok(Measured {
            lufs,
            peak: 0.5,
            frames: 44_100 * 60,
            rate: 44_100,
        })
    }

    fn ids(w: &[LoudnessWork]) -> Vec<TrackId> {
        w.iter().map(|w| w.id).collect()
    }

    #[test]
    fn queued_requests_first_then_folder_order_and_only_what_waits() {
        let db = db();
        let c = add(&db, "/m/c/1.flac", "");
        let a = add(&db, "/m/a/1.flac", "");
        let b = add(&db, "/m/b/1.flac", "");
        let gone = add(&db, "/m/0/gone.flac", "");
        db.set_present(Path::new("/m/0/gone.flac"), false).unwrap();
        db.conn
            .execute(
                "INSERT INTO requests (track_id, created_ms) VALUES (?1, 1), (?2, 2), (?1, 3)",
                params![b, c],
            )
            .unwrap();
        assert_eq!(ids(&db.loudness_todo(10).unwrap()), vec![b, c, a]);
        assert_eq!(ids(&db.loudness_todo(2).unwrap()), vec![b, c]);
        let wb = db.loudness_pending(b).unwrap().unwrap();
        db.record_loudness(&wb, measured(-10.0)).unwrap();
        let wc = db.loudness_pending(c).unwrap().unwrap();
        db.record_loudness(&wc, Err("silent".into())).unwrap();
        assert_eq!(ids(&db.loudness_todo(10).unwrap()), vec![a]);
        assert_eq!(db.loudness_pending(b).unwrap(), None);
        assert_eq!(db.loudness_pending(gone).unwrap(), None);
        assert_eq!(
            db.loudness_counts().unwrap(),
            LoudnessCounts {
                measured: 1,
                failed: 1,
                total: 3
            }
        );
    }

    #[test]
    fn a_measurement_of_a_file_that_changed_meanwhile_is_dropped() {
        let db = db();
        let id = add(&db, "/m/a.flac", "");
        let mut w = db.loudness_pending(id).unwrap().unwrap();
        w.mtime_ns += 1;
        assert!(db.record_loudness(&w, measured(-9.0)).unwrap().is_empty());
        assert_eq!(db.levels(id).unwrap().unwrap().track_lufs, None);
        w.mtime_ns -= 1;
        let changed = db.record_loudness(&w, measured(-9.0)).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].1.track_lufs, Some(-9.0));
        assert_eq!(changed[0].1.track_peak, Some(0.5));
        // Written again by a scan with the same size and time: the measurement stays.
        add(&db, "/m/a.flac", "");
        assert_eq!(db.levels(id).unwrap().unwrap().track_lufs, Some(-9.0));
    }

    #[test]
    fn an_album_gets_its_loudness_once_no_track_waits() {
        let db = db();
        let one = add(&db, "/m/rec/1.flac", "Rec");
        let two = add(&db, "/m/rec/2.flac", "Rec");
        let broken = add(&db, "/m/rec/3.flac", "Rec");
        // Same tag, other folder: another album.
        let other = add(&db, "/m/rec2/1.flac", "Rec");
        let w = |id| db.loudness_pending(id).unwrap().unwrap();
        let c1 = db.record_loudness(&w(one), measured(-10.0)).unwrap();
        assert_eq!(c1.len(), 1);
        assert_eq!(c1[0].1.album_lufs, None, "two tracks still wait");
        db.record_loudness(&w(broken), Err("corrupt".into()))
            .unwrap();
        let c2 = db.record_loudness(&w(two), measured(-20.0)).unwrap();
        let want = album_lufs_of(&[-10.0, -20.0]);
        let mut got: Vec<TrackId> = c2.iter().map(|(id, _)| *id).collect();
        got.sort();
        // The unmeasurable one is part of the record too (a silent interlude plays at the
        // album's gain).
        assert_eq!(
            got,
            vec![one, two, broken],
            "every track reports the album value"
        );
        for (_, l) in &c2 {
            assert!((l.album_lufs.unwrap() - want).abs() < 1e-4);
        }
        assert_eq!(db.levels(other).unwrap().unwrap().album_lufs, None);

        // The file of one track changes: it loses its measurement and its album value; the
        // others keep theirs until it is measured again.
        db.upsert_track(&ScannedTrack {
            path: PathBuf::from("/m/rec/2.flac"),
            size: 101,
            mtime_ns: 6,
            title: "two".into(),
            artist: String::new(),
            album: "Rec".into(),
            track_no: None,
            duration_ms: 60_000,
            has_art: false,
            tag_levels: Default::default(),
            details: Default::default(),
        })
        .unwrap();
        let l2 = db.levels(two).unwrap().unwrap();
        assert_eq!((l2.track_lufs, l2.album_lufs), (None, None));
        assert!(db.levels(one).unwrap().unwrap().album_lufs.is_some());
        let c3 = db.record_loudness(&w(two), measured(-10.0)).unwrap();
        assert_eq!(c3.len(), 3);
        assert!(c3
            .iter()
            .all(|(_, l)| (l.album_lufs.unwrap() + 10.0).abs() < 1e-4));
    }

    fn album_lufs_of(l: &[f32]) -> f32 {
        let m: Vec<(f32, u64)> = l.iter().map(|&l| (l, 60_000)).collect();
        album_lufs(&m).unwrap()
    }
}
