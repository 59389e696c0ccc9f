//! Built-in demo library for `jukebox --demo`.
//!
//! This module owns everything needed to play something on a machine that has
//! no music of its own: it synthesizes six short, deterministic tunes (`synth`:
//! each a melody with soft note envelopes over a quiet bass line and pad, in its
//! own key and tempo; `tracks`: the list), encodes them as WAV, FLAC and Ogg
//! Vorbis (`encode`) so every decoder path of the player gets exercised, and
//! tags them with `lofty` (title, artist, album, track number and a tiny PNG
//! cover of a vinyl record, `cover.png`). Titles and artists carry accented
//! letters on purpose, so accent-insensitive search can be demonstrated.
//!
//! Files are written to a hidden temporary file in the target directory and
//! renamed into place, so a crash never leaves a half-written track under its
//! final name. A small hidden manifest records the byte size of every track
//! written; on the next start, tracks whose size still matches are kept, which
//! makes a second `--demo` start instant.

mod encode;
mod synth;
mod tracks;

use std::collections::HashMap;
use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use lofty::config::WriteOptions;
use lofty::picture::{MimeType, Picture, PictureType};
use lofty::tag::{Accessor, Tag, TagExt, TagType};

use crate::chain::chain;
use encode::{encode_flac, encode_vorbis, encode_wav};
use synth::Tune;
use tracks::TRACKS;

/// Sample rate of every demo track, in Hz.
const SAMPLE_RATE: u32 = 44_100;
/// Every demo track is stereo.
const CHANNELS: u16 = 2;
/// Album name shared by all demo tracks.
const ALBUM: &str = "Jukebox Demo";
/// Hidden file recording the size of each track we wrote.
const MANIFEST_NAME: &str = ".jukebox-demo-manifest";
/// First line of the manifest. Bump the version whenever the tunes, tags or
/// encoders change so that old demo files get regenerated.
const MANIFEST_HEADER: &str = "jukebox-demo-manifest v2";

/// Errors from [`generate`]. Each variant names the file that failed and
/// carries the cause; the message includes the cause's full chain (the
/// binary prints errors with plain `{}`), so [`std::error::Error::source`]
/// is deliberately empty to avoid printing the cause twice.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Creating the directory, or writing, syncing or renaming a file failed.
    #[error("cannot write demo file {}: {}", path.display(), chain(cause))]
    Io {
        /// The file (or directory) that could not be written.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The audio encoder rejected the synthesized samples.
    #[error("cannot encode demo track {} as {format}: {}", path.display(), chain(&**cause))]
    Encode {
        /// The track being encoded.
        path: PathBuf,
        /// "WAV", "FLAC" or "Ogg Vorbis".
        format: &'static str,
        /// The encoder's error.
        cause: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Writing the metadata tags into the encoded track failed.
    #[error("cannot tag demo track {}: {}", path.display(), chain(cause))]
    Tag {
        /// The track being tagged.
        path: PathBuf,
        /// lofty's error.
        cause: lofty::error::FileEncodingError,
    },
}

/// The cover art of every track: a 32x32 vinyl record (drawn once, encoded by ffmpeg).
const COVER_PNG: &[u8] = include_bytes!("cover.png");
/// Side length of the cover, in pixels.
#[cfg(test)]
const COVER_SIZE: u32 = 32;

/// Writes the demo tracks into `dir` (created if missing) and returns their paths.
/// Files that already exist with the right size are kept, so a second start is instant.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>, DemoError> {
    fs::create_dir_all(dir).map_err(|cause| DemoError::Io {
        path: dir.to_path_buf(),
        cause,
    })?;
    let manifest_path = dir.join(MANIFEST_NAME);
    let old_manifest = read_manifest(&manifest_path);
    let mut new_manifest = Vec::with_capacity(TRACKS.len());
    let mut paths = Vec::with_capacity(TRACKS.len());
    let mut changed = false;

    for track in TRACKS {
        let file_name = track.file_name();
        let path = dir.join(&file_name);
        let on_disk = fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let size = match (on_disk, old_manifest.get(&file_name)) {
            (Some(actual), Some(&expected)) if actual == expected => {
                tracing::debug!(path = %path.display(), "demo track already present");
                actual
            }
            _ => {
                tracing::info!(
                    path = %path.display(),
                    seconds = track.tune.duration_secs(),
                    "generating demo track"
                );
                let bytes = track.render_file(&path)?;
                write_atomically(&path, &bytes)?;
                changed = true;
                bytes.len() as u64
            }
        };
        new_manifest.push((file_name, size));
        paths.push(path);
    }

    if changed || old_manifest.len() != new_manifest.len() {
        let mut text = String::from(MANIFEST_HEADER);
        text.push('\n');
        for (name, size) in &new_manifest {
            text.push_str(&format!("{name}\t{size}\n"));
        }
        write_atomically(&manifest_path, text.as_bytes())?;
    }
    Ok(paths)
}

