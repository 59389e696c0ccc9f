//! MPD's request line: a command name, then arguments, each unquoted or in double quotes with
//! backslash escapes, as MPD's own tokenizer reads them (its error messages included, which
//! clients show to people).

/// A request line split into its command and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: String,
    pub args: Vec<String>,
}

/// Why a line could not be read; the message is MPD's. A bad command name closes the
/// connection after its ACK (as MPD does); a bad argument does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The command name is not a word (`Letter expected`, `Invalid word character`).
    Name(&'static str),
    /// An argument cannot be read.
    Argument(&'static str),
}

impl LineError {
    pub fn message(&self) -> &'static str {
        match self {
            LineError::Name(m) | LineError::Argument(m) => m,
        }
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r' || b == b'\n' || b == 0x0b || b == 0x0c
}

/// Splits one request line (without its newline; trailing whitespace is ignored).
pub fn split(line: &str) -> Result<Request, LineError> {
    let bytes = line
        .trim_end_matches(|c: char| c.is_ascii_whitespace())
        .as_bytes();
    let mut at = 0;
    // The command: a letter, then letters, digits and '_' up to a space or the end.
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() => {}
        _ => return Err(LineError::Name("Letter expected")),
    }
    while at < bytes.len() && !is_space(bytes[at]) {
        if !(bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            return Err(LineError::Name("Invalid word character"));
        }
        at += 1;
    }
    let command = line[..at].to_string();
    let mut args = Vec::new();
    loop {
        while at < bytes.len() && is_space(bytes[at]) {
            at += 1;
        }
        if at == bytes.len() {
            break;
        }
        let mut arg = Vec::new();
        if bytes[at] == b'"' {
            at += 1;
            loop {
                match bytes.get(at) {
                    None => return Err(LineError::Argument("Missing closing '\"'")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        // The backslash escapes whatever follows.
                        at += 1;
                        match bytes.get(at) {
                            None => return Err(LineError::Argument("Missing closing '\"'")),
                            Some(&b) => arg.push(b),
                        }
                    }
                    Some(&b) => arg.push(b),
                }
                at += 1;
            }
            at += 1;
            if at < bytes.len() && !is_space(bytes[at]) {
                return Err(LineError::Argument("Space expected after closing '\"'"));
            }
        } else {
            while at < bytes.len() && !is_space(bytes[at]) {
                let b = bytes[at];
                if b <= 0x20 || b == b'"' || b == b'\'' {
                    return Err(LineError::Argument("Invalid unquoted character"));
                }
                arg.push(b);
                at += 1;
            }
        }
        // The line is UTF-8 and the escapes only drop ASCII backslashes.
        args.push(String::from_utf8(arg).unwrap_or_default());
    }
    Ok(Request { command, args })
}

/// An argument as MPD's quoting writes it (for the filter expressions clients build).
#[cfg(test)]
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> (String, Vec<String>) {
        let r = split(line).unwrap_or_else(|e| panic!("{line}: {e:?}"));
        (r.command, r.args)
    }

    #[test]
    fn lines_split_as_mpd_splits_them() {
        assert_eq!(ok("status"), ("status".into(), vec![]));
        assert_eq!(ok("status  \r"), ("status".into(), vec![]));
        assert_eq!(
            ok("addid \"uri with space\"  3"),
            ("addid".into(), vec!["uri with space".into(), "3".into()])
        );
        assert_eq!(
            ok("tagtypes enable Artist AlbumArtist"),
            (
                "tagtypes".into(),
                vec!["enable".into(), "Artist".into(), "AlbumArtist".into()]
            )
        );
        assert_eq!(ok("idle \"player\" \"playlist\"").1, ["player", "playlist"]);
        // A filter expression: one argument, its inner quotes escaped.
        let expr = r#"(Title == "Quote \"Me\" & Space")"#;
        let line = format!("find {}", quote(expr));
        assert_eq!(ok(&line).1, [expr]);
        assert_eq!(ok("find \"\"").1, [""]);
        assert_eq!(ok("lsinfo \"Björk/Homogenic\"").1, ["Björk/Homogenic"]);
    }

    #[test]
    fn bad_lines_get_mpds_messages() {
        for (line, want) in [
            ("", LineError::Name("Letter expected")),
            ("1status", LineError::Name("Letter expected")),
            ("sta-tus", LineError::Name("Invalid word character")),
            (
                "lsinfo Artist\"A",
                LineError::Argument("Invalid unquoted character"),
            ),
            (
                "lsinfo 'ArtistA'",
                LineError::Argument("Invalid unquoted character"),
            ),
            ("lsinfo \"open", LineError::Argument("Missing closing '\"'")),
            (
                "lsinfo \"open\\",
                LineError::Argument("Missing closing '\"'"),
            ),
            (
                "lsinfo \"a\"b",
                LineError::Argument("Space expected after closing '\"'"),
            ),
        ] {
            assert_eq!(split(line), Err(want), "{line:?}");
        }
    }
}
