//! The store: the only owner of the SQLite connection, on a thread of its own. It runs the
//! migrations, and executes jobs strictly in the order they were submitted. Writes are group
//! committed: consecutive write jobs share one transaction (each inside its own savepoint, so
//! one failing job does not undo its neighbours), and each job's completion runs only after the
//! commit is durable. Completions run in submission order, so whoever publishes from them
//! (the hub) announces changes in exactly the order it made them, and never before they are on
//! disk. Domain rules live elsewhere; this module only knows rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use rusqlite_migration::{Migrations, M};

use crate::party::{Candidate, Entry, EntryId, GuestId, PlayId, RecentPlay, TrackId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] rusqlite_migration::Error),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the store has shut down")]
    Closed,
    #[error("cannot start the store thread: {0}")]
    Thread(std::io::Error),
    #[error("a store job panicked")]
    Panicked,
    #[error("commit failed: {0}")]
    Commit(String),
}

/// Where a request is (the `state` column of `requests`): waiting, or how it left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Queued,
    /// It started playing.
    Played,
    /// Removed by the host, by a ban of its guest, or because its file could not be played.
    Removed,
}

/// How a play ended (the `end_reason` column of `plays`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayEnd {
    /// Played to its end.
    Finished,
    /// Skipped by votes or the host, or replaced by another Load.
    Skipped,
    /// A play to resume whose file could not be played.
    Error,
}

/// The two enums above are stored as the words they always were: a database written before
/// them reads the same, and `jukebox export` prints them as they are.
macro_rules! sql_words {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $ty {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                match v.as_str()? {
                    $($word => Ok($ty::$variant),)+
                    other => Err(FromSqlError::Other(
                        format!("unknown {} {other:?}", stringify!($ty)).into(),
                    )),
                }
            }
        }
    };
}

sql_words!(RequestState { Queued => "queued", Played => "played", Removed => "removed" });
sql_words!(PlayEnd { Finished => "finished", Skipped => "skipped", Error => "error" });

/// A track as the rest of the jukebox sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: TrackId,
    pub path: PathBuf,
    pub title: String,
    pub artist: String,
    pub album: String,
    pub track_no: Option<u32>,
    pub duration_ms: u64,
    pub has_art: bool,
    pub present: bool,
    pub likes: u32,
}

/// What a scan compares to decide whether a file must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub present: bool,
}

/// How a token is stored: its SHA-256, so that a copy of the database (a backup, an export
/// gone astray) lets nobody act as a guest or the host.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    let mut out = String::from("sha256:");
    for b in sha2::Sha256::digest(token.as_bytes()).iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A stable 64-bit key for a path (SipHash with fixed keys).
pub fn path_key(p: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    p.as_os_str().hash(&mut h);
    h.finish()
}

/// What the library scanner found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedTrack {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub title: String,
    pub artist: String,
    pub album: String,
    pub track_no: Option<u32>,
    pub duration_ms: u64,
    pub has_art: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRow {
    pub id: GuestId,
    pub token: String,
    pub name: String,
    pub is_host: bool,
    pub banned: bool,
    /// A display paired by the host (the TV): it never votes and is not a guest in the room.
    pub is_screen: bool,
    pub created_ms: i64,
    /// Whether a socket of this guest was ever seen.
    pub connected: bool,
}

/// A play that has not ended: what to resume after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPlay {
    pub id: PlayId,
    pub track_id: TrackId,
    pub request_id: Option<EntryId>,
    pub guest_id: Option<GuestId>,
    pub started_ms: i64,
    pub position_ms: u64,
    pub likes: Vec<GuestId>,
    pub skip_votes: Vec<GuestId>,
}

/// One line of the export: a play with who requested it and its likes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayReport {
    pub play_id: PlayId,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub end_reason: Option<String>,
    pub track: Track,
    pub requested_by: Option<String>,
    pub votes: u32,
    pub likes: u32,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../migrations/001_initial.sql")),
        M::up(include_str!("../migrations/002_host_sessions.sql")),
        M::up(include_str!("../migrations/003_identities.sql")),
    ])
}

