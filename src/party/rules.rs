//! The host's content rules: blocked artists, blocked words, a longest track and a pool (one
//! folder of the library). They refuse guests' requests and bound the auto-DJ; the host's own
//! requests pass (the host made the rules and may break them on purpose).
//!
//! Matching is the way a guest reads a name, not byte by byte: case, accents and compatibility
//! forms are folded ("BEYONCE" is "Beyoncé", "ﬁre" is "fire"), and words are whole words
//! ("ass" does not block "Bass" or "Classic"). A blocked word may be a phrase of several words,
//! matched as consecutive words.

use std::path::{Path, PathBuf};

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::Settings;

/// Most entries a rule list holds, and the longest entry: enough for any party, small enough
/// that every request checks them all at once without a thought.
pub const MAX_LIST_ITEMS: usize = 200;
pub const MAX_ITEM_CHARS: usize = 100;
/// The longest pool path.
pub const MAX_POOL_CHARS: usize = 255;

/// Which rule refused a track; the wire spells it as `error.data.rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    BlockedArtist,
    BlockedWord,
    TooLong,
    NotInPool,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::BlockedArtist => "blocked_artist",
            Rule::BlockedWord => "blocked_word",
            Rule::TooLong => "too_long",
            Rule::NotInPool => "not_in_pool",
        }
    }
}

/// What the rules look at in a track.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub artist: &'a str,
    pub title: &'a str,
    pub album: &'a str,
    /// 0 when not known: such a track is never "too long".
    pub duration_ms: u64,
    /// Its path as the library stores it (under the music folder).
    pub path: &'a Path,
}

/// The content rules of [`Settings`], folded once so that every check is cheap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    artists: Vec<String>,
    /// Each blocked word or phrase as its folded words.
    words: Vec<Vec<String>>,
    max_ms: Option<u64>,
    /// The pool as an absolute folder (the music folder joined with the setting).
    pool: Option<PathBuf>,
    max_minutes: u32,
}

impl Rules {
    /// The rules of `s` for a library under `music`.
    pub fn new(s: &Settings, music: &Path) -> Rules {
        Rules {
            artists: s
                .blocked_artists
                .iter()
                .map(|a| fold(a))
                .filter(|a| !a.is_empty())
                .collect(),
            words: s
                .blocked_words
                .iter()
                .map(|w| words(&fold(w)))
                .filter(|w| !w.is_empty())
                .collect(),
            max_ms: (s.max_track_minutes > 0).then(|| u64::from(s.max_track_minutes) * 60_000),
            pool: s.pool.as_deref().map(|p| music.join(p)),
            max_minutes: s.max_track_minutes,
        }
    }

    /// No rule is set: everything passes.
    pub fn is_open(&self) -> bool {
        self.artists.is_empty()
            && self.words.is_empty()
            && self.max_ms.is_none()
            && self.pool.is_none()
    }

    /// The longest track allowed, in minutes (0: no limit).
    pub fn max_minutes(&self) -> u32 {
        self.max_minutes
    }

    /// The pool as an absolute folder, for the store to select candidates from.
    pub fn pool(&self) -> Option<&Path> {
        self.pool.as_deref()
    }

    /// The longest track allowed, in ms, for the store to select candidates by.
    pub fn max_ms(&self) -> Option<u64> {
        self.max_ms
    }

    /// The first rule that refuses the track, if any (in the order the host page lists them).
    pub fn check(&self, t: &Facts<'_>) -> Option<Rule> {
        if !self.artists.is_empty() {
            let artist = fold(t.artist);
            if credited(&artist).any(|name| self.artists.contains(&name)) {
                return Some(Rule::BlockedArtist);
            }
        }
        if !self.words.is_empty() {
            let hit = [t.title, t.artist, t.album]
                .iter()
                .any(|field| contains_phrase(&words(&fold(field)), &self.words));
            if hit {
                return Some(Rule::BlockedWord);
            }
        }
        if self.max_ms.is_some_and(|max| t.duration_ms > max) {
            return Some(Rule::TooLong);
        }
        if let Some(pool) = &self.pool {
            if !t.path.starts_with(pool) {
                return Some(Rule::NotInPool);
            }
        }
        None
    }
}

