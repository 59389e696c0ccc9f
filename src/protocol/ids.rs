//! Ids on the wire: a type prefix and a positive integer (`p77`, `r42`, `t9`, `g_17`), and the
//! opaque search cursors (`c<offset>`). Every id has exactly one spelling: parsing accepts
//! only what formatting produces.

pub fn play_id(id: i64) -> String {
    format!("p{id}")
}
pub fn entry_id(id: i64) -> String {
    format!("r{id}")
}
pub fn track_id(id: i64) -> String {
    format!("t{id}")
}
pub fn guest_id(id: i64) -> String {
    format!("g_{id}")
}

/// The canonical decimal form only: digits, no sign, no leading zero (so `t4` has one
/// spelling, and `t+4` or `t04` are not ids). Rust's integer parsing accepts both.
fn canonical<T: std::str::FromStr>(digits: &str) -> Option<T> {
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    ok.then(|| digits.parse().ok()).flatten()
}

fn parse_prefixed(s: &str, prefix: &str) -> Option<i64> {
    canonical::<i64>(s.strip_prefix(prefix)?).filter(|v| *v > 0)
}

pub fn parse_play_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "p")
}
pub fn parse_entry_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "r")
}
pub fn parse_track_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "t")
}
pub fn parse_guest_id(s: &str) -> Option<i64> {
    parse_prefixed(s, "g_")
}

/// Search cursors are opaque to clients: `c<offset>`.
pub fn cursor(offset: u32) -> String {
    format!("c{offset}")
}

pub fn parse_cursor(c: &str) -> Option<u32> {
    canonical(c.strip_prefix('c')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        assert_eq!(parse_play_id(&play_id(77)), Some(77));
        assert_eq!(parse_entry_id("r42"), Some(42));
        assert_eq!(parse_track_id("t9"), Some(9));
        assert_eq!(parse_guest_id("g_17"), Some(17));
        for bad in [
            "",
            "p",
            "p-1",
            "p0",
            "x77",
            "p77x",
            "p99999999999999999999",
            "p+4",
            "p04",
            "p 4",
            "p00",
        ] {
            assert_eq!(parse_play_id(bad), None, "{bad}");
        }
        assert_eq!(parse_track_id("t+4"), None);
        assert_eq!(parse_guest_id("g_07"), None);
        assert_eq!(parse_cursor("c0"), Some(0));
        assert_eq!(parse_cursor("c40"), Some(40));
        for bad in ["c+4", "c04", "c", "c-1", "4"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
