//! How one play sounds next to its neighbours: its levelling gain and how it joins the play
//! before it. Pure rules over tracks; the [`Deck`](super::deck::Deck) applies them to what
//! it hands the player.
//!
//! - The gain comes from [`loudness::gain`] with the party's target: `off` is 0 dB, `track`
//!   the track's loudness, `album` the album's, and `auto` the album's while consecutive
//!   plays come from one album (the play before it, or the one planned after it when it
//!   starts), so a run of one album keeps its own dynamics; the track's otherwise.
//! - A play that is the next track of the same album as the play before it joins gaplessly
//!   (`Join::Gapless`: sample-exact, never faded); anything else is a `Join::Mix`.
//!
//! What "one album" and "the next track of it" mean is the loudness part's rule
//! ([`Track::same_album`], [`Track::precedes_on_album`]), so the album whose loudness is
//! measured is the album that is levelled and joined as one.

use crate::loudness::{self, Gain, GainSource};
use crate::party::{Normalize, Settings};
use crate::player::Join;
use crate::store::Track;

/// The party's levelling settings, as the deck needs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Levelling {
    pub mode: Normalize,
    pub target_lufs: f32,
}

impl Levelling {
    pub(crate) fn of(s: &Settings) -> Levelling {
        Levelling {
            mode: s.normalize,
            target_lufs: s.loudness_lufs as f32,
        }
    }
}

impl Default for Levelling {
    fn default() -> Self {
        Levelling::of(&Settings::default())
    }
}

/// The gain one play gets, and whether it is its album's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlayGain {
    pub gain: Gain,
    /// Computed from the album's loudness (when known) rather than the track's.
    pub album: bool,
}

impl PlayGain {
    pub(crate) const OFF: PlayGain = PlayGain {
        gain: Gain {
            db: 0.0,
            source: GainSource::Off,
        },
        album: false,
    };
}

/// How `track` joins `before` when it follows it without a `Load`.
pub(crate) fn join(before: Option<&Track>, track: &Track) -> Join {
    match before {
        Some(b) if b.precedes_on_album(track) => Join::Gapless,
        _ => Join::Mix,
    }
}

/// The gain of `track` between the play `before` it and the one planned `after` it.
pub(crate) fn gain(
    lv: Levelling,
    before: Option<&Track>,
    track: &Track,
    after: Option<&Track>,
) -> PlayGain {
    let album = match lv.mode {
        Normalize::Off => return PlayGain::OFF,
        Normalize::Track => false,
        Normalize::Album => true,
        Normalize::Auto => {
            before.is_some_and(|b| b.same_album(track))
                || after.is_some_and(|a| track.same_album(a))
        }
    };
    PlayGain {
        gain: loudness::gain(&track.levels, lv.target_lufs, album),
        album,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::loudness::Levels;
    use crate::party::TrackId;

    fn t(id: i64, dir: &str, album: &str, no: Option<u32>, lufs: Option<f32>) -> Track {
        Track {
            id: TrackId::new(id),
            path: PathBuf::from(format!("/music/{dir}/{id}.flac")),
            title: format!("Song {id}"),
            artist: "A".into(),
            album: album.into(),
            track_no: no,
            duration_ms: 180_000,
            has_art: false,
            present: true,
            likes: 0,
            levels: Levels {
                track_lufs: lufs,
                album_lufs: lufs.map(|_| -10.0),
                ..Levels::default()
            },
        }
    }

    #[test]
    fn the_next_track_of_an_album_joins_gaplessly() {
        let a1 = t(1, "x", "Arrival", Some(1), None);
        let a2 = t(2, "x", "Arrival", Some(2), None);
        let a3 = t(3, "x", "Arrival", Some(3), None);
        let other_folder = t(4, "y", "Arrival", Some(2), None);
        let loose1 = t(5, "x", "", Some(1), None);
        let loose2 = t(6, "x", "", Some(2), None);
        let no_number = t(7, "x", "Arrival", None, None);
        let table: &[(&Track, &Track, Join)] = &[
            (&a1, &a2, Join::Gapless),
            (&a2, &a3, Join::Gapless),
            (&a2, &a1, Join::Mix),
            (&a1, &a3, Join::Mix),
            (&a1, &other_folder, Join::Mix),
            (&loose1, &loose2, Join::Mix),
            (&a1, &no_number, Join::Mix),
            (&no_number, &a2, Join::Mix),
        ];
        for (a, b, want) in table {
            assert_eq!(join(Some(a), b), *want, "{} {}", a.id, b.id);
        }
        assert_eq!(join(None, &a2), Join::Mix);
    }

    #[test]
    fn the_mode_picks_track_or_album_loudness() {
        let lv = |mode| Levelling {
            mode,
            target_lufs: -14.0,
        };
        let a1 = t(1, "x", "Arrival", Some(1), Some(-8.0));
        let a2 = t(2, "x", "Arrival", Some(2), Some(-8.0));
        let b = t(3, "y", "Other", Some(1), Some(-8.0));
        // Track loudness -8 gives -6 dB; the album's -10 gives -4 dB.
        /// The mode, the plays before and after, the gain and whether it is the album's.
        type Case<'a> = (Normalize, Option<&'a Track>, Option<&'a Track>, f32, bool);
        let table: &[Case] = &[
            (Normalize::Track, Some(&a1), None, -6.0, false),
            (Normalize::Album, None, None, -4.0, true),
            (Normalize::Auto, None, None, -6.0, false),
            (Normalize::Auto, Some(&b), None, -6.0, false),
            (Normalize::Auto, Some(&a1), None, -4.0, true),
            (Normalize::Auto, Some(&b), Some(&a1), -4.0, true),
            (Normalize::Off, Some(&a1), None, 0.0, false),
        ];
        for (mode, before, after, db, album) in table {
            let g = gain(lv(*mode), *before, &a2, *after);
            assert!((g.gain.db - db).abs() < 1e-4, "{mode:?}: {g:?}");
            assert_eq!(g.album, *album, "{mode:?}");
        }
        assert_eq!(
            gain(lv(Normalize::Off), None, &a2, None).gain.source,
            GainSource::Off
        );
        assert_eq!(
            gain(lv(Normalize::Track), None, &a2, None).gain.source,
            GainSource::Measured
        );
        // Unmeasured and untagged: the fallback, clamped like any other.
        let quiet = t(9, "z", "", None, None);
        let g = gain(lv(Normalize::Track), None, &quiet, None);
        assert_eq!(g.gain.source, GainSource::Fallback);
    }
}