/// Reads the manifest written by a previous [`generate`]; an absent, unreadable
/// or outdated manifest yields an empty map, which makes every track regenerate.
fn read_manifest(path: &Path) -> HashMap<String, u64> {
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        return HashMap::new();
    }
    lines
        .filter_map(|line| {
            let (name, size) = line.split_once('\t')?;
            Some((name.to_owned(), size.parse().ok()?))
        })
        .collect()
}

/// Writes `bytes` to a hidden temporary file next to `path`, syncs it and
/// renames it over `path`, so `path` is either absent, old, or complete. The
/// temporary file is removed if anything fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    let io_err = |cause| DemoError::Io {
        path: path.to_path_buf(),
        cause,
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".jukebox-demo-")
        .suffix(".partial")
        // Music files like any other (the umask applies), not tempfile's owner-only 0600.
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.as_file().sync_all().map_err(io_err)?;
    file.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// Container/codec of a demo track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Wav,
    Flac,
    Ogg,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Wav => "wav",
            Format::Flac => "flac",
            Format::Ogg => "ogg",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Format::Wav => "WAV",
            Format::Flac => "FLAC",
            Format::Ogg => "Ogg Vorbis",
        }
    }
}

/// One demo track: its metadata and the tune it plays.
struct Track {
    number: u32,
    /// ASCII file name without the number prefix or extension.
    slug: &'static str,
    format: Format,
    title: &'static str,
    artist: &'static str,
    tune: Tune,
}

impl Track {
    fn file_name(&self) -> String {
        format!(
            "{:02}-{}.{}",
            self.number,
            self.slug,
            self.format.extension()
        )
    }

    /// Encodes and tags the track, returning the complete file contents.
    /// `path` is only used to name the track in errors.
    fn render_file(&self, path: &Path) -> Result<Vec<u8>, DemoError> {
        let [left, right] = self.tune.render();
        let encode_err = |cause: Box<dyn std::error::Error + Send + Sync>| DemoError::Encode {
            path: path.to_path_buf(),
            format: self.format.label(),
            cause,
        };
        let (bytes, tag_type) = match self.format {
            Format::Wav => (
                encode_wav(&left, &right).map_err(|e| encode_err(e.into()))?,
                TagType::Id3v2,
            ),
            Format::Flac => (
                encode_flac(&left, &right).map_err(encode_err)?,
                TagType::VorbisComments,
            ),
            Format::Ogg => (
                encode_vorbis(&left, &right, self.number).map_err(|e| encode_err(e.into()))?,
                TagType::VorbisComments,
            ),
        };

        let mut tag = Tag::new(tag_type);
        tag.set_title(self.title.to_owned());
        tag.set_artist(self.artist.to_owned());
        tag.set_album(ALBUM.to_owned());
        tag.set_track(self.number);
        tag.set_track_total(TRACKS.len() as u32);
        tag.push_picture(
            Picture::unchecked(COVER_PNG.to_vec())
                .pic_type(PictureType::CoverFront)
                .mime_type(MimeType::Png)
                .description("Jukebox Demo cover")
                .build(),
        );
        let mut file = Cursor::new(bytes);
        // No padding: nobody edits these tags in place, and lofty warns when it
        // has to add a FLAC PADDING block.
        tag.save_to(&mut file, WriteOptions::new().preferred_padding(0))
            .map_err(|cause| DemoError::Tag {
                path: path.to_path_buf(),
                cause,
            })?;
        Ok(file.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lofty::file::{AudioFile, TaggedFileExt};
    use rodio::Source;
    use std::time::{Duration, SystemTime};

    fn track_for(path: &Path) -> &'static Track {
        let name = path.file_name().unwrap().to_str().unwrap();
        TRACKS
            .iter()
            .find(|t| t.file_name() == name)
            .unwrap_or_else(|| panic!("unexpected file {name}"))
    }

    #[test]
    fn error_names_file_and_cause() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<DemoError>();
        let err = DemoError::Io {
            path: PathBuf::from("/demo/01-x.wav"),
            cause: std::io::Error::other("disk full"),
        };
        assert_eq!(
            err.to_string(),
            "cannot write demo file /demo/01-x.wav: disk full"
        );

        // A read-only directory makes writing fail with a useful message.
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let err = generate(&blocker.join("demo")).unwrap_err();
        assert!(matches!(err, DemoError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    fn cover_is_a_png_lofty_understands() {
        let png = COVER_PNG;
        let picture = Picture::from_reader(&mut &png[..]).expect("valid picture");
        assert_eq!(picture.mime_type(), Some(&MimeType::Png));
        let info = lofty::picture::PictureInformation::from_png(png).expect("valid PNG header");
        assert_eq!((info.width, info.height), (COVER_SIZE, COVER_SIZE));
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82]));
    }

    #[test]
    fn track_list_meets_the_brief() {
        assert_eq!(TRACKS.len(), 6);
        for format in [Format::Wav, Format::Flac, Format::Ogg] {
            assert_eq!(TRACKS.iter().filter(|t| t.format == format).count(), 2);
        }
        let mut artists: Vec<_> = TRACKS.iter().map(|t| t.artist).collect();
        artists.sort_unstable();
        artists.dedup();
        assert_eq!(artists.len(), 5, "two tracks share one artist");
        assert!(TRACKS.iter().any(|t| !t.title.is_ascii()));
        for track in TRACKS {
            let secs = track.tune.duration_secs();
            assert!(
                (20.0..=30.0).contains(&secs),
                "{} lasts {secs}s",
                track.title
            );
            assert!(track.file_name().is_ascii());
        }
    }

