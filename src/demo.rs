//! Built-in demo library for `jukebox --demo`.
//!
//! This module owns everything needed to play something on a machine that has
//! no music of its own: it synthesizes six short, deterministic tunes (each a
//! melody with soft note envelopes over a quiet bass line and pad, in its own
//! key and tempo), encodes them as WAV (`hound`), FLAC (`flacenc`) and Ogg
//! Vorbis (`vorbis_rs`) so every decoder path of the player gets exercised, and
//! tags them with `lofty` (title, artist, album, track number and a tiny
//! generated PNG cover). Titles and artists carry accented letters on purpose,
//! so accent-insensitive search can be demonstrated.
//!
//! Files are written to a hidden temporary name in the target directory and
//! renamed into place, so a crash never leaves a half-written track under its
//! final name. A small hidden manifest records the byte size of every track
//! written; on the next start, tracks whose size still matches are kept, which
//! makes a second `--demo` start instant.

use std::collections::HashMap;
use std::f64::consts::TAU;
use std::fs;
use std::io::{Cursor, Write};
use std::num::{NonZeroU32, NonZeroU8};
use std::path::{Path, PathBuf};

use lofty::config::WriteOptions;
use lofty::picture::{MimeType, Picture, PictureType};
use lofty::tag::{Accessor, Tag, TagExt, TagType};

/// Sample rate of every demo track, in Hz.
const SAMPLE_RATE: u32 = 44_100;
/// Every demo track is stereo.
const CHANNELS: u16 = 2;
/// Album name shared by all demo tracks.
const ALBUM: &str = "Jukebox Demo";
/// Silence-to-fade tail after the last bar, in seconds.
const TAIL_SECS: f64 = 1.5;
/// Peak amplitude every track is normalized to (the requirement is ≤ 0.5).
const PEAK: f32 = 0.45;
/// Hidden file recording the size of each track we wrote.
const MANIFEST_NAME: &str = ".jukebox-demo-manifest";
/// First line of the manifest. Bump the version whenever the tunes, tags or
/// encoders change so that old demo files get regenerated.
const MANIFEST_HEADER: &str = "jukebox-demo-manifest v1";

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

/// Formats an error and its sources as "outer: inner: innermost".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(inner) = next {
        let inner_text = inner.to_string();
        // Some libraries repeat their source's message in their own.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        next = inner.source();
    }
    text
}

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
/// renames it over `path`, so `path` is either absent, old, or complete.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    let io_err = |cause| DemoError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.partial", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file is useless now.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

// ---------------------------------------------------------------------------
// The track list
// ---------------------------------------------------------------------------

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

/// Timbre of the melody: relative amplitudes of harmonics 1-4, and how fast
/// each note decays towards its sustain level.
struct Voice {
    harmonics: [f64; 4],
    decay_secs: f64,
    sustain: f64,
}

/// A little composition: a looping melody over a looping chord progression,
/// followed by one bar of the tonic and a fade-out tail.
struct Tune {
    bpm: f64,
    beats_per_bar: u32,
    /// MIDI note number of the tonic of the melody's octave.
    tonic: i32,
    /// Semitone offsets of the 7-note scale.
    scale: &'static [i32; 7],
    /// Scale degree of the chord root for each bar (loops).
    chords: &'static [i32],
    /// `(scale degree or REST, length in beats)` (loops).
    melody: &'static [(i32, f64)],
    /// Number of bars before the final tonic bar.
    bars: u32,
    voice: Voice,
    /// Melody pan: -1 = left, 1 = right.
    pan: f64,
}

/// Melody marker for a rest.
const REST: i32 = i32::MIN;

const MAJOR: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
const MINOR: [i32; 7] = [0, 2, 3, 5, 7, 8, 10];
const DORIAN: [i32; 7] = [0, 2, 3, 5, 7, 9, 10];

