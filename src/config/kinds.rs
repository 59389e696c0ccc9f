//! The kinds of value a setting can hold: how its flag parses, how a given value is checked
//! (the reason a bad one is refused, with what is allowed) and how `--help` describes it. A
//! setting names its kind in the table (`super`); most new settings reuse one of these.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{value_parser, Arg, ArgAction, ArgMatches};
use serde::de::DeserializeOwned;

use super::OutputSpec;

/// What a flag, a `JUKEBOX_*` variable or the file gives, and how the flag parses it.
pub trait Raw: Clone + Send + Sync + DeserializeOwned + std::fmt::Debug + 'static {
    /// Gives the flag its parser and arity (the name, variable and help are set already).
    fn arg(arg: Arg) -> Arg;
    /// The value given on the command line or in the environment, if any.
    fn get(m: &ArgMatches, id: &str) -> Option<Self> {
        m.try_get_one::<Self>(id).ok().flatten().cloned()
    }
}

impl Raw for i64 {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(i64))
    }
}

impl Raw for String {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(String))
    }
}

impl Raw for PathBuf {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(PathBuf))
    }
}

/// On or off: `--demo`, `--demo=false`, `JUKEBOX_DEMO=1`, `demo = true`.
impl Raw for bool {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(BoolishValueParser::new())
            .num_args(0..=1)
            .default_missing_value("true")
    }
}

/// A list: the flag repeated, or comma-separated (in the environment), or a TOML array.
impl Raw for Vec<String> {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(String))
            .action(ArgAction::Append)
            .value_delimiter(',')
    }
    fn get(m: &ArgMatches, id: &str) -> Option<Self> {
        m.try_get_many::<String>(id)
            .ok()
            .flatten()
            .map(|v| v.cloned().collect())
    }
}

/// One kind of setting value.
pub trait Kind {
    /// What a flag, a variable or the file gives.
    type Raw: Raw;
    /// What the jukebox uses once the raw value passed [`Kind::check`].
    type Value;
    /// The value, or why `raw` is refused and what is allowed instead.
    fn check(key: &str, raw: Self::Raw) -> Result<Self::Value, String>;
    /// Whether the value is a secret: `--help` then never shows what its `JUKEBOX_*`
    /// variable holds.
    const SECRET: bool = false;
    /// How `--help` shows a default; `None`: not at all (the doc says what happens).
    fn show(_default: &Self::Value) -> Option<String> {
        None
    }
    /// The help line: `text` (the entry's doc without its last period) and the default.
    fn help(_key: &str, text: &str, default: Option<&Self::Value>) -> String {
        match default.and_then(Self::show) {
            Some(d) => format!("{text} [default: {d}]"),
            None => text.to_string(),
        }
    }
}

/// A whole number in `LO..=HI`; `--help` shows the range and the default.
pub struct Num<const LO: u32, const HI: u32>;

impl<const LO: u32, const HI: u32> Kind for Num<LO, HI> {
    // Wider than the value, so that "-1" and "5000000000" are refused for their range.
    type Raw = i64;
    type Value = u32;
    fn check(_key: &str, raw: i64) -> Result<u32, String> {
        in_range(raw, LO, HI)
    }
    fn help(_key: &str, text: &str, default: Option<&u32>) -> String {
        ranged_help(text, LO, HI, default.map(u32::to_string))
    }
}

pub(super) fn in_range(raw: i64, lo: u32, hi: u32) -> Result<u32, String> {
    match u32::try_from(raw) {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("{raw} is out of range; allowed {lo}..={hi}")),
    }
}

pub(super) fn ranged_help(
    text: &str,
    lo: impl std::fmt::Display,
    hi: impl std::fmt::Display,
    default: Option<String>,
) -> String {
    match default {
        Some(d) => format!("{text}, {lo}..={hi} [default: {d}]"),
        None => format!("{text}, {lo}..={hi}"),
    }
}

/// On or off.
pub struct Switch;

impl Kind for Switch {
    type Raw = bool;
    type Value = bool;
    fn check(_key: &str, raw: bool) -> Result<bool, String> {
        Ok(raw)
    }
}

/// Any path (a folder that may not exist yet: the jukebox warns and waits for it).
pub struct Folder;

impl Kind for Folder {
    type Raw = PathBuf;
    type Value = PathBuf;
    fn check(_key: &str, raw: PathBuf) -> Result<PathBuf, String> {
        Ok(raw)
    }
    fn show(default: &PathBuf) -> Option<String> {
        Some(default.display().to_string())
    }
}

/// The path of a file the jukebox creates when missing.
pub struct FilePath;

impl Kind for FilePath {
    type Raw = PathBuf;
    type Value = PathBuf;
    fn check(_key: &str, raw: PathBuf) -> Result<PathBuf, String> {
        if raw.as_os_str().is_empty() {
            return Err("empty path; allowed: a file path".into());
        }
        Ok(raw)
    }
    fn show(default: &PathBuf) -> Option<String> {
        Folder::show(default)
    }
}

/// A folder holding the phone app (an `index.html`, like the source's `web/`).
pub struct AppDir;

impl Kind for AppDir {
    type Raw = PathBuf;
    type Value = PathBuf;
    fn check(_key: &str, dir: PathBuf) -> Result<PathBuf, String> {
        if !dir.join("index.html").is_file() {
            return Err(format!(
                "{} has no index.html; allowed: a folder like the source's web/",
                dir.display()
            ));
        }
        Ok(dir)
    }
}

/// An address and port to listen on.
pub struct Listen;

