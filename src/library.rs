//! The library: walks the music folder, reads tags with `lofty`, and writes what it found to
//! the store in batches. Blocking by nature, so it runs on its own thread, never on the async
//! runtime. Rescans are incremental: a file whose size and modification time did not change is
//! not read again, and a file that disappeared is marked absent (it leaves search, not history).
//! It never touches the queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use lofty::config::ParseOptions;
use lofty::file::{FileType, TaggedFile};
use lofty::prelude::*;
use lofty::probe::Probe;

use crate::store::{path_key, AudioFormat, Details, FileStamp, ScannedTrack, Store, StoreError};

/// File endings the decoder can play (`player::decode`).
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "mp3", "flac", "ogg", "oga", "opus", "wav", "m4a", "mp4", "aac", "aif", "aiff", "aifc",
];

/// Audio that no decoder here plays: left out of the library, and counted in one log line per
/// scan so that the host knows why part of a collection is missing. A track that is listed but
/// cannot play would only disappoint a guest.
pub const UNPLAYABLE_EXTENSIONS: &[&str] = &[
    "wma", "asf", "wv", "ape", "mpc", "mp+", "mpp", "tta", "tak", "ofr", "ofs", "shn", "dsf",
    "dff", "spx", "mka", "webm", "ac3", "dts", "ra", "rm", "caf", "amr", "au", "mid", "midi",
];

/// Example paths named in the log line about unplayable files.
const LEFT_OUT_EXAMPLES: usize = 3;

/// Files written to the store per transaction while scanning.
const BATCH: usize = 256;
/// How often a long scan logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("music folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read tags: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: no audio (zero length)")]
    NoAudio { path: PathBuf },
    /// A file of an extension we play whose content no decoder here plays (Speex in `.ogg`,
    /// an unsupported codec in `.m4a` or `.wav`, ...). `kind` names it for the scan's summary.
    #[error("{path}: cannot be played: {kind}")]
    Unplayable { path: PathBuf, kind: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("scan cancelled")]
    Cancelled,
}

/// What a scan did, for logs, the host page and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Audio files found.
    pub files: u64,
    /// Read because they were new or changed.
    pub read: u64,
    /// Not read: same size and modification time as last time.
    pub unchanged: u64,
    /// Known before, gone now.
    pub removed: u64,
    /// Unreadable or corrupt: skipped with a log line each.
    pub skipped: u64,
    /// Audio no decoder here plays, left out (one log line sums them up).
    pub unplayable: u64,
    pub elapsed: Duration,
}

/// Progress of a running scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanProgress {
    pub files: u64,
    pub read: u64,
    pub done: bool,
}