const TRACKS: &[Track] = &[
    Track {
        number: 1,
        slug: "cafe-del-mar-ish",
        format: Format::Wav,
        title: "Café del Mar-ish",
        artist: "Señor Sine",
        tune: Tune {
            bpm: 92.0,
            beats_per_bar: 4,
            tonic: 69, // A minor: Am F C G
            scale: &MINOR,
            chords: &[0, 5, 2, 6],
            melody: &[
                (4, 1.5),
                (2, 0.5),
                (0, 1.0),
                (2, 1.0),
                (5, 1.5),
                (4, 0.5),
                (2, 1.0),
                (0, 1.0),
                (4, 1.0),
                (6, 1.0),
                (7, 1.5),
                (6, 0.5),
                (8, 2.0),
                (6, 1.0),
                (REST, 1.0),
            ],
            bars: 8,
            voice: Voice {
                harmonics: [1.0, 0.3, 0.1, 0.05],
                decay_secs: 0.9,
                sustain: 0.35,
            },
            pan: -0.3,
        },
    },
    Track {
        number: 2,
        slug: "creme-brulee-waltz",
        format: Format::Flac,
        title: "Crème Brûlée Waltz",
        artist: "Les Oscillateurs",
        tune: Tune {
            bpm: 132.0,
            beats_per_bar: 3,
            tonic: 65, // F major: F Bb C F
            scale: &MAJOR,
            chords: &[0, 3, 4, 0],
            melody: &[
                (0, 1.0),
                (2, 1.0),
                (4, 1.0),
                (7, 2.0),
                (5, 1.0),
                (6, 1.0),
                (4, 1.0),
                (8, 1.0),
                (7, 2.0),
                (REST, 1.0),
            ],
            bars: 16,
            voice: Voice {
                harmonics: [1.0, 0.15, 0.25, 0.05],
                decay_secs: 0.5,
                sustain: 0.25,
            },
            pan: 0.25,
        },
    },
    Track {
        number: 3,
        slug: "fjarilsdans",
        format: Format::Ogg,
        title: "Fjärilsdans",
        artist: "Åsa & the Squares",
        tune: Tune {
            bpm: 120.0,
            beats_per_bar: 4,
            tonic: 62, // D dorian: Dm G Dm C
            scale: &DORIAN,
            chords: &[0, 3, 0, 6],
            melody: &[
                (0, 0.5),
                (2, 0.5),
                (4, 0.5),
                (5, 0.5),
                (4, 1.0),
                (2, 1.0),
                (3, 0.5),
                (5, 0.5),
                (7, 1.0),
                (5, 0.5),
                (4, 0.5),
                (3, 1.0),
                (4, 0.5),
                (2, 0.5),
                (0, 1.0),
                (2, 0.5),
                (4, 0.5),
                (7, 1.0),
                (6, 1.5),
                (8, 0.5),
                (6, 1.0),
                (REST, 1.0),
            ],
            bars: 12,
            voice: Voice {
                harmonics: [1.0, 0.5, 0.2, 0.1],
                decay_secs: 0.35,
                sustain: 0.3,
            },
            pan: -0.2,
        },
    },
    Track {
        number: 4,
        slug: "pinata-party",
        format: Format::Wav,
        title: "Piñata Party",
        artist: "Señor Sine",
        tune: Tune {
            bpm: 128.0,
            beats_per_bar: 4,
            tonic: 67, // G major: G D Em C
            scale: &MAJOR,
            chords: &[0, 4, 5, 3],
            melody: &[
                (4, 0.5),
                (4, 0.5),
                (2, 0.5),
                (4, 0.5),
                (7, 1.0),
                (4, 1.0),
                (8, 0.5),
                (8, 0.5),
                (6, 0.5),
                (8, 0.5),
                (4, 2.0),
                (9, 0.5),
                (7, 0.5),
                (5, 0.5),
                (7, 0.5),
                (9, 1.0),
                (7, 1.0),
                (5, 1.0),
                (3, 1.0),
                (2, 1.0),
                (REST, 1.0),
            ],
            bars: 12,
            voice: Voice {
                harmonics: [1.0, 0.4, 0.3, 0.15],
                decay_secs: 0.25,
                sustain: 0.2,
            },
            pan: 0.3,
        },
    },
    Track {
        number: 5,
        slug: "noel-at-the-jukebox",
        format: Format::Flac,
        title: "Noël at the Jukebox",
        artist: "Zoë Sawtooth",
        tune: Tune {
            bpm: 96.0,
            beats_per_bar: 4,
            tonic: 72, // C major: C Am F G
            scale: &MAJOR,
            chords: &[0, 5, 3, 4],
            melody: &[
                (4, 1.0),
                (4, 1.0),
                (4, 2.0),
                (5, 1.0),
                (7, 1.0),
                (9, 1.0),
                (7, 1.0),
                (3, 1.0),
                (5, 1.0),
                (7, 1.5),
                (5, 0.5),
                (6, 1.0),
                (8, 1.0),
                (4, 2.0),
            ],
            bars: 8,
            voice: Voice {
                // Music-box-like: bright and quickly decaying.
                harmonics: [1.0, 0.1, 0.3, 0.02],
                decay_secs: 0.3,
                sustain: 0.1,
            },
            pan: -0.25,
        },
    },
    Track {
        number: 6,
        slug: "sao-paulo-sunset",
        format: Format::Ogg,
        title: "São Paulo Sunset",
        artist: "Duo Déjà Vu",
        tune: Tune {
            bpm: 84.0,
            beats_per_bar: 4,
            tonic: 64, // E minor: Em Am C D
            scale: &MINOR,
            chords: &[0, 3, 5, 6],
            melody: &[
                (7, 1.5),
                (4, 0.5),
                (2, 1.0),
                (4, 1.0),
                (5, 1.5),
                (3, 0.5),
                (2, 1.0),
                (0, 1.0),
                (4, 1.0),
                (5, 1.0),
                (7, 1.0),
                (9, 1.0),
                (8, 2.0),
                (6, 1.5),
                (REST, 0.5),
            ],
            bars: 8,
            voice: Voice {
                harmonics: [1.0, 0.2, 0.05, 0.02],
                decay_secs: 1.2,
                sustain: 0.4,
            },
            pan: 0.2,
        },
    },
];

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
            Picture::unchecked(cover_png())
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

