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

use crate::party::{Candidate, Entry, EntryId, GuestId, PlayId, RecentPlay, Rules, TrackId};

mod jobs;
mod library;
mod loudness;
mod party;
mod people;

pub use jobs::Store;
pub use loudness::{LoudnessCounts, LoudnessWork};

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
    /// The database's storage refuses what was written: nothing of it was saved.
    #[error("the storage {0}")]
    Storage(Storage),
}

/// Why the storage refused a write, in words a guest may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The filesystem turned read-only (the kernel does this to a failing SD card).
    ReadOnly,
    Full,
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::ReadOnly => "has turned read-only",
            Storage::Full => "is full",
        })
    }
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Its loudness, as far as it is known.
    pub levels: crate::loudness::Levels,
}

impl Track {
    /// What the content rules look at.
    pub fn facts(&self) -> crate::party::Facts<'_> {
        crate::party::Facts {
            artist: &self.artist,
            title: &self.title,
            album: &self.album,
            duration_ms: self.duration_ms,
            path: &self.path,
        }
    }
}

/// A play of the recent history, with who asked for it and its likes.
#[derive(Debug, Clone, PartialEq)]
pub struct PastPlay {
    pub play_id: PlayId,
    pub track: Track,
    pub requester: Option<GuestId>,
    pub dedication: Option<String>,
    pub started_ms: i64,
    pub likes: u32,
    /// `None` while it plays.
    pub ended: Option<PlayEnd>,
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Its loudness according to its ReplayGain / R128 tags.
    pub tag_levels: crate::loudness::TagLevels,
    pub details: Details,
}

/// What MPD clients show of a file beyond the party's own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// As tagged (no fallback to the artist: MPD prints only what the file says).
    pub album_artist: Option<String>,
    pub genre: Option<String>,
    /// As tagged ("2024", "2024-05-01").
    pub date: Option<String>,
    pub disc: Option<u32>,
    pub format: Option<AudioFormat>,
    pub bitrate_kbps: Option<u32>,
}

/// A file's sample format as its container states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    pub sample_rate: u32,
    /// `None` for a lossy codec, which decodes to floating point.
    pub bits: Option<u8>,
    pub channels: u8,
}

impl std::fmt::Display for AudioFormat {
    /// As MPD prints it: `44100:16:2`, `48000:f:2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bits {
            Some(b) => write!(f, "{}:{b}:{}", self.sample_rate, self.channels),
            None => write!(f, "{}:f:{}", self.sample_rate, self.channels),
        }
    }
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
    pub dedication: Option<String>,
    pub started_ms: i64,
    pub position_ms: u64,
    pub likes: Vec<GuestId>,
    pub skip_votes: Vec<GuestId>,
}

/// One line of the export: a play with who requested it and its likes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayReport {
    pub play_id: PlayId,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub end_reason: Option<PlayEnd>,
    pub track: Track,
    pub requested_by: Option<String>,
    pub dedication: Option<String>,
    pub votes: u32,
    pub likes: u32,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../migrations/001_initial.sql")),
        M::up(include_str!("../migrations/002_host_sessions.sql")),
        M::up(include_str!("../migrations/003_identities.sql")),
        M::up(include_str!("../migrations/004_loudness.sql")),
        M::up(include_str!("../migrations/005_details.sql")),
        M::up(include_str!("../migrations/006_dedications.sql")),
    ])
}

/// The connection and every typed query. Only the store thread (or a short-lived read-only
/// tool such as `jukebox export`) holds one.
pub struct Db {
    conn: Connection,
}

impl Db {
    /// What the storage says after a write failed with `e`: full, or read-only (the database
    /// file can no longer be opened for writing); `None` when it is neither. SQLite itself
    /// only says "disk I/O error" when its filesystem turned read-only under it.
    pub(crate) fn storage_fault(&self, e: &StoreError) -> Option<Storage> {
        if let StoreError::Sql(rusqlite::Error::SqliteFailure(f, _)) = e {
            if f.code == rusqlite::ErrorCode::DiskFull {
                return Some(Storage::Full);
            }
        }
        let path = self.conn.path().filter(|p| !p.is_empty())?;
        match std::fs::OpenOptions::new().append(true).open(path) {
            Err(io) if io.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
                Some(Storage::ReadOnly)
            }
            Err(io) if io.kind() == std::io::ErrorKind::StorageFull => Some(Storage::Full),
            _ => None,
        }
    }

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

    fn exec(&self, sql: &str) -> Result<(), rusqlite::Error> {
        self.conn.execute_batch(sql)
    }
}

/// The highest row id of the guests, requests and plays tables. The hub is their only writer,
/// so it hands out the next ids itself: an id is known (and announced) before its row commits.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxIds {
    pub guest: i64,
    pub request: i64,
    pub play: i64,
}

impl MaxIds {
    pub fn next_guest(&mut self) -> GuestId {
        self.guest += 1;
        GuestId::new(self.guest)
    }
    pub fn next_request(&mut self) -> EntryId {
        self.request += 1;
        EntryId::new(self.request)
    }
    pub fn next_play(&mut self) -> PlayId {
        self.play += 1;
        PlayId::new(self.play)
    }
}