/// Scans `root` into the store. Blocking: call it from a thread of its own. Setting `cancel`
/// stops it between two files; what was read so far is kept, and nothing is marked absent.
pub fn scan(
    root: &Path,
    store: &Store,
    progress: &dyn Fn(ScanProgress),
    cancel: &AtomicBool,
) -> Result<ScanReport, LibraryError> {
    let started = Instant::now();
    let root = root.canonicalize().map_err(|source| LibraryError::Folder {
        path: root.to_owned(),
        source,
    })?;
    let mut known: HashMap<u64, FileStamp> = store.read_blocking(|db| db.known_files())?;
    let mut report = ScanReport::default();
    let mut batch: Vec<ScannedTrack> = Vec::with_capacity(BATCH);
    let mut revive: Vec<PathBuf> = Vec::new();
    let mut last_log = Instant::now();
    let mut unreadable: HashSet<u64> = HashSet::new();
    let mut left_out = LeftOut::default();

    for entry in walkdir::WalkDir::new(&root).follow_links(true) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(
                    "skipping {}: {e}",
                    e.path().map_or(root.clone(), Path::to_path_buf).display()
                );
                continue;
            }
        };
        if cancel.load(Ordering::Relaxed) {
            flush(store, &mut batch, &mut revive)?;
            return Err(LibraryError::Cancelled);
        }
        if !entry.file_type().is_file() {
            continue;
        }
        if !is_audio(entry.path()) {
            if let Some(ext) = unplayable_extension(entry.path()) {
                left_out.add(ext.to_ascii_lowercase(), entry.path(), &root);
            }
            continue;
        }
        report.files += 1;
        let path = entry.path().to_path_buf();
        let Ok(meta) = entry.metadata() else {
            tracing::warn!("skipping {}: cannot stat", path.display());
            report.skipped += 1;
            continue;
        };
        let (size, mtime) = (meta.len(), mtime_ns(&meta));
        match known.remove(&path_key(&path)) {
            Some(k) if k.size == size && k.mtime_ns == mtime => {
                report.unchanged += 1;
                if !k.present {
                    revive.push(path);
                }
                continue;
            }
            _ => {}
        }
        match read_file(&path, size, mtime) {
            Ok(t) => {
                report.read += 1;
                batch.push(t);
            }
            Err(LibraryError::Unplayable { path, kind }) => {
                left_out.add(kind, &path, &root);
                unreadable.insert(path_key(&path));
            }
            Err(e) => {
                report.skipped += 1;
                tracing::warn!("skipping {e}");
                // A known file that became unreadable leaves search too.
                unreadable.insert(path_key(&path));
            }
        }
        if batch.len() >= BATCH {
            flush(store, &mut batch, &mut revive)?;
        }
        if last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            tracing::info!(
                "scanning {}: {} files so far, {} read",
                root.display(),
                report.files,
                report.read
            );
            progress(ScanProgress {
                files: report.files,
                read: report.read,
                done: false,
            });
        }
    }
    flush(store, &mut batch, &mut revive)?;
    report.unplayable = left_out.count;
    left_out.log();

    // Whatever is left in `known` was not found this time: it leaves search, not history.
    let mut gone: HashSet<u64> = known
        .into_iter()
        .filter(|(_, k)| k.present)
        .map(|(key, _)| key)
        .collect();
    gone.extend(unreadable);
    report.removed = store.write_blocking(move |db| db.mark_absent(&gone))?;
    report.elapsed = started.elapsed();
    progress(ScanProgress {
        files: report.files,
        read: report.read,
        done: true,
    });
    Ok(report)
}

fn flush(
    store: &Store,
    batch: &mut Vec<ScannedTrack>,
    revive: &mut Vec<PathBuf>,
) -> Result<(), LibraryError> {
    if batch.is_empty() && revive.is_empty() {
        return Ok(());
    }
    let tracks = std::mem::take(batch);
    let back = std::mem::take(revive);
    store.write_blocking(move |db| {
        for t in &tracks {
            db.upsert_track(t)?;
        }
        for p in &back {
            db.set_present(p, true)?;
        }
        Ok(())
    })?;
    Ok(())
}

pub fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
}

/// The extension of a file that is audio of a kind we do not play.
fn unplayable_extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str()).filter(|e| {
        UNPLAYABLE_EXTENSIONS
            .iter()
            .any(|a| a.eq_ignore_ascii_case(e))
    })
}

/// The files a scan left out because nothing here plays them: counted by kind, a few named.
#[derive(Debug, Default)]
struct LeftOut {
    count: u64,
    kinds: BTreeMap<String, u64>,
    examples: Vec<String>,
}

impl LeftOut {
    fn add(&mut self, kind: String, path: &Path, root: &Path) {
        self.count += 1;
        *self.kinds.entry(kind).or_default() += 1;
        if self.examples.len() < LEFT_OUT_EXAMPLES {
            let shown = path.strip_prefix(root).unwrap_or(path);
            self.examples.push(shown.display().to_string());
        }
    }

    /// One line for the whole scan, whatever the count.
    fn log(&self) {
        if self.count == 0 {
            return;
        }
        let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let more = if self.count as usize > self.examples.len() {
            ", ..."
        } else {
            ""
        };
        tracing::warn!(
            "left out {} audio file{} that cannot be played here ({}): {}{more}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            kinds.join(", "),
            self.examples.join(", "),
        );
    }
}

