//! The party settings (`live` entries of the table): their range and first-start value are the
//! party rules' own ([`crate::party::SETTING_RANGES`], [`Settings::default`]), shared with
//! the host's live changes; and the keys given explicitly override what the host saved.
//! Both go through the settings' serde form, so no setting is named here.

use serde::Serialize;
use serde_json::{Map, Value};

use super::kinds::{in_range, ranged_help, Kind};
use crate::party::{Settings, SETTING_RANGES};

/// A party setting: a whole number in the range the party rules give its key.
pub struct Live;

impl Kind for Live {
    type Raw = i64;
    type Value = u32;
    fn check(key: &str, raw: i64) -> Result<u32, String> {
        let (lo, hi) = range(key)?;
        in_range(raw, lo, hi)
    }
    fn help(key: &str, text: &str, _default: Option<&u32>) -> String {
        let default = as_map(&Settings::default()).and_then(|m| m.get(key).map(Value::to_string));
        match range(key) {
            Ok((lo, hi)) => ranged_help(text, lo, hi, default),
            Err(_) => text.to_string(),
        }
    }
}

fn range(key: &str) -> Result<(u32, u32), String> {
    SETTING_RANGES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
        .ok_or_else(|| format!("{key} has no range among the party rules"))
}

fn as_map(settings: &Settings) -> Option<Map<String, Value>> {
    match serde_json::to_value(settings) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// `settings` with `key` set to `value`; refused when the settings have no such key or the
/// value does not fit it.
pub(super) fn with(
    settings: &Settings,
    key: &str,
    value: &impl Serialize,
) -> Result<Settings, String> {
    let mut map = as_map(settings).ok_or("the party settings are not a map")?;
    if !map.contains_key(key) {
        return Err(format!("{key} is not a party setting"));
    }
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    map.insert(key.to_string(), value);
    serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())
}

/// What the hub starts with: the settings the host saved last time, except for the keys
/// given explicitly in the configuration (flag, environment or file), which are taken from
/// `configured` again at every start.
pub fn explicit_over(saved: Settings, configured: &Settings, explicit: &[&str]) -> Settings {
    let Some(given) = as_map(configured) else {
        return saved;
    };
    explicit.iter().fold(saved, |s, key| match given.get(*key) {
        Some(v) => with(&s, key, v).unwrap_or(s),
        None => s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_keys_win_over_the_saved_ones_and_only_they() {
        let saved = Settings {
            request_limit: 9,
            volume: 20,
            requests_paused: true,
            ..Settings::default()
        };
        let configured = Settings {
            request_limit: 4,
            volume: 80,
            skip_percent: 10,
            ..Settings::default()
        };
        let s = explicit_over(saved.clone(), &configured, &["request_limit", "volume"]);
        assert_eq!(
            s,
            Settings {
                request_limit: 4,
                volume: 80,
                ..saved.clone()
            }
        );
        assert_eq!(explicit_over(saved.clone(), &configured, &[]), saved);
    }

    #[test]
    fn unknown_keys_and_misfits_are_refused() {
        let s = Settings::default();
        assert!(with(&s, "no_such_key", &1).is_err());
        assert!(with(&s, "volume", &"loud").is_err());
        assert_eq!(with(&s, "volume", &5).unwrap().volume, 5);
    }
}