/// A name as a reader compares it: compatibility forms decomposed, accents dropped, lower
/// case, runs of white space as one space.
pub fn fold(s: &str) -> String {
    let plain: String = s.nfkd().filter(|c| !is_combining_mark(*c)).collect();
    plain
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The words of folded text: runs of letters and digits (an apostrophe inside a word keeps
/// it whole: "don't" is one word).
fn words(folded: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = folded.chars().peekable();
    while let Some(c) = chars.next() {
        let inner_apostrophe = (c == '\'' || c == '\u{2019}')
            && !cur.is_empty()
            && chars.peek().is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || inner_apostrophe {
            cur.push(if inner_apostrophe { '\'' } else { c });
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn contains_phrase(text: &[String], phrases: &[Vec<String>]) -> bool {
    phrases
        .iter()
        .any(|p| !p.is_empty() && text.windows(p.len()).any(|w| w == p.as_slice()))
}

/// The names an artist tag credits: the whole tag, and each name of a multi-artist credit
/// ("A; B", "A / B", "A feat. B"). Names are not split at "&" or ",", which are part of
/// too many band names ("Earth, Wind & Fire").
fn credited(folded: &str) -> impl Iterator<Item = String> + '_ {
    let mut parts = vec![folded.to_string()];
    for sep in [";", " / ", " feat. ", " feat ", " ft. ", " featuring "] {
        parts = parts
            .iter()
            .flat_map(|p| {
                p.split(sep)
                    .map(str::trim)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    parts.push(folded.to_string());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// A rule list as given (a flag, the file or the host page): trimmed, empty entries and
/// repeats (as folded) dropped; refused when an entry is too long, has control characters or,
/// for words, has no letter or digit.
pub fn check_list(key: &str, items: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let t = item.trim();
        if t.is_empty() {
            continue;
        }
        if t.chars().count() > MAX_ITEM_CHARS {
            return Err(format!("{t:?} is longer than {MAX_ITEM_CHARS} characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(format!("{t:?} has control characters"));
        }
        if key == "blocked_words" && words(&fold(t)).is_empty() {
            return Err(format!("{t:?} has no word in it"));
        }
        if !out.iter().any(|o| fold(o) == fold(t)) {
            out.push(t.to_string());
        }
    }
    if out.len() > MAX_LIST_ITEMS {
        return Err(format!(
            "{} entries; allowed at most {MAX_LIST_ITEMS}",
            out.len()
        ));
    }
    Ok(out)
}

/// The pool as given: `None` (or "") for the whole library, else a folder relative to the
/// music folder, written with `/`, without `.`, `..`, a leading `/` or a trailing one.
pub fn check_pool(pool: Option<&str>) -> Result<Option<String>, String> {
    let Some(p) = pool.map(str::trim) else {
        return Ok(None);
    };
    let p = p.trim_matches('/');
    if p.is_empty() {
        return Ok(None);
    }
    if p.chars().count() > MAX_POOL_CHARS {
        return Err(format!("longer than {MAX_POOL_CHARS} characters"));
    }
    if p.chars().any(char::is_control) || p.contains('\\') {
        return Err(format!("{p:?} has control characters or backslashes"));
    }
    let mut parts = Vec::new();
    for part in p.split('/') {
        match part {
            "" => continue,
            "." | ".." => {
                return Err(format!(
                    "{p:?} is not a folder inside the music folder; allowed e.g. \"Wedding\" or \"Albums/Jazz\""
                ))
            }
            part => parts.push(part),
        }
    }
    Ok(Some(parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(f: impl FnOnce(&mut Settings)) -> Rules {
        let mut s = Settings::default();
        f(&mut s);
        Rules::new(&s, Path::new("/music"))
    }

    struct Track {
        artist: &'static str,
        title: &'static str,
        album: &'static str,
        minutes: u64,
        path: &'static str,
    }

    const T: Track = Track {
        artist: "Beyoncé",
        title: "Crazy in Love",
        album: "Dangerously in Love",
        minutes: 4,
        path: "/music/Pop/Beyonce/01.flac",
    };

    fn check(r: &Rules, t: &Track) -> Option<Rule> {
        r.check(&Facts {
            artist: t.artist,
            title: t.title,
            album: t.album,
            duration_ms: t.minutes * 60_000,
            path: Path::new(t.path),
        })
    }

    /// Each rule refuses exactly what it names, and nothing else.
    #[test]
    fn each_rule_refuses_what_it_names() {
        let artists = |a: &[&str]| -> Rules {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            rules(|s| s.blocked_artists = a)
        };
        let words = |w: &[&str]| -> Rules {
            let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            rules(|s| s.blocked_words = w)
        };
        let longest = |m: u32| rules(|s| s.max_track_minutes = m);
        let pool = |p: &str| {
            let p = p.to_string();
            rules(|s| s.pool = Some(p))
        };
        let with = |f: fn(&mut Track)| {
            let mut t = T;
            f(&mut t);
            t
        };
        let cases: Vec<(&str, Rules, Track, Option<Rule>)> = vec![
            ("no rules", Rules::default(), T, None),
            (
                "the artist",
                artists(&["Beyoncé"]),
                T,
                Some(Rule::BlockedArtist),
            ),
            (
                "without the accent",
                artists(&["beyonce"]),
                T,
                Some(Rule::BlockedArtist),
            ),
            (
                "in capitals",
                artists(&["BEYONCE"]),
                T,
                Some(Rule::BlockedArtist),
            ),
            (
                "spaces folded",
                artists(&["  Beyoncé "]),
                T,
                Some(Rule::BlockedArtist),
            ),
            ("another artist", artists(&["ABBA"]), T, None),
            (
                "a part of the name is not the name",
                artists(&["Bey"]),
                T,
                None,
            ),
            (
                "one of a multi-artist credit",
                artists(&["jay-z"]),
                with(|t| t.artist = "Beyoncé feat. Jay-Z"),
                Some(Rule::BlockedArtist),
            ),
            (
                "a band name with a comma is whole",
                artists(&["Earth"]),
                with(|t| t.artist = "Earth, Wind & Fire"),
                None,
            ),
            (
                "a word of the title",
                words(&["crazy"]),
                T,
                Some(Rule::BlockedWord),
            ),
            (
                "a word of the album",
                words(&["dangerously"]),
                T,
                Some(Rule::BlockedWord),
            ),
            (
                "a word of the artist",
                words(&["BEYONCE"]),
                T,
                Some(Rule::BlockedWord),
            ),
            ("a phrase", words(&["in love"]), T, Some(Rule::BlockedWord)),
            ("a phrase out of order", words(&["love in"]), T, None),
            ("part of a word is not a word", words(&["craz"]), T, None),
            (
                "ass is not in Bass",
                words(&["ass"]),
                with(|t| t.title = "All About That Bass"),
                None,
            ),
            (
                "punctuation is not part of words",
                words(&["damn"]),
                with(|t| t.title = "Damn!"),
                Some(Rule::BlockedWord),
            ),
            (
                "an apostrophe keeps a word whole",
                words(&["don"]),
                with(|t| t.title = "Don't Stop Me Now"),
                None,
            ),
            (
                "a curly apostrophe is a straight one",
                words(&["don't"]),
                with(|t| t.title = "Don\u{2019}t Stop Me Now"),
                Some(Rule::BlockedWord),
            ),
            ("longer than the limit", longest(3), T, Some(Rule::TooLong)),
            ("exactly the limit", longest(4), T, None),
            ("no limit", longest(0), with(|t| t.minutes = 600), None),
            ("unknown length", longest(3), with(|t| t.minutes = 0), None),
            ("in the pool", pool("Pop"), T, None),
            ("in a pool below", pool("Pop/Beyonce"), T, None),
            (
                "outside the pool",
                pool("Wedding"),
                T,
                Some(Rule::NotInPool),
            ),
            (
                "a pool is a folder, not a prefix",
                pool("Po"),
                T,
                Some(Rule::NotInPool),
            ),
        ];
        for (name, r, t, want) in cases {
            assert_eq!(check(&r, &t), want, "{name}");
        }
    }

    #[test]
    fn lists_and_pools_as_given() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check_list(
                "blocked_artists",
                &l(&[" ABBA ", "", "abba", "Beyoncé", "beyonce"])
            ),
            Ok(l(&["ABBA", "Beyoncé"]))
        );
        assert!(check_list("blocked_words", &l(&["!!!"]))
            .unwrap_err()
            .contains("no word"));
        assert!(check_list("blocked_artists", &l(&["a\u{7}"])).is_err());
        assert!(check_list("blocked_artists", &l(&[&"x".repeat(101)])).is_err());
        let many: Vec<String> = (0..201).map(|i| format!("a{i}")).collect();
        assert!(check_list("blocked_artists", &many)
            .unwrap_err()
            .contains("at most 200"));
        assert_eq!(check_pool(None), Ok(None));
        assert_eq!(check_pool(Some(" / ")), Ok(None));
        assert_eq!(check_pool(Some("/Wedding/")), Ok(Some("Wedding".into())));
        assert_eq!(
            check_pool(Some("Albums//Jazz")),
            Ok(Some("Albums/Jazz".into()))
        );
        for bad in ["../etc", "a/../../b", "./x", "a\\b", "a\nb"] {
            assert!(check_pool(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn folding_is_what_a_reader_sees() {
        assert_eq!(fold("  BEYONCÉ   Knowles "), "beyonce knowles");
        assert_eq!(fold("Ｓｉｇｕｒ Ｒóｓ"), "sigur ros");
        assert_eq!(fold("ﬁre"), "fire");
        assert_eq!(words("it's a—test, ok?"), ["it's", "a", "test", "ok"]);
    }
}
