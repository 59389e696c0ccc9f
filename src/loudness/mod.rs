//! Loudness levelling: what is known of a track's loudness (measured by the background pass,
//! or read from its ReplayGain / R128 tags), and the gain that brings it to the party's
//! target. Pure data and rules here; the measuring lives beside them.
//!
//! - [`tags`]: loudness from ReplayGain / R128 tags, read by the scan;
//! - [`measure`]: one track's EBU R128 loudness and peak, decoded as the player decodes it;
//! - [`album`]: which tracks form an album, and its loudness;
//! - [`pass`]: the background pass that measures the library.

pub mod album;
pub mod measure;
pub mod pass;
pub mod tags;

pub use album::{album_lufs, AlbumKey};
pub use measure::{measure, MeasureError, Measured};
pub use pass::{Pass, Progress, ScanHold};
pub use tags::TagLevels;

/// What is known of one track's loudness, in LUFS as the decoder produces the audio (for Opus,
/// with the header's output gain applied).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    /// Integrated loudness (EBU R128) measured by the jukebox.
    pub track_lufs: Option<f32>,
    /// Largest sample magnitude measured (1.0 = full scale).
    pub track_peak: Option<f32>,
    /// The album's loudness, once every track of it is measured.
    pub album_lufs: Option<f32>,
    /// The track's loudness as its tags state it (ReplayGain 2 or R128, converted to LUFS).
    pub tag_track_lufs: Option<f32>,
    /// The album's loudness as the tags state it.
    pub tag_album_lufs: Option<f32>,
}

/// Where a gain came from (shown on the host page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GainSource {
    Measured,
    Tags,
    Fallback,
    /// Levelling is off.
    Off,
}

/// The levelling gain of one play.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gain {
    pub db: f32,
    pub source: GainSource,
}

/// The gain is never outside this range, however quiet or loud the track.
pub const MIN_GAIN_DB: f32 = -20.0;
pub const MAX_GAIN_DB: f32 = 12.0;

/// What an unmeasured, untagged track is taken to measure: a loud modern master, so that a
/// track the pass has not reached is never much louder than its measured neighbours.
pub const FALLBACK_LUFS: f32 = -11.0;

/// The gain that brings a track to `target_lufs`: album loudness when `album` (and known),
/// else the track's; a measurement before tags, tags before the fallback; clamped.
pub fn gain(levels: &Levels, target_lufs: f32, album: bool) -> Gain {
    let measured = if album {
        levels.album_lufs.or(levels.track_lufs)
    } else {
        levels.track_lufs
    };
    let tagged = if album {
        levels.tag_album_lufs.or(levels.tag_track_lufs)
    } else {
        levels.tag_track_lufs
    };
    let (lufs, source) = match (measured, tagged) {
        (Some(l), _) => (l, GainSource::Measured),
        (None, Some(l)) => (l, GainSource::Tags),
        (None, None) => (FALLBACK_LUFS, GainSource::Fallback),
    };
    Gain {
        db: (target_lufs - lufs).clamp(MIN_GAIN_DB, MAX_GAIN_DB),
        source,
    }
}