const TRACK_COLS: &str = "t.id, t.path, t.title, t.artist, t.album, t.track_no, t.duration_ms, \
     t.has_art, t.present, t.likes, t.lufs, t.peak, t.album_lufs, t.tag_track_lufs, t.tag_album_lufs";

/// Columns of [`Details`] and the file's modification time, after [`TRACK_COLS`].
const DETAIL_COLS: &str = "t.album_artist, t.genre, t.date, t.disc, t.sample_rate, t.bits, \
     t.channels, t.bitrate_kbps, t.mtime_ns";
const TRACK_COL_COUNT: usize = 15;

/// A track with what MPD clients show of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    pub track: Track,
    pub details: Details,
    /// The file's modification time (Unix seconds) when it was last read.
    pub modified_s: Option<i64>,
}

fn described_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Described> {
    let i = TRACK_COL_COUNT;
    let rate: Option<u32> = r.get(i + 4)?;
    let channels: Option<u8> = r.get(i + 6)?;
    let format = rate
        .zip(channels)
        .map(|(sample_rate, channels)| AudioFormat {
            sample_rate,
            bits: r.get(i + 5).ok().flatten(),
            channels,
        });
    let mtime_ns: i64 = r.get(i + 8)?;
    Ok(Described {
        track: track_row(r)?,
        details: Details {
            album_artist: r.get(i)?,
            genre: r.get(i + 1)?,
            date: r.get(i + 2)?,
            disc: r.get(i + 3)?,
            format,
            bitrate_kbps: r.get(i + 7)?,
        },
        modified_s: (mtime_ns > 0).then_some(mtime_ns / 1_000_000_000),
    })
}

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
        levels: levels_at(r, i + 10)?,
    })
}

/// The five loudness columns of [`TRACK_COLS`], from `i` on.
fn levels_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<crate::loudness::Levels> {
    let f = |k: usize| -> rusqlite::Result<Option<f32>> {
        Ok(r.get::<_, Option<f64>>(i + k)?
            .map(|v| v as f32)
            .filter(|v| v.is_finite()))
    };
    Ok(crate::loudness::Levels {
        track_lufs: f(0)?,
        track_peak: f(1)?,
        album_lufs: f(2)?,
        tag_track_lufs: f(3)?,
        tag_album_lufs: f(4)?,
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
    fn tracks_from_before_levelling_are_read_again_by_the_next_scan() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations().to_version(&mut conn, 3).unwrap();
        conn.execute(
            "INSERT INTO tracks (path, size, mtime_ns, title, duration_ms) VALUES ('/m/a.mp3', 10, 1234, 'A', 1000)",
            [],
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let db = Db { conn };
        let known = db.known_files().unwrap();
        let stamp = known[&path_key(Path::new("/m/a.mp3"))];
        assert_eq!(
            (stamp.size, stamp.mtime_ns),
            (10, -1),
            "looks changed to the scan"
        );
        let t = db.track(TrackId::new(1)).unwrap().unwrap();
        assert_eq!(t.levels, crate::loudness::Levels::default());
    }

    #[test]
    fn tracks_from_before_details_are_read_again_keeping_their_loudness() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations().to_version(&mut conn, 4).unwrap();
        conn.execute(
            "INSERT INTO tracks (path, size, mtime_ns, title, duration_ms, lufs, peak, measured_ms)
             VALUES ('/m/a.flac', 10, 1796149869000000000, 'A', 1000, -9.5, 0.8, 1000)",
            [],
        )
        .unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let db = Db { conn };
        let key = path_key(Path::new("/m/a.flac"));
        assert_eq!(db.known_files().unwrap()[&key].mtime_ns, -1, "read again");
        let details = Details {
            album_artist: Some("Various".into()),
            genre: Some("Party".into()),
            date: Some("2024".into()),
            disc: Some(2),
            format: Some(AudioFormat {
                sample_rate: 48_000,
                bits: None,
                channels: 2,
            }),
            bitrate_kbps: Some(128),
        };
        db.upsert_track(&ScannedTrack {
            path: "/m/a.flac".into(),
            size: 10,
            mtime_ns: 1_796_149_869_000_000_000,
            title: "A".into(),
            artist: "Artist".into(),
            album: String::new(),
            track_no: None,
            duration_ms: 1000,
            has_art: false,
            tag_levels: Default::default(),
            details: details.clone(),
        })
        .unwrap();
        assert_eq!(
            db.known_files().unwrap()[&key].mtime_ns,
            1_796_149_869_000_000_000
        );
        let d = db.described(TrackId::new(1)).unwrap().unwrap();
        assert_eq!(d.details, details);
        assert_eq!(d.modified_s, Some(1_796_149_869));
        assert_eq!(
            d.track.levels.track_lufs,
            Some(-9.5),
            "the same file keeps its measurement"
        );
        assert_eq!(db.all_described().unwrap(), vec![d]);
        assert_eq!(details.format.unwrap().to_string(), "48000:f:2");
        assert_eq!(TRACK_COLS.split(',').count(), TRACK_COL_COUNT);
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