/// The connection and every typed query. Only the store thread (or a short-lived read-only
/// tool such as `jukebox export`) holds one.
pub struct Db {
    conn: Connection,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        private_file(path).map_err(|source| StoreError::Create {
            path: path.to_owned(),
            source,
        })?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        // WAL + synchronous=FULL: a commit is on disk when it returns, so an acknowledged
        // change survives kill -9 and a pulled plug; readers never block the writer.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.pragma_update(None, "busy_timeout", 5000)
            .map_err(open_err)?;
        // A small page cache: the Pi Zero has 512 MB and the working set is tiny.
        conn.pragma_update(None, "cache_size", -2000)
            .map_err(open_err)?;
        migrations().to_latest(&mut conn)?;
        let db = Db { conn };
        db.digest_raw_tokens()?;
        Ok(db)
    }

    /// Databases written before tokens were stored as digests: replace each raw token with its
    /// digest, once (the phones keep their tokens; only what is stored changes).
    fn digest_raw_tokens(&self) -> Result<(), StoreError> {
        let raw: Vec<(GuestId, String)> = self
            .conn
            .prepare("SELECT id, token FROM guests WHERE token NOT LIKE 'sha256:%'")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if raw.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        for (id, token) in &raw {
            tx.execute(
                "UPDATE guests SET token = ?1 WHERE id = ?2",
                rusqlite::params![token_digest(token), id],
            )?;
        }
        tx.commit()?;
        tracing::info!("stored {} guest tokens as digests", raw.len());
        Ok(())
    }

    /// Opens an existing database for reading only (for `jukebox export` beside a running box).
    pub fn open_readonly(path: &Path) -> Result<Db, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        Ok(Db { conn })
    }

    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    // ---- library -------------------------------------------------------------------------

    /// Size, modification time and presence of every known file, keyed by [`path_key`], so a
    /// rescan re-reads only what changed. Keys, not paths: at 50,000 tracks this map is a
    /// fraction of the size, and the scan needs no more.
    pub fn known_files(&self) -> Result<HashMap<u64, FileStamp>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT path, size, mtime_ns, present FROM tracks")?;
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
                    gone.push(r.get::<_, i64>(0)?);
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

    pub fn upsert_track(&self, t: &ScannedTrack) -> Result<TrackId, StoreError> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO tracks (path, size, mtime_ns, title, artist, album, track_no,
                                 duration_ms, has_art, present)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)
             ON CONFLICT (path) DO UPDATE SET
                size = excluded.size, mtime_ns = excluded.mtime_ns, title = excluded.title,
                artist = excluded.artist, album = excluded.album, track_no = excluded.track_no,
                duration_ms = excluded.duration_ms, has_art = excluded.has_art, present = 1
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
    /// minus the tracks played most recently. The party rules choose among them.
    pub fn autodj_candidates(
        &self,
        exclude: &[TrackId],
        sample: u32,
    ) -> Result<Vec<Candidate>, StoreError> {
        let exclude_json = serde_json::to_string(exclude).unwrap_or_else(|_| "[]".into());
        let mut st = self.conn.prepare_cached(
            "SELECT id, artist, likes FROM (
                 SELECT id, artist, likes FROM tracks
                 WHERE present = 1 AND id NOT IN (SELECT value FROM json_each(?1))
                 ORDER BY random() LIMIT ?2)
             UNION
             SELECT id, artist, likes FROM (
                 SELECT id, artist, likes FROM tracks
                 WHERE present = 1 AND likes > 0 AND id NOT IN (SELECT value FROM json_each(?1))
                 ORDER BY likes DESC LIMIT ?3)",
        )?;
        let rows = st.query_map(params![exclude_json, sample, sample / 4], |r| {
            Ok(Candidate {
                track_id: r.get(0)?,
                artist: r.get(1)?,
                likes: r.get::<_, i64>(2)?.clamp(0, u32::MAX as i64) as u32,
            })
        })?;
        let mut out: Vec<Candidate> = rows.collect::<Result<_, _>>()?;
        if out.is_empty() && !exclude.is_empty() {
            // A tiny library: everything was excluded; let the rules pick among all of it.
            let mut st = self.conn.prepare_cached(
                "SELECT id, artist, likes FROM tracks WHERE present = 1 LIMIT ?1",
            )?;
            out = st
                .query_map([sample], |r| {
                    Ok(Candidate {
                        track_id: r.get(0)?,
                        artist: r.get(1)?,
                        likes: r.get::<_, i64>(2)?.clamp(0, u32::MAX as i64) as u32,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(out)
    }

    // ---- guests --------------------------------------------------------------------------

    pub fn insert_guest(&self, g: &GuestRow, created_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO guests (id, token, name, is_host, banned, created_ms, is_screen, connected_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?8 THEN ?6 END)",
            )?
            .execute(params![
                g.id,
                g.token,
                g.name,
                g.is_host,
                g.banned,
                created_ms,
                g.is_screen,
                g.connected
            ])?;
        Ok(())
    }

    /// The first socket of a guest: it is no longer pruned as unused.
    pub fn set_connected(&self, id: GuestId, at_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE guests SET connected_ms = ?2 WHERE id = ?1 AND connected_ms IS NULL",
            )?
            .execute(params![id, at_ms])?;
        Ok(())
    }

    /// Remembers an address a guest used (`addr` is an address key: IPv4, or an IPv6 /64).
    pub fn add_guest_address(&self, id: GuestId, addr: &str, at_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO guest_addresses (guest_id, addr, seen_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (guest_id, addr) DO UPDATE SET seen_ms = excluded.seen_ms",
            )?
            .execute(params![id, addr, at_ms])?;
        Ok(())
    }

    pub fn guest_addresses(&self) -> Result<Vec<(GuestId, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT guest_id, addr FROM guest_addresses")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Bans an address until `until_ms` (and forgets bans that are over at `now_ms`).
    pub fn ban_address(
        &self,
        addr: &str,
        guest: GuestId,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM address_bans WHERE until_ms <= ?1")?
            .execute([now_ms])?;
        self.conn
            .prepare_cached(
                "INSERT INTO address_bans (addr, guest_id, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (addr, guest_id) DO UPDATE SET until_ms = excluded.until_ms",
            )?
            .execute(params![addr, guest, until_ms])?;
        Ok(())
    }

    /// Lifts every ban of these addresses (whichever guest's ban put them there).
    pub fn unban_addresses(&self, addrs: &[String]) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare_cached("DELETE FROM address_bans WHERE addr = ?1")?;
        for a in addrs {
            st.execute([a])?;
        }
        Ok(())
    }

    /// Address bans still in force at `now_ms`.
    pub fn address_bans(&self, now_ms: i64) -> Result<Vec<(String, GuestId, i64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT addr, guest_id, until_ms FROM address_bans WHERE until_ms > ?1")?;
        let rows = st.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a guest that never connected and that nothing refers to (its addresses go
    /// with it). Returns whether it was deleted.
    pub fn delete_unused_guest(&self, id: GuestId) -> Result<bool, StoreError> {
        let unused: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM guests WHERE id = ?1 AND connected_ms IS NULL
                 AND is_host = 0 AND is_screen = 0 AND banned = 0)
             AND NOT EXISTS (SELECT 1 FROM requests WHERE guest_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM votes WHERE guest_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM likes WHERE guest_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM skip_votes WHERE guest_id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if !unused {
            return Ok(false);
        }
        self.conn
            .prepare_cached("DELETE FROM guest_addresses WHERE guest_id = ?1")?
            .execute([id])?;
        self.conn
            .prepare_cached("DELETE FROM guests WHERE id = ?1")?
            .execute([id])?;
        Ok(true)
    }

    /// Deletes a screen (the host removed it): its token stops working.
    pub fn delete_screen(&self, id: GuestId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM guest_addresses WHERE guest_id = ?1")?
            .execute([id])?;
        self.conn
            .prepare_cached("DELETE FROM guests WHERE id = ?1 AND is_screen = 1")?
            .execute([id])?;
        Ok(())
    }

    pub fn set_guest_name(&self, id: GuestId, name: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE guests SET name = ?2 WHERE id = ?1")?
            .execute(params![id, name])?;
        Ok(())
    }

    pub fn set_banned(&self, id: GuestId, banned: bool) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE guests SET banned = ?2 WHERE id = ?1")?
            .execute(params![id, banned])?;
        Ok(())
    }

    pub fn guests(&self) -> Result<Vec<GuestRow>, StoreError> {
        let mut st = self
            .conn
            .prepare(
            "SELECT id, token, name, is_host, banned, is_screen, created_ms, connected_ms IS NOT NULL
             FROM guests ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(GuestRow {
                id: r.get(0)?,
                token: r.get(1)?,
                name: r.get(2)?,
                is_host: r.get(3)?,
                banned: r.get(4)?,
                is_screen: r.get(5)?,
                created_ms: r.get(6)?,
                connected: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- queue ---------------------------------------------------------------------------

    pub fn insert_request(&self, e: &Entry) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO requests (id, track_id, guest_id, created_ms, state)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                e.id,
                e.track_id,
                e.guest,
                e.created_ms,
                RequestState::Queued
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
            "SELECT r.id, r.guest_id, r.created_ms, r.pin, {TRACK_COLS}
             FROM requests r JOIN tracks t ON t.id = r.track_id
             WHERE r.state = ?1 ORDER BY r.id"
        ))?;
        let rows = st.query_map([RequestState::Queued], |r| {
            let track = track_row_at(r, 4)?;
            Ok((
                Entry {
                    id: r.get(0)?,
                    track_id: track.id,
                    artist: track.artist.clone(),
                    guest: r.get(1)?,
                    created_ms: r.get(2)?,
                    voters: Default::default(),
                    pin: r.get(3)?,
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
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
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
                "SELECT p.id, p.track_id, p.request_id, r.guest_id, p.started_ms, p.position_ms
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
                track: track_row_at(r, 7)?,
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

    // ---- host sessions -------------------------------------------------------------------

    pub fn host_sessions(&self) -> Result<Vec<crate::login::HostSession>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT guest_id, created_ms, expires_ms, last_seen_ms, addr FROM host_sessions
             ORDER BY created_ms",
        )?;
        let rows = st.query_map([], |r| {
            Ok(crate::login::HostSession {
                guest_id: r.get(0)?,
                created_ms: r.get(1)?,
                expires_ms: r.get(2)?,
                last_seen_ms: r.get(3)?,
                addr: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn insert_host_session(&self, s: &crate::login::HostSession) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO host_sessions
                 (guest_id, created_ms, expires_ms, last_seen_ms, addr)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                s.guest_id,
                s.created_ms,
                s.expires_ms,
                s.last_seen_ms,
                s.addr
            ])?;
        Ok(())
    }

    /// Deletes these host sessions, or all of them; returns how many went.
    pub fn delete_host_sessions(&self, ids: Option<&[GuestId]>) -> Result<usize, StoreError> {
        Ok(match ids {
            None => self.conn.execute("DELETE FROM host_sessions", [])?,
            Some(ids) => {
                let mut st = self
                    .conn
                    .prepare_cached("DELETE FROM host_sessions WHERE guest_id = ?1")?;
                let mut n = 0;
                for id in ids {
                    n += st.execute([id])?;
                }
                n
            }
        })
    }

    pub fn delete_expired_host_sessions(&self, now_ms: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM host_sessions WHERE expires_ms <= ?1", [now_ms])?)
    }

    pub fn touch_host_sessions(&self, seen: &[(GuestId, i64)]) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare_cached("UPDATE host_sessions SET last_seen_ms = ?2 WHERE guest_id = ?1")?;
        for (id, at) in seen {
            st.execute(params![id, at])?;
        }
        Ok(())
    }

    fn exec(&self, sql: &str) -> Result<(), rusqlite::Error> {
        self.conn.execute_batch(sql)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct MaxIds {
    pub guest: i64,
    pub request: i64,
    pub play: i64,
}

const TRACK_COLS: &str =
    "t.id, t.path, t.title, t.artist, t.album, t.track_no, t.duration_ms, t.has_art, t.present, t.likes";

fn track_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Track> {
    track_row_at(r, 0)
}

fn track_row_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Track> {
    Ok(Track {
        id: r.get(i)?,
        path: PathBuf::from(r.get::<_, String>(i + 1)?),
        title: r.get(i + 2)?,
        artist: r.get(i + 3)?,
        album: r.get(i + 4)?,
        track_no: r.get(i + 5)?,
        duration_ms: r.get::<_, i64>(i + 6)?.max(0) as u64,
        has_art: r.get(i + 7)?,
        present: r.get(i + 8)?,
        likes: r.get::<_, i64>(i + 9)?.max(0) as u32,
    })
}

/// The database holds the PIN's hash and token digests: only its owner may read it. A new
/// file is created 0600 (SQLite gives its `-wal` and `-shm` the database's mode); an existing
/// one readable by others is tightened.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if let Ok(meta) = std::fs::metadata(&p) {
            let mode = meta.permissions().mode();
            if meta.is_file() && mode & 0o077 != 0 {
                if let Err(e) =
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o700))
                {
                    tracing::warn!("cannot make {} private: {e}", p.display());
                }
            }
        }
    }
    Ok(())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Turns what a guest typed into an FTS5 query: each word becomes a quoted prefix term, so
/// no input can be FTS5 syntax ("AND", quotes, `*`, `NEAR(` are just text).
pub fn fts_query(q: &str) -> String {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{w}\"*"))
        .collect::<Vec<_>>()
        .join(" ")
}

type Work = Box<dyn FnOnce(&Db) -> Result<(), StoreError> + Send>;
type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Job {
    /// Runs inside the group transaction; `done` runs after the commit.
    Write { work: Work, done: Done },
    /// Runs after every write submitted before it has been committed.
    Read(Box<dyn FnOnce(&Db) + Send>),
}

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
}

/// Most jobs one transaction takes; bounds the latency a big burst adds to its first job.
const MAX_GROUP: usize = 512;

impl Store {
    /// Opens (creating or migrating) the database and starts the store thread. The thread
    /// ends when every handle has been dropped and the jobs queued before that are done.
    pub fn open(path: &Path) -> Result<(Store, std::thread::JoinHandle<()>), StoreError> {
        let db = Db::open(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || run(db, rx))
            .map_err(StoreError::Thread)?;
        Ok((Store { tx }, handle))
    }

    /// Queues a write; `done` gets its outcome once the transaction holding it is durable.
    pub fn write(
        &self,
        work: impl FnOnce(&Db) -> Result<(), StoreError> + Send + 'static,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let job = Job::Write {
            work: Box::new(work),
            done: Box::new(done),
        };
        if let Err(mpsc::SendError(Job::Write { done, .. })) = self.tx.send(job) {
            done(Err(StoreError::Closed));
        }
    }

    /// Queues a read that sees every write submitted before it.
    pub fn read(&self, f: impl FnOnce(&Db) + Send + 'static) -> Result<(), StoreError> {
        self.tx
            .send(Job::Read(Box::new(f)))
            .map_err(|_| StoreError::Closed)
    }

    /// Runs `f` as a read (after every write submitted before it) and returns its value.
    /// Reads do not join the group transaction, so they never delay a commit.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.read(move |db| {
            let _ = tx.send(f(db));
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` as a write and waits for its commit.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slot = self.submit(f, move |res| {
            let _ = tx.send(res);
        });
        rx.await.map_err(|_| StoreError::Closed)??;
        take(&slot)
    }

    /// The same as [`Store::call`] for threads outside the runtime (the library scanner).
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let slot = self.submit(f, move |res| {
            let _ = tx.send(res);
        });
        rx.recv().map_err(|_| StoreError::Closed)??;
        take(&slot)
    }

    /// Queues `f` as a write whose value lands in the returned slot; `done` runs after commit.
    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Slot<R> {
        let slot: Slot<R> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.write(
            move |db| {
                let r = f(db)?;
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                Ok(())
            },
            done,
        );
        slot
    }
}

type Slot<R> = Arc<Mutex<Option<R>>>;

fn take<R>(slot: &Slot<R>) -> Result<R, StoreError> {
    let value = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    value.ok_or(StoreError::Closed)
}

fn run(db: Db, rx: mpsc::Receiver<Job>) {
    let mut pending: Vec<(Done, Result<(), StoreError>)> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut in_tx = false;
        let mut taken = 0;
        while let Some(job) = next.take() {
            taken += 1;
            match job {
                Job::Write { work, done } => {
                    if !in_tx {
                        if let Err(e) = db.exec("BEGIN IMMEDIATE") {
                            done(Err(e.into()));
                            next = if taken < MAX_GROUP {
                                rx.try_recv().ok()
                            } else {
                                None
                            };
                            continue;
                        }
                        in_tx = true;
                    }
                    let res = run_in_savepoint(&db, work);
                    let failed = res.is_err();
                    pending.push((done, res));
                    if failed && db.conn.is_autocommit() {
                        // SQLite rolled the whole transaction back (a full disk, an I/O
                        // error): nothing of this group was saved, so none of it may be
                        // acknowledged. Later jobs start a new transaction.
                        for (done, res) in pending.drain(..) {
                            done(Err(res.err().unwrap_or_else(|| {
                                StoreError::Commit("rolled back with a failed neighbour".into())
                            })));
                        }
                        in_tx = false;
                    }
                }
                Job::Read(f) => {
                    if in_tx {
                        commit(&db, &mut pending);
                        in_tx = false;
                    }
                    // A panicking read must not take the store thread down with it.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&db))).is_err() {
                        tracing::error!("a store read panicked");
                    }
                }
            }
            if taken < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if in_tx {
            commit(&db, &mut pending);
        }
    }
    // Every handle is gone: the last commit is done. Fold the WAL back so the file is whole.
    if let Err(e) = db.exec("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!("database checkpoint at shutdown failed: {e}");
    }
}

fn run_in_savepoint(db: &Db, work: Work) -> Result<(), StoreError> {
    db.exec("SAVEPOINT job")?;
    // A panicking job must not take the store thread (and every later write) down with it.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(db)))
        .unwrap_or(Err(StoreError::Panicked));
    match res {
        Ok(()) => {
            db.exec("RELEASE job")?;
            Ok(())
        }
        Err(e) => {
            if let Err(re) = db.exec("ROLLBACK TO job; RELEASE job") {
                tracing::error!("rollback of a failed store job failed: {re}");
            }
            Err(e)
        }
    }
}

fn commit(db: &Db, pending: &mut Vec<(Done, Result<(), StoreError>)>) {
    let committed = db.exec("COMMIT");
    if let Err(e) = &committed {
        tracing::error!("database commit failed: {e}; the changes in it are refused");
        let _ = db.exec("ROLLBACK");
    }
    for (done, res) in pending.drain(..) {
        match (&committed, res) {
            (Ok(()), res) => done(res),
            (Err(e), _) => done(Err(StoreError::Commit(e.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_states_are_stored_as_their_words_and_read_back() {
        let db = Db {
            conn: Connection::open_in_memory().unwrap(),
        };
        let word = |v: &dyn ToSql| -> String {
            db.conn.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap()
        };
        assert_eq!(word(&RequestState::Queued), "queued");
        assert_eq!(word(&RequestState::Played), "played");
        assert_eq!(word(&RequestState::Removed), "removed");
        assert_eq!(word(&PlayEnd::Finished), "finished");
        assert_eq!(word(&PlayEnd::Skipped), "skipped");
        assert_eq!(word(&PlayEnd::Error), "error");
        for w in ["queued", "played", "removed"] {
            let back: RequestState = db.conn.query_row("SELECT ?1", [w], |r| r.get(0)).unwrap();
            assert_eq!(back.as_str(), w);
        }
        for w in ["finished", "skipped", "error"] {
            let back: PlayEnd = db.conn.query_row("SELECT ?1", [w], |r| r.get(0)).unwrap();
            assert_eq!(back.as_str(), w);
        }
        let bad: rusqlite::Result<PlayEnd> =
            db.conn.query_row("SELECT 'exploded'", [], |r| r.get(0));
        assert!(bad.is_err());
    }

    #[test]
    fn fts_query_quotes_every_word_as_a_prefix() {
        let table = [
            ("abba", "\"abba\"*"),
            ("  Dancing   que ", "\"Dancing\"* \"que\"*"),
            ("AND OR NOT", "\"AND\"* \"OR\"* \"NOT\"*"),
            ("\"*(:^-", ""),
            ("beyoncé", "\"beyoncé\"*"),
            ("", ""),
        ];
        for (q, want) in table {
            assert_eq!(fts_query(q), want, "{q:?}");
        }
    }
}