// ---------------------------------------------------------------------------
// Synthesis
// ---------------------------------------------------------------------------

/// Frequency in Hz of a MIDI note number.
fn midi_hz(note: i32) -> f64 {
    440.0 * 2f64.powf(f64::from(note - 69) / 12.0)
}

impl Tune {
    fn frames_per_beat(&self) -> f64 {
        f64::from(SAMPLE_RATE) * 60.0 / self.bpm
    }

    /// Total length in frames: the bars, the final tonic bar and the tail.
    fn total_frames(&self) -> usize {
        let beats = f64::from((self.bars + 1) * self.beats_per_bar);
        (beats * self.frames_per_beat() + TAIL_SECS * f64::from(SAMPLE_RATE)).round() as usize
    }

    fn duration_secs(&self) -> f64 {
        self.total_frames() as f64 / f64::from(SAMPLE_RATE)
    }

    /// MIDI note of a scale degree (degree 0 = `tonic`, 7 = an octave up).
    fn note(&self, degree: i32) -> i32 {
        let octave = degree.div_euclid(7);
        let step = self.scale[degree.rem_euclid(7) as usize];
        self.tonic + 12 * octave + step
    }

    fn beat_frame(&self, beat: f64) -> usize {
        (beat * self.frames_per_beat()).round() as usize
    }