/// Whether the decoder plays what `tagged` holds. The file's type comes from its content
/// (lofty), not its name. An MP4 may hold any of several codecs, so there the decoder itself is
/// asked (it reads the headers and one packet, a small cost next to reading the tags). WAV and
/// AIFF are not asked, to keep the scan of large lossless libraries fast: lofty already refuses
/// the compressed WAV kinds it does not know, and the rest is PCM, which the decoder plays.
fn check_playable(path: &Path, tagged: &TaggedFile) -> Result<(), LibraryError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let unplayable = |why: &str| LibraryError::Unplayable {
        path: path.to_owned(),
        kind: format!("{ext} ({why})"),
    };
    match tagged.file_type() {
        FileType::Mpeg
        | FileType::Flac
        | FileType::Vorbis
        | FileType::Aac
        | FileType::Wav
        | FileType::Aiff => Ok(()),
        // libopus is set up for mono and stereo only.
        FileType::Opus if tagged.properties().channels().unwrap_or(2) > 2 => {
            Err(unplayable("Opus with more than two channels"))
        }
        FileType::Opus => Ok(()),
        FileType::Mp4 => {
            crate::player::decode::open_native(path).map_err(|e| {
                tracing::debug!("cannot play {e}");
                unplayable("a codec we cannot decode")
            })?;
            Ok(())
        }
        FileType::Speex => Err(unplayable("Speex")),
        FileType::Ape => Err(unplayable("Monkey's Audio")),
        FileType::Mpc => Err(unplayable("Musepack")),
        FileType::WavPack => Err(unplayable("WavPack")),
        other => Err(unplayable(&format!("{other:?}"))),
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// Reads one file's tags and length. No tags: the title comes from the file name.
pub fn read_file(path: &Path, size: u64, mtime_ns: i64) -> Result<ScannedTrack, LibraryError> {
    let unreadable = |message: String| LibraryError::Unreadable {
        path: path.to_owned(),
        message,
    };
    let tagged = read_tags(path).map_err(unreadable)?;
    let duration_ms = tagged.properties().duration().as_millis() as u64;
    if duration_ms == 0 {
        return Err(LibraryError::NoAudio {
            path: path.to_owned(),
        });
    }
    check_playable(path, &tagged)?;
    let tag = tagged.primary_tag().or_else(|| tagged.first_tag());
    let text =
        |s: Option<std::borrow::Cow<'_, str>>| s.map(|v| clean(&v)).filter(|v| !v.is_empty());
    let title = tag
        .and_then(|t| text(t.title()))
        .unwrap_or_else(|| title_from_file_name(path));
    let artist = tag
        .and_then(|t| {
            text(t.artist()).or_else(|| {
                t.get_string(ItemKey::AlbumArtist)
                    .map(clean)
                    .filter(|v| !v.is_empty())
            })
        })
        .unwrap_or_default();
    let album = tag.and_then(|t| text(t.album())).unwrap_or_default();
    let track_no = tag.and_then(|t| t.track());
    let has_art = tagged.tags().iter().any(|t| !t.pictures().is_empty());
    let props = tagged.properties();
    let string = |key: ItemKey| {
        tag.and_then(|t| t.get_string(key))
            .map(clean)
            .filter(|v| !v.is_empty())
    };
    let details = Details {
        album_artist: string(ItemKey::AlbumArtist),
        genre: tag.and_then(|t| text(t.genre())),
        date: string(ItemKey::RecordingDate).or_else(|| string(ItemKey::Year)),
        disc: tag.and_then(|t| t.disk()),
        format: props
            .sample_rate()
            .zip(props.channels())
            .map(|(sample_rate, channels)| AudioFormat {
                sample_rate,
                bits: props.bit_depth(),
                channels,
            }),
        bitrate_kbps: props.audio_bitrate().or(props.overall_bitrate()),
    };
    Ok(ScannedTrack {
        path: path.to_owned(),
        size,
        mtime_ns,
        title,
        artist,
        album,
        track_no,
        duration_ms,
        has_art,
        tag_levels: crate::loudness::tags::read(&tagged),
        details,
    })
}

/// A file's tags and properties, as the tag reader reads them. The tag reader is not hardened
/// against every damaged file (the fuzz target found an overflow in its Opus length); a panic
/// in it costs that file, not the scan or the request that asked.
fn read_tags(path: &Path) -> Result<lofty::file::TaggedFile, String> {
    crate::untrusted::guarded(|| {
        Probe::open(path)
            .and_then(|p| {
                p.options(ParseOptions::new().read_cover_art(true))
                    .guess_file_type()
                    .map_err(Into::into)
            })
            .and_then(|p| p.read())
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("the tag reader failed on this file".to_string()))
}

/// Embedded cover art of a file, with its MIME type, the front cover preferred.
pub fn cover_art(path: &Path) -> Option<(Vec<u8>, String)> {
    let tagged = read_tags(path).ok()?;
    let pictures: Vec<&lofty::picture::Picture> =
        tagged.tags().iter().flat_map(|t| t.pictures()).collect();
    let pic = pictures
        .iter()
        .find(|p| p.pic_type() == lofty::picture::PictureType::CoverFront)
        .or_else(|| pictures.first())?;
    let mime = pic
        .mime_type()
        .map_or("application/octet-stream", |m| m.as_str())
        .to_string();
    Some((pic.data().to_vec(), mime))
}

/// Tags come from anywhere: drop control characters and surrounding blanks, cap the length.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect::<String>()
        .trim()
        .to_string()
}

fn title_from_file_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t = clean(&stem.replace('_', " "));
    if t.is_empty() {
        "Untitled".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_extensions() {
        let table = [
            ("a.mp3", true),
            ("a.FLAC", true),
            ("a.ogg", true),
            ("a.wav", true),
            ("a.m4a", true),
            ("a.opus", true),
            ("a.aif", true),
            ("a.AIFF", true),
            ("a.aifc", true),
            ("a.wma", false),
            ("a.wv", false),
            ("a.txt", false),
            ("cover.jpg", false),
            ("noext", false),
        ];
        for (p, want) in table {
            assert_eq!(is_audio(Path::new(p)), want, "{p}");
        }
    }

    #[test]
    fn unplayable_audio_is_told_from_other_files() {
        let table = [
            ("a.wma", Some("wma")),
            ("a.WV", Some("WV")),
            ("a.ape", Some("ape")),
            ("a.mpc", Some("mpc")),
            ("a.mp3", None),
            ("cover.jpg", None),
            ("noext", None),
        ];
        for (p, want) in table {
            assert_eq!(unplayable_extension(Path::new(p)), want, "{p}");
        }
        for e in UNPLAYABLE_EXTENSIONS {
            assert!(!AUDIO_EXTENSIONS.contains(e), "{e} is both");
        }
    }

    #[test]
    fn left_out_files_are_summed_up() {
        let mut l = LeftOut::default();
        let root = Path::new("/m");
        for p in ["/m/a.wma", "/m/x/b.wma", "/m/c.wv", "/m/d.ape"] {
            let ext = Path::new(p)
                .extension()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            l.add(ext, Path::new(p), root);
        }
        assert_eq!(l.count, 4);
        assert_eq!(l.kinds.get("wma"), Some(&2));
        assert_eq!(l.examples, ["a.wma", "x/b.wma", "c.wv"]);
    }

    #[test]
    fn titles_from_file_names() {
        let table = [
            ("/m/01_Dancing_Queen.mp3", "01 Dancing Queen"),
            ("/m/ plain .wav", "plain"),
            ("/m/.mp3", ".mp3"),
        ];
        for (p, want) in table {
            assert_eq!(title_from_file_name(Path::new(p)), want, "{p}");
        }
    }

    #[test]
    fn tag_text_is_cleaned() {
        assert_eq!(clean(" a\u{0}b\n "), "ab");
        assert_eq!(clean(&"x".repeat(1000)).len(), 512);
    }
}
