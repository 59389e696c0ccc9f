//! What `find`, `search`, `list` and `count` select: MPD's old `TAG VALUE` pairs or a filter
//! expression (MPD 0.21+: `(Artist == "x")`, `(!…)`, `(… AND …)`, `contains`, `starts_with`,
//! `base`), compared exactly (`find`) or ignoring case (`search`).

use super::mirror::Song;
use super::song;

/// One condition on a song.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A tag (`any` for every tag, `file` for the path) compared with a value.
    Tag {
        tag: String,
        op: Op,
        value: String,
    },
    /// A tag matched (`=~`) or not matched (`!~`) by a regular expression.
    Regex {
        tag: String,
        pattern: Pattern,
        negate: bool,
    },
    /// Under this directory.
    Base(String),
    Not(Box<Filter>),
    And(Vec<Filter>),
}

/// A regular expression of a filter, compiled once for `find` (as written) and once for
/// `search` (ignoring case). The `regex` crate matches in linear time, so a hostile pattern
/// costs no more than its bounded size.
#[derive(Debug, Clone)]
pub struct Pattern {
    exact: regex::Regex,
    folded: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, o: &Pattern) -> bool {
        self.exact.as_str() == o.exact.as_str()
    }
}

/// A compiled pattern's size limit: far beyond any tag search, far below a memory problem.
const PATTERN_BYTES: usize = 1 << 20;