    #[test]
    fn tunes_are_quiet_clickless_and_deterministic() {
        for track in TRACKS {
            let [left, right] = track.tune.render();
            assert_eq!(left.len(), track.tune.total_frames());
            assert_eq!(right.len(), left.len());
            let peak = left.iter().chain(&right).fold(0f32, |m, s| m.max(s.abs()));
            assert!(peak <= 0.5 && peak > 0.3, "{}: peak {peak}", track.title);
            for ch in [&left, &right] {
                assert!(ch[0].abs() < 1e-3 && ch[ch.len() - 1].abs() < 1e-3);
                // No sample-to-sample jumps that would be heard as clicks.
                let jump = ch.windows(2).fold(0f32, |m, w| m.max((w[1] - w[0]).abs()));
                assert!(jump < 0.1, "{}: jump {jump}", track.title);
            }
        }
        let first = TRACKS[0].tune.render();
        assert_eq!(first, TRACKS[0].tune.render());
    }

    #[test]
    fn generates_tagged_playable_tracks() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("demo");
        let paths = generate(&target)?;
        assert_eq!(paths.len(), TRACKS.len());

        for path in &paths {
            let track = track_for(path);
            let expected = track.tune.duration_secs();

            let tagged = lofty::read_from_path(path)?;
            let tag = tagged.primary_tag().expect("primary tag written");
            assert_eq!(tag.title().as_deref(), Some(track.title));
            assert_eq!(tag.artist().as_deref(), Some(track.artist));
            assert_eq!(tag.album().as_deref(), Some(ALBUM));
            assert_eq!(tag.track(), Some(track.number));
            let picture = tag.pictures().first().expect("cover art embedded");
            assert_eq!(picture.data(), COVER_PNG);
            let duration = tagged.properties().duration().as_secs_f64();
            assert!(
                (duration - expected).abs() < 0.1,
                "{}: lofty says {duration}s, expected {expected}s",
                path.display()
            );

            let decoder = rodio::Decoder::try_from(fs::File::open(path)?)?;
            assert_eq!(decoder.channels().get(), CHANNELS);
            assert_eq!(decoder.sample_rate().get(), SAMPLE_RATE);
            let (count, peak) = decoder.fold((0usize, 0f32), |(n, p), s| (n + 1, p.max(s.abs())));
            let frames = count as f64 / f64::from(CHANNELS);
            let expected_frames = expected * f64::from(SAMPLE_RATE);
            assert!(
                (frames - expected_frames).abs() <= expected_frames * 0.01,
                "{}: decoded {frames} frames, expected {expected_frames}",
                path.display()
            );
            assert!(peak <= 0.5, "{}: decoded peak {peak}", path.display());
        }

        // Created like any file (the umask applies), not owner-only like a temporary file.
        {
            use std::os::unix::fs::PermissionsExt;
            let plain = target.join("plain");
            fs::write(&plain, b"x")?;
            let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
            for path in &paths {
                assert_eq!(mode(path)?, mode(&plain)?, "{}", path.display());
            }
            fs::remove_file(&plain)?;
        }

        // Nothing but the tracks and the hidden manifest is left behind.
        let mut names: Vec<_> = fs::read_dir(&target)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        let mut expected: Vec<_> = TRACKS.iter().map(Track::file_name).collect();
        expected.push(MANIFEST_NAME.to_owned());
        expected.sort();
        assert_eq!(names, expected);
        Ok(())
    }

    #[test]
    fn second_generate_keeps_files_and_repairs_damage() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let first = generate(dir.path())?;

        // Backdate every file so any rewrite would be visible in its mtime.
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        for path in &first {
            fs::File::options()
                .write(true)
                .open(path)?
                .set_modified(old)?;
        }
        let sizes: Vec<u64> = first
            .iter()
            .map(|p| fs::metadata(p).map(|m| m.len()))
            .collect::<Result<_, _>>()?;

        let second = generate(dir.path())?;
        assert_eq!(first, second);
        for (path, size) in second.iter().zip(&sizes) {
            let meta = fs::metadata(path)?;
            assert_eq!(meta.modified()?, old, "{} was rewritten", path.display());
            assert_eq!(meta.len(), *size);
        }

        // A truncated file has the wrong size, so it (and only it) is rebuilt.
        let damaged = &second[2];
        fs::File::options()
            .write(true)
            .open(damaged)?
            .set_len(100)?;
        generate(dir.path())?;
        for (path, size) in second.iter().zip(&sizes) {
            let meta = fs::metadata(path)?;
            assert_eq!(meta.len(), *size, "{}", path.display());
            assert_eq!(
                meta.modified()? == old,
                path != damaged,
                "{}",
                path.display()
            );
        }
        Ok(())
    }
}