    /// Renders the tune as left/right channels, normalized to [`PEAK`].
    fn render(&self) -> [Vec<f32>; 2] {
        let total = self.total_frames();
        let mut melody = vec![0.0f64; total];
        let mut backing = vec![0.0f64; total];
        let bar_beats = f64::from(self.beats_per_bar);
        let body_beats = f64::from(self.bars) * bar_beats;

        // Melody, looping until the final bar.
        let mut beat = 0.0;
        'outer: loop {
            for &(degree, len) in self.melody {
                if beat >= body_beats {
                    break 'outer;
                }
                let len = len.min(body_beats - beat);
                if degree != REST {
                    // Slightly detached notes breathe better.
                    let start = self.beat_frame(beat);
                    let end = self.beat_frame(beat + len * 0.92);
                    add_note(
                        &mut melody,
                        start,
                        end,
                        midi_hz(self.note(degree)),
                        0.5,
                        &self.voice,
                    );
                }
                beat += len;
            }
        }
        // Final tonic note, held through the tail.
        let final_start = self.beat_frame(body_beats);
        let long = Voice {
            harmonics: self.voice.harmonics,
            decay_secs: 1.5,
            sustain: 0.3,
        };
        add_note(
            &mut melody,
            final_start,
            total,
            midi_hz(self.note(7)),
            0.5,
            &long,
        );

        // Bass and pad, one chord per bar, the last bar on the tonic.
        let pad_voice = Voice {
            harmonics: [1.0, 0.0, 0.0, 0.0],
            decay_secs: 4.0,
            sustain: 0.7,
        };
        let bass_voice = Voice {
            harmonics: [1.0, 0.25, 0.0, 0.0],
            decay_secs: 0.6,
            sustain: 0.5,
        };
        for bar in 0..=self.bars {
            let last = bar == self.bars;
            let root = if last {
                0
            } else {
                self.chords[bar as usize % self.chords.len()]
            };
            let bar_start = f64::from(bar) * bar_beats;
            let start = self.beat_frame(bar_start);
            let end = if last {
                total
            } else {
                self.beat_frame(bar_start + bar_beats)
            };
            // Triad on the chord root (root, third, fifth), an octave down.
            for step in [0, 2, 4] {
                let note = self.note(root + step) - 12;
                add_note(&mut backing, start, end, midi_hz(note), 0.06, &pad_voice);
            }
            // Bass: the root on the first beat, and again half-way for 4/4.
            let bass = midi_hz(self.note(root) - 24);
            if last || self.beats_per_bar % 2 == 1 {
                add_note(&mut backing, start, end, bass, 0.3, &bass_voice);
            } else {
                let mid = self.beat_frame(bar_start + bar_beats / 2.0);
                add_note(&mut backing, start, mid, bass, 0.3, &bass_voice);
                add_note(&mut backing, mid, end, bass, 0.25, &bass_voice);
            }
        }

        // Mix: melody panned, with a dotted-eighth echo on the other side.
        let delay = self.beat_frame(0.75);
        let left_gain = (1.0 - self.pan) / 2.0;
        let right_gain = (1.0 + self.pan) / 2.0;
        let mut left = Vec::with_capacity(total);
        let mut right = Vec::with_capacity(total);
        for i in 0..total {
            let dry = melody[i];
            let echo = if i >= delay {
                melody[i - delay] * 0.3
            } else {
                0.0
            };
            let (echo_l, echo_r) = if self.pan < 0.0 {
                (0.0, echo)
            } else {
                (echo, 0.0)
            };
            left.push(backing[i] + dry * left_gain + echo_l);
            right.push(backing[i] + dry * right_gain + echo_r);
        }

        // Fade out over the tail so the file ends in silence, then normalize.
        let tail = (TAIL_SECS * f64::from(SAMPLE_RATE)) as usize;
        for k in 0..tail.min(total) {
            let i = total - 1 - k;
            let g = 0.5 - 0.5 * (std::f64::consts::PI * k as f64 / tail as f64).cos();
            left[i] *= g;
            right[i] *= g;
        }
        let peak = left
            .iter()
            .chain(&right)
            .fold(0.0f64, |m, s| m.max(s.abs()));
        let gain = if peak > 0.0 {
            f64::from(PEAK) / peak
        } else {
            1.0
        };
        [left, right].map(|ch| ch.into_iter().map(|s| (s * gain) as f32).collect())
    }
}