impl Pattern {
    fn new(p: &str) -> Result<Pattern, String> {
        let build = |fold: bool| {
            regex::RegexBuilder::new(p)
                .case_insensitive(fold)
                .size_limit(PATTERN_BYTES)
                .build()
                .map_err(|e| {
                    // The crate's message draws the pattern over several lines: its last says
                    // what is wrong.
                    let text = e.to_string();
                    let why = text.lines().last().unwrap_or("").trim();
                    format!("Error in regex: {}", why.trim_start_matches("error: "))
                })
        };
        Ok(Pattern {
            exact: build(false)?,
            folded: build(true)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Contains,
    StartsWith,
}

impl Filter {
    /// Whether `s` matches; `fold` compares ignoring case (`search`).
    pub fn matches(&self, s: &Song, fold: bool) -> bool {
        match self {
            Filter::Regex {
                tag,
                pattern,
                negate,
            } => {
                let re = if fold {
                    &pattern.folded
                } else {
                    &pattern.exact
                };
                values(s, tag).iter().any(|v| re.is_match(v)) != *negate
            }
            Filter::Tag { tag, op, value } => {
                let values = values(s, tag);
                let norm = |v: &str| {
                    if fold {
                        v.to_lowercase()
                    } else {
                        v.to_string()
                    }
                };
                let want = norm(value);
                let hit = |v: &String| {
                    let v = norm(v);
                    match op {
                        Op::Eq | Op::Ne => v == want,
                        Op::Contains => v.contains(&want),
                        Op::StartsWith => v.starts_with(&want),
                    }
                };
                let any = values.iter().any(hit);
                // A song without the tag equals only the empty string.
                let any = any || (values.is_empty() && want.is_empty() && *op == Op::Eq);
                if *op == Op::Ne {
                    !any
                } else {
                    any
                }
            }
            Filter::Base(dir) => {
                let dir = dir.trim_end_matches('/');
                dir.is_empty() || s.file.starts_with(&format!("{dir}/"))
            }
            Filter::Not(f) => !f.matches(s, fold),
            Filter::And(fs) => fs.iter().all(|f| f.matches(s, fold)),
        }
    }
}

/// A tag name as the songs spell it (`artist` → `Artist`).
/// A song's values of `tag` (`any`: of every tag and the path).
fn values(s: &Song, tag: &str) -> Vec<String> {
    if tag.eq_ignore_ascii_case("any") {
        song::TAGS
            .iter()
            .chain(&["file"])
            .filter_map(|t| song::tag(s, t).map(|v| v.into_owned()))
            .collect()
    } else {
        song::tag(s, canonical(tag))
            .map(|v| v.into_owned())
            .into_iter()
            .collect()
    }
}

fn canonical(tag: &str) -> &str {
    song::TAGS
        .iter()
        .chain(&["file"])
        .find(|t| t.eq_ignore_ascii_case(tag))
        .copied()
        .unwrap_or(tag)
}

/// Whether `tag` is one MPD knows (for its error message).
fn known_tag(tag: &str) -> bool {
    ["any", "file", "base", "modified-since"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tag))
        || super::song::TagMask::bit(tag).is_some()
}

/// The filter of `args` (pairs or one expression), and what is left after it (`sort`,
/// `window`, `group`…). `search` pairs mean "contains", `find` pairs "equals".
pub fn parse(args: &[String], search: bool) -> Result<(Filter, &[String]), String> {
    if let Some(first) = args.first().filter(|a| a.starts_with('(')) {
        let f = expression(first)?;
        return Ok((f, &args[1..]));
    }
    let mut all = Vec::new();
    let mut i = 0;
    while i + 1 < args.len() && !is_keyword(&args[i]) {
        let (tag, value) = (&args[i], &args[i + 1]);
        if !known_tag(tag) {
            return Err(format!("Unknown filter type: {tag}"));
        }
        all.push(if tag.eq_ignore_ascii_case("base") {
            Filter::Base(value.clone())
        } else {
            Filter::Tag {
                tag: tag.clone(),
                op: if search { Op::Contains } else { Op::Eq },
                value: value.clone(),
            }
        });
        i += 2;
    }
    if i < args.len() && !is_keyword(&args[i]) {
        return Err("Incorrect number of filter arguments".into());
    }
    Ok((Filter::And(all), &args[i..]))
}

fn is_keyword(a: &str) -> bool {
    ["sort", "window", "group", "position"].contains(&a)
}

/// One filter expression.
pub fn expression(s: &str) -> Result<Filter, String> {
    let mut p = Parser {
        s: s.as_bytes(),
        at: 0,
    };
    let f = p.expr()?;
    p.space();
    if p.at != p.s.len() {
        return Err("Unparsed garbage after expression".into());
    }
    Ok(f)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.space();
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("'{}' expected", b as char))
        }
    }

    fn word(&mut self) -> String {
        self.space();
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.at]).into_owned()
    }

    fn op(&mut self) -> Result<Op, String> {
        self.space();
        let rest = &self.s[self.at..];
        for (text, op) in [
            (&b"=="[..], Op::Eq),
            (b"!=", Op::Ne),
            (b"contains", Op::Contains),
            (b"starts_with", Op::StartsWith),
        ] {
            if rest.starts_with(text) {
                self.at += text.len();
                return Ok(op);
            }
        }
        Err("Unknown filter operator".into())
    }

    /// A quoted value, `'…'` or `"…"`, backslash escaping the next character.
    fn value(&mut self) -> Result<String, String> {
        self.space();
        let Some(&q) = self.s.get(self.at).filter(|b| **b == b'\'' || **b == b'"') else {
            return Err("Quoted string expected".into());
        };
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.at) {
                None => return Err("Closing quote not found".into()),
                Some(b) if *b == q => {
                    self.at += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.s.get(self.at) {
                        Some(b) => out.push(*b),
                        None => return Err("Closing quote not found".into()),
                    }
                }
                Some(b) => out.push(*b),
            }
            self.at += 1;
        }
    }

    fn expr(&mut self) -> Result<Filter, String> {
        self.eat(b'(')?;
        self.space();
        let f = if self.s.get(self.at) == Some(&b'!') {
            self.at += 1;
            let inner = self.expr()?;
            Filter::Not(Box::new(inner))
        } else if self.s.get(self.at) == Some(&b'(') {
            let mut all = vec![self.expr()?];
            loop {
                self.space();
                if self.s.get(self.at) == Some(&b')') {
                    break;
                }
                if self.word() != "AND" {
                    return Err("'AND' expected".into());
                }
                all.push(self.expr()?);
            }
            Filter::And(all)
        } else {
            let tag = self.word();
            if tag.eq_ignore_ascii_case("base") {
                Filter::Base(self.value()?)
            } else {
                if !known_tag(&tag) {
                    return Err(format!("Unknown filter type: {tag}"));
                }
                self.space();
                let rest = &self.s[self.at..];
                if rest.starts_with(b"=~") || rest.starts_with(b"!~") {
                    let negate = rest[0] == b'!';
                    self.at += 2;
                    let pattern = Pattern::new(&self.value()?)?;
                    self.eat(b')')?;
                    return Ok(Filter::Regex {
                        tag,
                        pattern,
                        negate,
                    });
                }
                let op = self.op()?;
                Filter::Tag {
                    tag,
                    op,
                    value: self.value()?,
                }
            }
        };
        self.eat(b')')?;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::TrackId;

    fn song(artist: &str, title: &str, file: &str) -> Song {
        Song {
            track: TrackId::new(1),
            file: file.into(),
            title: title.into(),
            artist: artist.into(),
            album: "Album One".into(),
            track_no: Some(1),
            duration_ms: 1000,
            last_modified: None,
            details: Default::default(),
        }
    }

    #[test]
    fn expressions_and_pairs_select_what_mpd_selects() {
        let a = song("Artist A", "Quote \"Me\" & Space", "A/One/01.flac");
        let b = song("Artist B", "Other", "B/Two/02.ogg");
        let f = expression(r#"(Title == "Quote \"Me\" & Space")"#).unwrap();
        assert!(f.matches(&a, false) && !f.matches(&b, false));
        let f = expression("((Artist == 'Artist A') AND (!(Title contains 'x')))").unwrap();
        assert!(f.matches(&a, false) && !f.matches(&b, false));
        let f = expression("(base 'B')").unwrap();
        assert!(!f.matches(&a, false) && f.matches(&b, false));
        let f = expression("(artist == 'artist b')").unwrap();
        assert!(
            !f.matches(&b, false) && f.matches(&b, true),
            "search folds case"
        );
        let args: Vec<String> = ["Artist", "artist a", "sort", "Title"]
            .map(String::from)
            .into();
        let (f, rest) = parse(&args, true).unwrap();
        assert!(f.matches(&a, true) && !f.matches(&b, true));
        assert_eq!(rest, ["sort", "Title"]);
        let args: Vec<String> = ["any", "Other"].map(String::from).into();
        assert!(parse(&args, false).unwrap().0.matches(&b, false));
        assert!(parse(&["Bogus".into(), "x".into()], false).is_err());
        assert!(parse(&["Artist".into()], false).is_err());
        let f = expression("(Title =~ '^Quote .*Space$')").unwrap();
        assert!(f.matches(&a, false) && !f.matches(&b, false));
        let f = expression("(Artist !~ 'artist a')").unwrap();
        assert!(
            f.matches(&a, false) && !f.matches(&a, true),
            "search folds case"
        );
        assert!(expression("(Artist =~ '(')").is_err(), "a bad pattern");
        assert!(
            expression("(Artist =~ 'x{100000}{100000}')").is_err(),
            "too big"
        );
        assert!(expression("(Artist == 'x'").is_err());
    }
}
