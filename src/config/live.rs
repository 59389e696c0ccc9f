//! The party settings (`live` entries of the table): their range and first-start value are the
//! party rules' own ([`crate::party::SETTING_RULES`], [`Settings::default`]), shared with
//! the host's live changes; and the keys given explicitly override what the host saved.
//! Both go through the settings' serde form, so no setting is named here.

use clap::Arg;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::kinds::{ranged_help, Kind, Raw};
use crate::party::{allowed, Allowed, Settings};

/// A party setting: a number or a word, as the party rules allow for its key
/// ([`crate::party::SETTING_RULES`]).
pub struct Live;

/// What a flag, a variable or the file gives a party setting: a whole number (`-14`) or a
/// word (`auto`). Which one fits is the party rules' decision, so both parse here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LiveValue {
    Number(i64),
    /// `true`/`false` in the file, for an on/off setting.
    Switch(bool),
    Word(String),
}

impl Raw for LiveValue {
    fn arg(arg: Arg) -> Arg {
        // `--loudness-lufs -14` is a value, not a flag.
        arg.allow_negative_numbers(true).value_parser(
            |s: &str| -> Result<LiveValue, std::convert::Infallible> {
                Ok(match s.trim().parse::<i64>() {
                    Ok(n) => LiveValue::Number(n),
                    Err(_) => LiveValue::Word(s.trim().to_string()),
                })
            },
        )
    }
}

impl Kind for Live {
    type Raw = LiveValue;
    type Value = LiveValue;
    fn check(key: &str, raw: LiveValue) -> Result<LiveValue, String> {
        let rule =
            allowed(key).ok_or_else(|| format!("{key} has no rule among the party rules"))?;
        match raw {
            LiveValue::Number(n) => rule.number(n).map(LiveValue::Number),
            LiveValue::Word(w) => rule.word(&w).map(|w| LiveValue::Word(w.to_string())),
            LiveValue::Switch(b) => rule
                .word(if b { "on" } else { "off" })
                .map(|_| LiveValue::Switch(b)),
        }
    }
    fn help(key: &str, text: &str, _default: Option<&LiveValue>) -> String {
        let default = as_map(&Settings::default()).and_then(|m| {
            m.get(key).map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => (if *b { "on" } else { "off" }).to_string(),
                other => other.to_string(),
            })
        });
        match allowed(key) {
            Some(Allowed::Range(lo, hi)) => ranged_help(text, lo, hi, default),
            Some(Allowed::Words(words)) => {
                let words = words.join(" | ");
                match default {
                    Some(d) => format!("{text}: {words} [default: {d}]"),
                    None => format!("{text}: {words}"),
                }
            }
            Some(Allowed::List | Allowed::Folder) | None => text.to_string(),
        }
    }
}

/// A party setting that is a list (the content rules' artists and words).
pub struct LiveList;

/// A list as given: the flag repeated, `;` between entries in the environment (names have
/// commas: "Earth, Wind & Fire"), a TOML array in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ListRaw(pub Vec<String>);

impl Raw for ListRaw {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(clap::value_parser!(String))
            .action(clap::ArgAction::Append)
            .value_delimiter(';')
    }
    fn get(m: &clap::ArgMatches, id: &str) -> Option<Self> {
        m.try_get_many::<String>(id)
            .ok()
            .flatten()
            .map(|v| ListRaw(v.cloned().collect()))
    }
}

impl Kind for LiveList {
    type Raw = ListRaw;
    type Value = Vec<String>;
    fn check(key: &str, raw: ListRaw) -> Result<Vec<String>, String> {
        crate::party::rules::check_list(key, &raw.0)
            .map_err(|e| format!("{e}; allowed {}", Allowed::List))
    }
    fn help(_key: &str, text: &str, _default: Option<&Vec<String>>) -> String {
        format!("{text} (repeat the flag; ';' between entries in the environment) [default: none]")
    }
}

/// The pool: a folder inside the music folder.
pub struct LivePool;

impl Kind for LivePool {
    type Raw = String;
    type Value = Option<String>;
    fn check(_key: &str, raw: String) -> Result<Option<String>, String> {
        crate::party::rules::check_pool(Some(&raw))
            .map_err(|e| format!("{e}; allowed {}", Allowed::Folder))
    }
    fn help(_key: &str, text: &str, _default: Option<&Option<String>>) -> String {
        format!("{text} [default: the whole library]")
    }
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