/// Adds one note spanning frames `start..end` to `buf`, with a short attack,
/// a decay towards the voice's sustain level and a cosine release at the end,
/// so it starts and stops at zero amplitude (no clicks).
fn add_note(buf: &mut [f64], start: usize, end: usize, hz: f64, amp: f64, voice: &Voice) {
    let end = end.min(buf.len());
    if end <= start {
        return;
    }
    let rate = f64::from(SAMPLE_RATE);
    let len = end - start;
    let attack = ((0.012 * rate) as usize).min(len / 2).max(1);
    let release = ((0.08 * rate) as usize).min(len / 2).max(1);
    let norm: f64 = voice.harmonics.iter().sum();
    // One oscillator per audible harmonic, each a unit phasor (sin, cos)
    // rotated by a fixed step per sample: the same as `sin(2π·f·t)`, but much
    // cheaper than calling `sin` for every sample (this matters in debug builds).
    let mut oscillators: Vec<[f64; 5]> = voice
        .harmonics
        .iter()
        .enumerate()
        .map(|(h, &weight)| (weight, hz * (h + 1) as f64))
        .filter(|&(weight, f)| weight != 0.0 && f < rate / 2.0)
        .map(|(weight, f)| {
            let step = TAU * f / rate;
            [weight / norm, 0.0, 1.0, step.sin(), step.cos()]
        })
        .collect();
    let decay_step = (-1.0 / (voice.decay_secs * rate)).exp();
    let mut decay = 1.0;
    for (i, out) in buf[start..end].iter_mut().enumerate() {
        let mut env = voice.sustain + (1.0 - voice.sustain) * decay;
        decay *= decay_step;
        if i < attack {
            env *= 0.5 - 0.5 * (std::f64::consts::PI * i as f64 / attack as f64).cos();
        }
        let left_to_go = len - 1 - i;
        if left_to_go < release {
            env *= 0.5 - 0.5 * (std::f64::consts::PI * left_to_go as f64 / release as f64).cos();
        }
        let mut s = 0.0;
        for [weight, sin, cos, step_sin, step_cos] in &mut oscillators {
            s += *weight * *sin;
            (*sin, *cos) = (
                *sin * *step_cos + *cos * *step_sin,
                *cos * *step_cos - *sin * *step_sin,
            );
        }
        *out += amp * env * s;
    }
}

/// Converts a float sample to 16-bit PCM.
fn to_i16(s: f32) -> i16 {
    (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

// ---------------------------------------------------------------------------
// Encoders
// ---------------------------------------------------------------------------

fn encode_wav(left: &[f32], right: &[f32]) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: CHANNELS,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Vec::new();
    let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec)?;
    for (&l, &r) in left.iter().zip(right) {
        writer.write_sample(to_i16(l))?;
        writer.write_sample(to_i16(r))?;
    }
    writer.finalize()?;
    Ok(bytes)
}

fn encode_flac(
    left: &[f32],
    right: &[f32],
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;

    let interleaved: Vec<i32> = left
        .iter()
        .zip(right)
        .flat_map(|(&l, &r)| [i32::from(to_i16(l)), i32::from(to_i16(r))])
        .collect();
    // Fixed predictors only, on the calling thread: the default LPC search is
    // several times slower and saves little on these simple tones, and the
    // multithreaded mode logs statistics at INFO level.
    let mut config = flacenc::config::Encoder::default();
    config.multithread = false;
    config.subframe_coding.use_lpc = false;
    let config = config.into_verified().map_err(|(_, e)| e)?;
    let source = flacenc::source::MemSource::from_samples(
        &interleaved,
        usize::from(CHANNELS),
        16,
        SAMPLE_RATE as usize,
    );
    // flacenc's EncodeError holds an `Rc`, so it cannot cross threads: keep its message.
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| e.to_string())?;
    // flacenc records the short last block as the minimum block size, but the
    // FLAC spec excludes the last block from that field, and symphonia (used by
    // rodio) refuses such a stream. Every block but the last is `block_size`.
    stream
        .stream_info_mut()
        .set_block_sizes(config.block_size, config.block_size)?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| format!("cannot serialize FLAC stream: {e}"))?;
    Ok(sink.into_inner())
}

