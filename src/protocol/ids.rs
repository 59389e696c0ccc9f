//! Ids on the wire. The four row ids (`p77`, `r42`, `t9`, `g_17`) are typed and spelled in
//! [`crate::ids`]; what is left here is the opaque search cursor (`c<offset>`), which has the
//! same rule: exactly one spelling, and parsing accepts only what formatting produces.

pub use crate::ids::{EntryId, GuestId, PlayId, TrackId};

/// Search cursors are opaque to clients: `c<offset>`.
pub fn cursor(offset: u32) -> String {
    format!("c{offset}")
}

pub fn parse_cursor(c: &str) -> Option<u32> {
    crate::ids::canonical(c.strip_prefix('c')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        assert_eq!(parse_cursor(&cursor(40)), Some(40));
        assert_eq!(parse_cursor("c0"), Some(0));
        for bad in ["c+4", "c04", "c", "c-1", "4"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
