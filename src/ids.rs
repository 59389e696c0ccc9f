//! The four ids: [`PlayId`], [`EntryId`], [`TrackId`], [`GuestId`]. Each is a positive
//! integer (a row id in the database) with its own type, so a queue entry's id cannot be passed
//! where a play's is expected (`Vote { entry_id: play_id }` does not compile).
//!
//! They live here, at the crate's root, because every layer holds them and none owns them: the
//! party rules and the hub compare them, the store reads and writes them as plain integers
//! (`ToSql`/`FromSql`), and the protocol spells them with a prefix (`p77`, `r42`, `t9`,
//! `g_17`). The spelling is defined once, here: `Display` and `Serialize` write it, `FromStr`,
//! [`PlayId::parse`] and `Deserialize` read it back, and they accept only what they write (see
//! [`canonical`]).

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// The canonical decimal form only: digits, no sign, no leading zero (so `t4` has one
/// spelling, and `t+4` or `t04` are not ids). Rust's integer parsing accepts both.
pub(crate) fn canonical<T: FromStr>(digits: &str) -> Option<T> {
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    ok.then(|| digits.parse().ok()).flatten()
}

/// A string that is not the wire spelling of the id type it was read as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a {what} id")]
pub struct BadId {
    /// What the id names, in words ("play", "queue entry", "track", "guest").
    pub what: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            /// What comes before the number on the wire.
            pub const PREFIX: &'static str = $prefix;
            /// What the id names, in words (for error messages).
            pub const WHAT: &'static str = $what;

            /// The id of row `id`.
            pub const fn new(id: i64) -> Self {
                Self(id)
            }

            /// The row id.
            pub const fn get(self) -> i64 {
                self.0
            }

            /// Reads the wire spelling; only a positive id in canonical form is one.
            pub fn parse(s: &str) -> Option<Self> {
                canonical::<i64>(s.strip_prefix($prefix)?)
                    .filter(|v| *v > 0)
                    .map(Self)
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                Self(id)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        /// The wire spelling.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> {
                Self::parse(s).ok_or(BadId { what: $what })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        /// A plain integer in the database.
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(v).map(Self)
            }
        }
    };
}

id_type!(
    /// One play of a track (a row of `plays`): `p77` on the wire.
    PlayId,
    "p",
    "play"
);
id_type!(
    /// One request in the queue (a row of `requests`): `r42` on the wire.
    EntryId,
    "r",
    "queue entry"
);
id_type!(
    /// A track of the library (a row of `tracks`): `t9` on the wire.
    TrackId,
    "t",
    "track"
);
id_type!(
    /// A guest, the host included (a row of `guests`): `g_17` on the wire.
    GuestId,
    "g_",
    "guest"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        assert_eq!(
            PlayId::parse(&PlayId::new(77).to_string()),
            Some(PlayId::new(77))
        );
        assert_eq!(EntryId::parse("r42"), Some(EntryId::new(42)));
        assert_eq!(TrackId::parse("t9"), Some(TrackId::new(9)));
        assert_eq!(GuestId::parse("g_17"), Some(GuestId::new(17)));
        assert_eq!(GuestId::new(17).to_string(), "g_17");
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
            assert_eq!(PlayId::parse(bad), None, "{bad}");
        }
        assert_eq!(TrackId::parse("t+4"), None);
        assert_eq!(GuestId::parse("g_07"), None);
        // The prefix is the type: one kind of id is not another.
        assert_eq!(EntryId::parse("p4"), None);
        assert_eq!(GuestId::parse("g4"), None);
    }

    #[test]
    fn serde_speaks_the_wire_spelling() {
        let json = serde_json::to_string(&(PlayId::new(7), Some(TrackId::new(3)))).unwrap();
        assert_eq!(json, r#"["p7","t3"]"#);
        let back: (PlayId, Option<TrackId>) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, (PlayId::new(7), Some(TrackId::new(3))));
        let err = serde_json::from_str::<EntryId>(r#""r04""#).unwrap_err();
        assert!(err.to_string().contains("not a queue entry id"), "{err}");
        assert!(serde_json::from_str::<GuestId>("17").is_err());
    }

    #[test]
    fn the_database_holds_plain_integers() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let n: i64 = db
            .query_row("SELECT ?1", [TrackId::new(12)], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 12);
        let id: TrackId = db.query_row("SELECT 12", [], |r| r.get(0)).unwrap();
        assert_eq!(id, TrackId::new(12));
    }
}