fn encode_vorbis(
    left: &[f32],
    right: &[f32],
    serial: u32,
) -> Result<Vec<u8>, vorbis_rs::VorbisError> {
    const BLOCK: usize = 4096;
    let mut bytes = Vec::new();
    {
        // A fixed stream serial keeps the output deterministic.
        let mut encoder = vorbis_rs::VorbisEncoderBuilder::new_with_serial(
            NonZeroU32::new(SAMPLE_RATE).expect("sample rate is non-zero"),
            NonZeroU8::new(CHANNELS as u8).expect("channel count is non-zero"),
            &mut bytes,
            0x4A75_6B00 + serial as i32,
        )
        .build()?;
        for (l, r) in left.chunks(BLOCK).zip(right.chunks(BLOCK)) {
            encoder.encode_audio_block([l, r])?;
        }
        encoder.finish()?;
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Cover art: a 32x32 PNG of a vinyl record, written by hand
// ---------------------------------------------------------------------------

/// Side length of the generated cover, in pixels.
const COVER_SIZE: u32 = 32;

/// Returns the bytes of a small, valid PNG (RGB, 8 bits, stored deflate).
fn cover_png() -> Vec<u8> {
    let size = COVER_SIZE as usize;
    let mut raw = Vec::with_capacity(size * (1 + 3 * size));
    let c = (size as f64 - 1.0) / 2.0;
    for y in 0..size {
        raw.push(0); // filter type: none
        for x in 0..size {
            let (dx, dy) = (x as f64 - c, y as f64 - c);
            let r = (dx * dx + dy * dy).sqrt();
            let rgb: [u8; 3] = if r < 1.2 {
                [20, 20, 20] // spindle hole
            } else if r < 5.0 {
                [240, 120, 90] // label
            } else if r < 14.5 {
                // Grooves: alternate two dark greys.
                if (r as u32) % 2 == 1 {
                    [48, 48, 58]
                } else {
                    [30, 30, 36]
                }
            } else {
                // Background: diagonal teal-to-purple gradient.
                let t = (x + y) as f64 / (2.0 * size as f64);
                [
                    (40.0 + 120.0 * t) as u8,
                    (170.0 - 110.0 * t) as u8,
                    (170.0 + 40.0 * t) as u8,
                ]
            };
            raw.extend_from_slice(&rgb);
        }
    }

    // zlib stream with a single stored (uncompressed) deflate block.
    let len = u16::try_from(raw.len()).expect("cover fits in one stored block");
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend_from_slice(&len.to_le_bytes());
    zlib.extend_from_slice(&(!len).to_le_bytes());
    zlib.extend_from_slice(&raw);
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&COVER_SIZE.to_be_bytes());
    ihdr.extend_from_slice(&COVER_SIZE.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace

    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &zlib);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn png_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("PNG chunk too large");
    png.extend_from_slice(&len.to_be_bytes());
    let crc_start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[crc_start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO-HDLC, as used by PNG), bitwise.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Adler-32 checksum, as used by zlib.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
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
    fn crc32_and_adler32_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn cover_is_a_png_lofty_understands() {
        let png = cover_png();
        let picture = Picture::from_reader(&mut png.as_slice()).expect("valid picture");
        assert_eq!(picture.mime_type(), Some(&MimeType::Png));
        let info = lofty::picture::PictureInformation::from_png(&png).expect("valid PNG header");
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
            assert_eq!(picture.data(), cover_png().as_slice());
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