impl Kind for Listen {
    type Raw = String;
    type Value = SocketAddr;
    fn check(_key: &str, raw: String) -> Result<SocketAddr, String> {
        raw.parse()
            .map_err(|_| format!("{raw:?} is not ADDR:PORT; e.g. 0.0.0.0:8080 or [::]:80"))
    }
    fn show(default: &SocketAddr) -> Option<String> {
        Some(default.to_string())
    }
}

/// Where the audio goes ([`OutputSpec`]).
pub struct Output;

impl Kind for Output {
    type Raw = String;
    type Value = OutputSpec;
    fn check(_key: &str, raw: String) -> Result<OutputSpec, String> {
        raw.parse()
    }
    fn show(default: &OutputSpec) -> Option<String> {
        Some(default.to_string())
    }
}

/// The party's name, shown to guests ("Mia's birthday"); its host label for mDNS is derived
/// from it (`mias-birthday.local`, see `mdns::label_for`).
pub struct PartyName;

impl Kind for PartyName {
    type Raw = String;
    type Value = String;
    fn check(_key: &str, name: String) -> Result<String, String> {
        let ok = !name.trim().is_empty()
            && name.chars().count() <= 63
            && !name.chars().any(char::is_control)
            && name.trim() == name;
        if !ok {
            return Err(format!(
                "{name:?} is not a party name; allowed 1..=63 characters, no control \
                 characters, no spaces at either end"
            ));
        }
        Ok(name)
    }
    fn show(default: &String) -> Option<String> {
        Some(default.clone())
    }
}

/// A host PIN: 6 to 12 digits.
pub struct Pin;

impl Kind for Pin {
    type Raw = String;
    type Value = String;
    const SECRET: bool = true;
    fn check(_key: &str, pin: String) -> Result<String, String> {
        if !(crate::login::MIN_DIGITS..=12).contains(&pin.len())
            || !pin.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("must be 6 to 12 digits (0-9); allowed e.g. 48213597".into());
        }
        Ok(pin)
    }
}

/// A Wi-Fi network name: 1 to 32 bytes (802.11's limit), no control characters. Spaces and
/// any other character are fine: the Wi-Fi QR code escapes what it must.
pub struct Ssid;

impl Kind for Ssid {
    type Raw = String;
    type Value = String;
    fn check(_key: &str, ssid: String) -> Result<String, String> {
        if ssid.is_empty() || ssid.len() > 32 || ssid.chars().any(char::is_control) {
            return Err(format!(
                "{ssid:?} is not a Wi-Fi name; allowed 1..=32 bytes (UTF-8), no control characters"
            ));
        }
        Ok(ssid)
    }
}

/// A value never shown: `Debug` prints `<hidden>`, so no log line or error carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// A WPA passphrase: 8 to 63 bytes without control characters, or a raw key of 64 hex
/// digits, as NetworkManager and wpa_supplicant take them. A refusal never repeats it.
pub struct WifiPassword;

impl Kind for WifiPassword {
    type Raw = String;
    type Value = Secret;
    const SECRET: bool = true;
    fn check(_key: &str, password: String) -> Result<Secret, String> {
        let hex_key = password.len() == 64 && password.bytes().all(|b| b.is_ascii_hexdigit());
        let passphrase =
            (8..=63).contains(&password.len()) && !password.chars().any(char::is_control);
        if !(hex_key || passphrase) {
            return Err(format!(
                "not a WPA password ({} bytes{}); allowed 8..=63 bytes without control \
                 characters, or 64 hex digits",
                password.len(),
                if password.chars().any(char::is_control) {
                    ", with a control character"
                } else {
                    ""
                }
            ));
        }
        Ok(Secret(password))
    }
}

/// A `tracing` filter directive.
pub struct LogFilter;

impl Kind for LogFilter {
    type Raw = String;
    type Value = String;
    fn check(_key: &str, log: String) -> Result<String, String> {
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(format!(
                "{log:?} is not a log filter; allowed error, warn, info, debug, trace"
            ));
        }
        Ok(log)
    }
    fn show(default: &String) -> Option<String> {
        Some(default.clone())
    }
}

/// Web origins (`http://tv.example:3000`), as a browser sends them in `Origin`.
pub struct Origins;

impl Kind for Origins {
    type Raw = Vec<String>;
    type Value = Vec<String>;
    fn check(_key: &str, origins: Vec<String>) -> Result<Vec<String>, String> {
        for o in &origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && o.len() <= 256;
            if !ok {
                return Err(format!(
                    "{o:?} is not an origin; allowed e.g. http://tv.example:3000 (no path)"
                ));
            }
        }
        Ok(origins)
    }
}

/// Host names or addresses, kept as the `Host` header carries them (lower case; IPv6 in
/// brackets).
pub struct Hosts;

impl Kind for Hosts {
    type Raw = Vec<String>;
    type Value = Vec<String>;
    fn check(_key: &str, hosts: Vec<String>) -> Result<Vec<String>, String> {
        hosts
            .iter()
            .map(|h| {
                host_entry(h).ok_or_else(|| {
                    format!(
                        "{h:?} is not a host name or address; allowed e.g. party.example, \
                         10.0.0.5 or [fd00::5] (no port, no scheme)"
                    )
                })
            })
            .collect()
    }
}

fn host_entry(h: &str) -> Option<String> {
    let h = h.trim().to_ascii_lowercase();
    if let Ok(v6) = h.parse::<std::net::Ipv6Addr>() {
        return Some(format!("[{v6}]"));
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|v6| format!("[{v6}]"));
    }
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then_some(h)
}
