//! Guests' names: what may be shown to the room.

use super::HubError;

/// A guest's name: trimmed, at most 32 characters, no control or invisible formatting
/// characters (Unicode category Cf: bidi overrides, zero-width spaces and joiners, the BOM),
/// and, unless `reserved_ok` (the host), not "Host" or "Guest <n>" in any case or width.
pub(crate) fn validate_name(name: &str, reserved_ok: bool) -> Result<String, HubError> {
    use unicode_normalization::UnicodeNormalization;
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let bad = |message: &str| HubError::BadRequest {
        field: "name",
        message: message.into(),
    };
    let n = name.trim();
    if n.chars().count() > 32 {
        return Err(bad("at most 32 characters"));
    }
    if n.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    if n.chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(bad(
            "invisible formatting characters (such as bidi overrides or zero-width spaces) are not allowed",
        ));
    }
    if !reserved_ok {
        // Compared the way a reader sees it: compatibility forms folded (fullwidth letters,
        // ligatures), case ignored, runs of spaces as one.
        let folded: String = n.nfkc().collect::<String>().to_lowercase();
        let words: Vec<&str> = folded.split_whitespace().collect();
        let joined = words.join(" ");
        let guest_n = joined
            .strip_prefix("guest")
            .map(str::trim_start)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
        if joined == "host" || guest_n {
            return Err(bad(
                "\"Host\" and \"Guest <number>\" are reserved; pick another name",
            ));
        }
    }
    Ok(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reserve_host_and_guest_n_and_refuse_invisible_characters() {
        let table: &[(&str, bool, Result<&str, ()>)] = &[
            ("  Mia  ", false, Ok("Mia")),
            ("Zoë", false, Ok("Zoë")),
            ("Hosting", false, Ok("Hosting")),
            ("Guest", false, Ok("Guest")),
            ("Guest of honour", false, Ok("Guest of honour")),
            ("Host", false, Err(())),
            ("hOST", false, Err(())),
            ("Ｈｏｓｔ", false, Err(())),
            ("Guest 3", false, Err(())),
            ("GUEST   42", false, Err(())),
            ("guest7", false, Err(())),
            ("Guest ３", false, Err(())),
            ("Host", true, Ok("Host")),
            ("\u{202e}kcaH", false, Err(())),
            ("Mi\u{200d}a", false, Err(())),
            ("\u{feff}Sam", false, Err(())),
            ("Lou\u{2069}", false, Err(())),
            ("bell\u{7}", false, Err(())),
            (&"x".repeat(33), false, Err(())),
        ];
        for (name, host, want) in table {
            let got = validate_name(name, *host);
            match want {
                Ok(n) => assert_eq!(got.as_deref().ok(), Some(*n), "{name:?}: {got:?}"),
                Err(()) => assert!(
                    matches!(got, Err(HubError::BadRequest { field: "name", .. })),
                    "{name:?}: {got:?}"
                ),
            }
        }
    }
}
