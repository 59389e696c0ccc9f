//! Loudness from a file's tags: ReplayGain 2 (ID3 `TXXX`, APE, MP4 freeform atoms, Vorbis
//! comments) and R128 (Vorbis comments, which is where Opus keeps them), read by the scan and
//! used until the pass has measured the track.

use lofty::prelude::*;

/// The loudness ReplayGain 2 gains are relative to: a gain of `g` dB means the track
/// measures `REPLAYGAIN_LUFS - g`.
pub const REPLAYGAIN_LUFS: f32 = -18.0;
/// The loudness R128 gains are relative to (RFC 7845 §5.2.1; EBU R128).
pub const R128_LUFS: f32 = -23.0;
/// Tags claiming more than this gain either way are taken for garbage, not loudness.
const MAX_TAG_GAIN_DB: f32 = 64.0;

/// A track's and its album's loudness according to its tags, in LUFS.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TagLevels {
    pub track_lufs: Option<f32>,
    pub album_lufs: Option<f32>,
}

/// The raw tag texts, as found in the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct GainTags<'a> {
    /// `REPLAYGAIN_TRACK_GAIN`, e.g. `"-7.03 dB"`.
    pub rg_track: Option<&'a str>,
    pub rg_album: Option<&'a str>,
    /// `R128_TRACK_GAIN`: a Q7.8 integer (dB × 256), e.g. `"-1792"` for −7 dB.
    pub r128_track: Option<&'a str>,
    pub r128_album: Option<&'a str>,
}

/// What the tags say. R128 comes first where both exist: it is the Opus standard and is
/// defined against the decoded output (header gain applied), which is what we play; a
/// ReplayGain value in the same file was written by a tool that guessed. A value that does
/// not parse is ignored (the other kind, or nothing, is used instead).
pub fn levels_from_tags(tags: &GainTags<'_>) -> TagLevels {
    let track = tags
        .r128_track
        .and_then(parse_r128)
        .map(|g| R128_LUFS - g)
        .or_else(|| {
            tags.rg_track
                .and_then(parse_replaygain)
                .map(|g| REPLAYGAIN_LUFS - g)
        });
    let album = tags
        .r128_album
        .and_then(parse_r128)
        .map(|g| R128_LUFS - g)
        .or_else(|| {
            tags.rg_album
                .and_then(parse_replaygain)
                .map(|g| REPLAYGAIN_LUFS - g)
        });
    TagLevels {
        track_lufs: track,
        album_lufs: album,
    }
}

/// Reads the gain tags of a file lofty has parsed, from whichever of its tags has them (an
/// MP3 may carry both ID3v2 and APE).
pub fn read(tagged: &lofty::file::TaggedFile) -> TagLevels {
    let first = |key: ItemKey| tagged.tags().iter().find_map(|t| t.get_string(key));
    levels_from_tags(&GainTags {
        rg_track: first(ItemKey::ReplayGainTrackGain),
        rg_album: first(ItemKey::ReplayGainAlbumGain),
        r128_track: first(ItemKey::R128TrackGain),
        r128_album: first(ItemKey::R128AlbumGain),
    })
}

/// `"-7.03 dB"`, `"+2.1dB"`, `"−3.5 DB"` (a typographic minus), `" -4 "`: the gain in dB.
fn parse_replaygain(text: &str) -> Option<f32> {
    let t = text.trim();
    let t = match t.len().checked_sub(2) {
        Some(cut) if t.is_char_boundary(cut) && t[cut..].eq_ignore_ascii_case("db") => &t[..cut],
        _ => t,
    };
    let t = t.trim();
    let (negative, digits) = if let Some(rest) = t.strip_prefix('\u{2212}') {
        (true, rest)
    } else if let Some(rest) = t.strip_prefix('-') {
        (true, rest)
    } else {
        (false, t.strip_prefix('+').unwrap_or(t))
    };
    // Only plain decimals: "inf", "nan", "1e3" and a second sign are not gains.
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || !digits.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    let v: f32 = digits.parse().ok()?;
    let v = if negative { -v } else { v };
    (v.abs() <= MAX_TAG_GAIN_DB).then_some(v)
}

/// `"-1792"`: a signed 16-bit Q7.8 value, in dB.
fn parse_r128(text: &str) -> Option<f32> {
    let t = text.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i16 = t.parse().ok()?;
    Some(f32::from(v) / 256.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f32>, b: Option<f32>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-4,
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn replaygain_texts() {
        let table: &[(&str, Option<f32>)] = &[
            ("-7.03 dB", Some(-7.03)),
            ("+2.10 dB", Some(2.1)),
            ("2.1dB", Some(2.1)),
            ("  -4  ", Some(-4.0)),
            ("-3.5 DB", Some(-3.5)),
            ("\u{2212}3.5 dB", Some(-3.5)),
            ("0.00 dB", Some(0.0)),
            (".5 dB", Some(0.5)),
            ("", None),
            ("dB", None),
            ("-", None),
            ("nan dB", None),
            ("inf", None),
            ("1e3 dB", None),
            ("--3 dB", None),
            ("-3,5 dB", None),
            ("99 dB", None),
            ("-7.03 dB extra", None),
            ("dé", None),
        ];
        for &(text, want) in table {
            assert!(
                close(parse_replaygain(text), want),
                "{text:?}: {:?}",
                parse_replaygain(text)
            );
        }
    }

    #[test]
    fn r128_texts() {
        let table: &[(&str, Option<f32>)] = &[
            ("-1792", Some(-7.0)),
            ("256", Some(1.0)),
            ("+128", Some(0.5)),
            (" 0 ", Some(0.0)),
            ("-32768", Some(-128.0)),
            ("32768", None),
            ("-7.0", None),
            ("", None),
            ("abc", None),
            ("--5", None),
        ];
        for &(text, want) in table {
            assert!(
                close(parse_r128(text), want),
                "{text:?}: {:?}",
                parse_r128(text)
            );
        }
    }

    #[test]
    fn tags_to_levels() {
        let none = GainTags::default();
        let rg = GainTags {
            rg_track: Some("-7.03 dB"),
            rg_album: Some("-6.00 dB"),
            ..none
        };
        let r128 = GainTags {
            r128_track: Some("-1792"),
            r128_album: Some("512"),
            ..none
        };
        let both = GainTags {
            rg_track: Some("-1.00 dB"),
            rg_album: Some("-1.00 dB"),
            ..r128
        };
        let track_only = GainTags {
            rg_track: Some("3 dB"),
            ..none
        };
        let bad_r128_good_rg = GainTags {
            r128_track: Some("loud"),
            rg_track: Some("-2 dB"),
            ..none
        };
        let table: &[(&str, GainTags<'_>, Option<f32>, Option<f32>)] = &[
            ("no tags", none, None, None),
            // ReplayGain 2: LUFS = -18 - gain.
            ("replaygain", rg, Some(-10.97), Some(-12.0)),
            // R128: LUFS = -23 - gain/256.
            ("r128", r128, Some(-16.0), Some(-25.0)),
            ("r128 first", both, Some(-16.0), Some(-25.0)),
            ("track only", track_only, Some(-21.0), None),
            (
                "a bad value falls back",
                bad_r128_good_rg,
                Some(-16.0),
                None,
            ),
        ];
        for (what, tags, track, album) in table {
            let got = levels_from_tags(tags);
            assert!(close(got.track_lufs, *track), "{what}: track {got:?}");
            assert!(close(got.album_lufs, *album), "{what}: album {got:?}");
        }
    }
}
