//! Albums, as levelling sees them: which tracks form one (the key), which play follows which
//! on it, and the album's loudness from its tracks' measurements.

use std::path::{Path, PathBuf};

use crate::store::Track;

/// Which album a track belongs to: its folder and its album tag. Two copies of one album in
/// two folders are two albums (they may be different masters); loose tracks without an album
/// tag belong to none, so a folder of singles is never levelled as one record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlbumKey {
    folder: PathBuf,
    album: String,
}

impl AlbumKey {
    /// The album of the file at `path` tagged `album`; `None` without an album tag.
    pub fn of(path: &Path, album: &str) -> Option<AlbumKey> {
        if album.trim().is_empty() {
            return None;
        }
        Some(AlbumKey {
            folder: path.parent().unwrap_or(Path::new("")).to_path_buf(),
            album: album.to_owned(),
        })
    }

    /// The album tag (what the store looks its tracks up by).
    pub fn album(&self) -> &str {
        &self.album
    }
}

impl Track {
    /// The album this track belongs to, if any (see [`AlbumKey`]).
    pub fn album_key(&self) -> Option<AlbumKey> {
        AlbumKey::of(&self.path, &self.album)
    }

    /// Whether both tracks belong to one album. A track without an album tag shares none.
    pub fn same_album(&self, other: &Track) -> bool {
        matches!((self.album_key(), other.album_key()), (Some(a), Some(b)) if a == b)
    }

    /// Whether `next` is the track after this one on the same album (track number + 1): the
    /// join between them is part of the record (gapless, and levelled with one gain).
    pub fn precedes_on_album(&self, next: &Track) -> bool {
        self.same_album(next)
            && matches!((self.track_no, next.track_no), (Some(a), Some(b)) if a.checked_add(1) == Some(b))
    }
}

/// An album's loudness from its tracks' `(lufs, length_ms)`: the mean of their energies
/// weighted by length, which is what the album played through measures (up to the R128
/// gate, which works per block and so differs by a few tenths at most for real records).
/// `None` when there is nothing to weigh.
pub fn album_lufs(tracks: &[(f32, u64)]) -> Option<f32> {
    let usable: Vec<(f64, f64)> = tracks
        .iter()
        .filter(|(l, _)| l.is_finite())
        .map(|&(l, ms)| (f64::from(l), ms as f64))
        .collect();
    if usable.is_empty() {
        return None;
    }
    let total: f64 = usable.iter().map(|(_, w)| w).sum();
    // Zero lengths everywhere (never written by the pass, but cheap to survive): equal weights.
    let weight = |w: f64| if total > 0.0 { w } else { 1.0 };
    let sum_w: f64 = usable.iter().map(|&(_, w)| weight(w)).sum();
    let energy: f64 = usable
        .iter()
        .map(|&(l, w)| weight(w) * 10f64.powf(l / 10.0))
        .sum::<f64>()
        / sum_w;
    Some((10.0 * energy.log10()) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::TrackId;

    fn track(path: &str, album: &str, no: Option<u32>) -> Track {
        Track {
            id: TrackId::new(1),
            path: PathBuf::from(path),
            title: "t".into(),
            artist: "a".into(),
            album: album.into(),
            track_no: no,
            duration_ms: 1000,
            has_art: false,
            present: true,
            likes: 0,
            levels: Default::default(),
        }
    }

    #[test]
    fn an_album_is_a_folder_and_an_album_tag() {
        let a1 = track("/m/abba/gold/01.flac", "Gold", Some(1));
        let a2 = track("/m/abba/gold/02.flac", "Gold", Some(2));
        let a3 = track("/m/abba/gold/03.flac", "Gold", Some(3));
        let other_folder = track("/m/abba/gold-remaster/02.flac", "Gold", Some(2));
        let other_tag = track("/m/abba/gold/02b.flac", "Gold (Live)", Some(2));
        let untagged1 = track("/m/singles/x.mp3", "", Some(1));
        let untagged2 = track("/m/singles/y.mp3", "", Some(2));

        assert!(a1.same_album(&a2));
        assert!(a1.precedes_on_album(&a2));
        assert!(a2.precedes_on_album(&a3));
        assert!(
            !a2.precedes_on_album(&a1),
            "backwards is not the record's order"
        );
        assert!(
            !a1.precedes_on_album(&a3),
            "a track was left out between them"
        );
        assert!(!a1.same_album(&other_folder));
        assert!(!a1.precedes_on_album(&other_folder));
        assert!(!a1.same_album(&other_tag));
        assert!(!untagged1.same_album(&untagged2), "no album tag, no album");
        assert!(!untagged1.precedes_on_album(&untagged2));
        assert!(untagged1.album_key().is_none());
        let no_number = track("/m/abba/gold/xx.flac", "Gold", None);
        assert!(a1.same_album(&no_number));
        assert!(!a1.precedes_on_album(&no_number));
        let max = track("/m/abba/gold/zz.flac", "Gold", Some(u32::MAX));
        assert!(!max.precedes_on_album(&a1));
    }

    #[test]
    fn album_loudness_is_the_length_weighted_energy_mean() {
        assert_eq!(album_lufs(&[]), None);
        // One track: its own loudness.
        assert!((album_lufs(&[(-12.0, 1000)]).unwrap() + 12.0).abs() < 1e-4);
        // Two equal lengths 10 dB apart: 10·log10((1 + 0.1) / 2) above the louder.
        let two = album_lufs(&[(-10.0, 60_000), (-20.0, 60_000)]).unwrap();
        assert!(
            (two - (-10.0 + 10.0 * (1.1f32 / 2.0).log10())).abs() < 1e-3,
            "{two}"
        );
        // The longer track weighs more: three minutes at -10 and one at -20.
        let weighted = album_lufs(&[(-10.0, 180_000), (-20.0, 60_000)]).unwrap();
        assert!((weighted - (-10.0 + 10.0 * (3.1f32 / 4.0).log10())).abs() < 1e-3);
        assert!(weighted > two);
        // Zero lengths: equal weights rather than nothing.
        let zero = album_lufs(&[(-10.0, 0), (-20.0, 0)]).unwrap();
        assert!((zero - two).abs() < 1e-4);
        // A silent (-inf) entry is ignored, not a NaN.
        assert_eq!(album_lufs(&[(f32::NEG_INFINITY, 1000)]), None);
    }
}
