//! A song record as MPD prints it (`file:` first, as libmpdclient starts a song there), with
//! the tags the client asked for (`tagtypes`).

use std::borrow::Cow;
use std::fmt::Write;

use super::mirror::Song;

/// The tags the jukebox has, as MPD names them (`tagtypes` lists these).
/// In MPD's own order of tags (src/tag/Type.h), which is how they print.
pub const TAGS: [&str; 8] = [
    "Artist",
    "Album",
    "AlbumArtist",
    "Title",
    "Track",
    "Genre",
    "Date",
    "Disc",
];

/// The tags one client wants printed (`tagtypes clear|all|enable|disable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagMask(u16);

impl Default for TagMask {
    fn default() -> Self {
        TagMask::ALL
    }
}

impl TagMask {
    pub const ALL: TagMask = TagMask((1 << TAGS.len()) - 1);
    pub const NONE: TagMask = TagMask(0);

    /// The tag named `name` (any case); `None` for a tag MPD does not know. Tags MPD knows but
    /// the jukebox does not have (Genre, Date…) are accepted and print nothing.
    pub fn bit(name: &str) -> Option<Option<usize>> {
        if let Some(i) = TAGS.iter().position(|t| t.eq_ignore_ascii_case(name)) {
            return Some(Some(i));
        }
        MPD_TAGS
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
            .then_some(None)
    }
    pub fn set(&mut self, i: usize, on: bool) {
        if on {
            self.0 |= 1 << i;
        } else {
            self.0 &= !(1 << i);
        }
    }
    pub fn has(self, tag: &str) -> bool {
        TAGS.iter()
            .position(|t| *t == tag)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        TAGS.iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, t)| *t)
    }
}

/// Every tag name MPD 0.23 knows (src/tag/Names.c), for `tagtypes enable` of one the jukebox
/// does not have.
const MPD_TAGS: [&str; 33] = [
    "Artist",
    "ArtistSort",
    "Album",
    "AlbumSort",
    "AlbumArtist",
    "AlbumArtistSort",
    "Title",
    "Track",
    "Name",
    "Genre",
    "Date",
    "OriginalDate",
    "Composer",
    "Performer",
    "Conductor",
    "Work",
    "Grouping",
    "Comment",
    "Disc",
    "Label",
    "MUSICBRAINZ_ARTISTID",
    "MUSICBRAINZ_ALBUMID",
    "MUSICBRAINZ_ALBUMARTISTID",
    "MUSICBRAINZ_TRACKID",
    "MUSICBRAINZ_RELEASETRACKID",
    "MUSICBRAINZ_WORKID",
    "ComposerSort",
    "Ensemble",
    "Movement",
    "MovementNumber",
    "Location",
    "Mood",
    "Section",
];

/// A song's value of `tag` as searches and `list` see it (AlbumArtist falls back to Artist, as
/// MPD's does); `None` when it has none.
pub fn tag<'a>(s: &'a Song, tag: &str) -> Option<Cow<'a, str>> {
    match tag {
        "AlbumArtist" => tagged(s, tag).or_else(|| tagged(s, "Artist")),
        _ => tagged(s, tag),
    }
}

/// A song's value of `tag` as the file has it (what a song record prints).
fn tagged<'a>(s: &'a Song, tag: &str) -> Option<Cow<'a, str>> {
    let d = &s.details;
    let v: Cow<str> = match tag {
        "Artist" => s.artist.as_str().into(),
        "AlbumArtist" => d.album_artist.as_deref()?.into(),
        "Album" => s.album.as_str().into(),
        "Title" => s.title.as_str().into(),
        "Track" => s.track_no?.to_string().into(),
        "Genre" => d.genre.as_deref()?.into(),
        "Date" => d.date.as_deref()?.into(),
        "Disc" => d.disc?.to_string().into(),
        "file" => s.file.as_str().into(),
        _ => return None,
    };
    (!v.is_empty()).then_some(v)
}

/// Seconds with three decimals, as MPD prints `duration` and `elapsed`.
pub fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The song's lines: `file`, its tags, `Time` and `duration`.
pub fn write(out: &mut String, s: &Song, tags: TagMask) {
    let _ = writeln!(out, "file: {}", s.file);
    if let Some(t) = s.last_modified {
        let _ = writeln!(out, "Last-Modified: {}", crate::export::rfc3339(t * 1000));
    }
    if let Some(f) = s.details.format {
        let _ = writeln!(out, "Format: {f}");
    }
    for t in TAGS {
        if tags.has(t) {
            if let Some(v) = tagged(s, t) {
                let _ = writeln!(out, "{t}: {v}");
            }
        }
    }
    let _ = writeln!(out, "Time: {}", (s.duration_ms + 500) / 1000);
    let _ = writeln!(out, "duration: {}", secs(s.duration_ms));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::TrackId;

    #[test]
    fn a_song_prints_as_mpd_prints_it() {
        let s = Song {
            track: TrackId::new(1),
            file: "ArtistA/AlbumOne/01 First Song.flac".into(),
            title: "First Song".into(),
            artist: "Artist A".into(),
            album: "Album One".into(),
            track_no: Some(1),
            duration_ms: 30_000,
            last_modified: Some(1_796_149_869),
            details: crate::store::Details {
                genre: Some("Party".into()),
                date: Some("2024".into()),
                format: Some(crate::store::AudioFormat {
                    sample_rate: 44_100,
                    bits: Some(16),
                    channels: 2,
                }),
                ..Default::default()
            },
        };
        let mut out = String::new();
        write(&mut out, &s, TagMask::ALL);
        assert_eq!(
            out,
            "file: ArtistA/AlbumOne/01 First Song.flac\nLast-Modified: 2026-12-01T18:31:09Z\n\
             Format: 44100:16:2\nArtist: Artist A\nAlbum: Album One\nTitle: First Song\n\
             Track: 1\nGenre: Party\nDate: 2024\nTime: 30\nduration: 30.000\n"
        );
        assert_eq!(
            tag(&s, "AlbumArtist").as_deref(),
            Some("Artist A"),
            "searches fall back"
        );
        let mut mask = TagMask::NONE;
        mask.set(TagMask::bit("title").unwrap().unwrap(), true);
        let mut out = String::new();
        write(&mut out, &s, mask);
        assert!(
            !out.contains("\nArtist:") && out.contains("Title: First Song"),
            "{out}"
        );
        assert_eq!(
            TagMask::bit("Composer"),
            Some(None),
            "known to MPD, not here"
        );
        assert_eq!(TagMask::bit("Bogus"), None);
    }
}
