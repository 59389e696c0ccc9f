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

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(
        track: Option<f32>,
        album: Option<f32>,
        tag: Option<f32>,
        tag_album: Option<f32>,
    ) -> Levels {
        Levels {
            track_lufs: track,
            track_peak: None,
            album_lufs: album,
            tag_track_lufs: tag,
            tag_album_lufs: tag_album,
        }
    }

    #[test]
    fn a_measurement_comes_before_tags_and_tags_before_the_fallback() {
        // Tags that disagree with the measurement lose to it.
        let l = levels(Some(-20.0), None, Some(-8.0), None);
        assert_eq!(
            gain(&l, -14.0, false),
            Gain {
                db: 6.0,
                source: GainSource::Measured
            }
        );
        let l = levels(None, None, Some(-8.0), None);
        assert_eq!(
            gain(&l, -14.0, false),
            Gain {
                db: -6.0,
                source: GainSource::Tags
            }
        );
        let l = Levels::default();
        assert_eq!(
            gain(&l, -14.0, false),
            Gain {
                db: -14.0 - FALLBACK_LUFS,
                source: GainSource::Fallback
            }
        );
    }

    #[test]
    fn album_gain_uses_the_album_then_the_track() {
        let l = levels(Some(-20.0), Some(-16.0), Some(-9.0), Some(-10.0));
        assert_eq!(gain(&l, -14.0, true).db, 2.0, "the album's measurement");
        assert_eq!(gain(&l, -14.0, false).db, 6.0, "the track's own");
        // The album not complete yet: the track's measurement, not the album's tags.
        let l = levels(Some(-20.0), None, None, Some(-10.0));
        assert_eq!(
            gain(&l, -14.0, true),
            Gain {
                db: 6.0,
                source: GainSource::Measured
            }
        );
        // Nothing measured: the album's tags, then the track's.
        let l = levels(None, None, Some(-9.0), Some(-10.0));
        assert_eq!(
            gain(&l, -14.0, true),
            Gain {
                db: -4.0,
                source: GainSource::Tags
            }
        );
        let l = levels(None, None, Some(-9.0), None);
        assert_eq!(gain(&l, -14.0, true).db, -5.0);
    }

    #[test]
    fn the_gain_is_clamped() {
        // A near-silent track is not raised by 40 dB, a brickwalled one not cut by 30.
        let quiet = levels(Some(-60.0), None, None, None);
        assert_eq!(gain(&quiet, -14.0, false).db, MAX_GAIN_DB);
        let loud = levels(Some(0.0), None, None, None);
        assert_eq!(gain(&loud, -30.0, false).db, MIN_GAIN_DB);
        let tagged = levels(None, None, Some(-50.0), None);
        assert_eq!(
            gain(&tagged, -5.0, false),
            Gain {
                db: MAX_GAIN_DB,
                source: GainSource::Tags
            }
        );
    }
}
