//! Configuration: command-line flags, `JUKEBOX_*` environment variables and the TOML file,
//! merged into one validated [`Config`] at start-up. Precedence: flag > environment > file >
//! built-in default. Nothing reads configuration after start-up; the party settings that the
//! host can change live are copied into the hub and persisted there.
//!
//! Every setting is ONE entry of the `settings!` table below: its doc (the `--help` line;
//! one paragraph, the range and default are added), its group, its key, its kind, its default
//! and the flag's value name. From the key come the flag (`--request-limit`), the variable
//! (`JUKEBOX_REQUEST_LIMIT`), the file key (`request_limit`) and the field; from the kind
//! ([`kinds`]) come the parser, the check with its message and the range in `--help`.
//!
//! To add a setting, add an entry where it should appear in `--help`:
//!
//! ```text
//! /// Seconds the next track fades in over the end of this one.
//! config crossfade_s: Num<0, 12> = 0, "SECS";
//! ```
//!
//! - The word before the key is its group. `config` makes it a field of [`Config`] (an
//!   `Option` when the entry has no default: "not set" means something); `limit` a field of
//!   [`Limits`] (a default is required); `live` a party setting the host may change live,
//!   which, given explicitly, wins over the host's saved value at every start. A `live` key
//!   is a field of [`Settings`] with its rule in `party::SETTING_RULES` and its first-start
//!   value in `Settings::default` (the party rules own them; the host's changes obey them
//!   too), so it takes no default here.
//! - The kind is one of [`kinds`] (`Num<LO, HI>`, `Switch`, `Folder`, `Listen`, `Hosts`…) or
//!   a new one there when no existing check fits (one `impl Kind`).
//! - Then add its row to the configuration table in README.md (a test checks it is there).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Arg, Args, Parser, Subcommand, ValueEnum};

use crate::party::Settings;

pub mod kinds;
mod live;
mod output;
#[macro_use]
mod table;

use kinds::*;
pub use live::{explicit_over, Live, LiveList, LivePool};
pub use output::{OutputSpec, DEFAULT_SNAPCAST_BUFFER_MS};

/// Where the packaged configuration lives; read when present and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/jukebox/jukebox.toml";

#[derive(Debug, Parser)]
#[command(
    name = "jukebox",
    version,
    about = "A party jukebox: plays a music folder; guests request, vote and like from their phones.",
    long_about = None,
    after_help = "Every option is also a key in the TOML file (same name, '-' as '_') and a \
                  JUKEBOX_<KEY> environment variable. Precedence: flag > environment > file > default."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write tonight's plays (with who requested them and their likes) as M3U or CSV to stdout.
    Export(ExportArgs),
    /// List the audio outputs this machine has, with the --output value that selects each.
    Devices,
    /// Lost the generated host PIN? Stop the jukebox, run this: it prints a new PIN and logs
    /// out every host. (A configured --host-pin still wins over it.)
    ResetPin(ResetPinArgs),
    /// snapserver's stream control script (its `controlscript=`): tells Snapweb and Snapdroid
    /// what plays, and lets them play, pause and skip when the host allows it
    /// (snapcast_control). See docs/MULTIROOM.md.
    SnapcastPlugin(SnapcastPluginArgs),
}

#[derive(Debug, Args)]
pub struct SnapcastPluginArgs {
    /// The jukebox's address, as this machine reaches it.
    #[arg(
        long,
        env = "JUKEBOX_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:80"
    )]
    pub jukebox: String,
    /// The host PIN, for play, pause and skip (without it the plugin only shows what plays).
    #[arg(
        long,
        env = "JUKEBOX_HOST_PIN",
        value_name = "PIN",
        hide_env_values = true
    )]
    pub pin: Option<String>,
    /// Given by snapserver; not used.
    #[arg(long, hide = true)]
    pub stream: Option<String>,
    /// Given by snapserver; not used.
    #[arg(long, hide = true)]
    pub snapcast_port: Option<String>,
    /// Given by snapserver 0.27+; not used.
    #[arg(long, hide = true)]
    pub snapcast_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResetPinArgs {
    /// The jukebox database.
    #[arg(long, env = "JUKEBOX_DB", value_name = "FILE")]
    pub db: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The jukebox database to read.
    #[arg(long, env = "JUKEBOX_DB", value_name = "FILE")]
    pub db: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::M3u)]
    pub format: ExportFormat,
    /// Hours without any play that separate two parties; "tonight" is the latest party.
    #[arg(
        long,
        default_value_t = crate::hub::PARTY_GAP_HOURS,
        value_parser = clap::value_parser!(u32).range(1..=720)
    )]
    pub gap_hours: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    M3u,
    Csv,
}

/// Open connections at once by default: the 3,000 phones the jukebox is measured with (each
/// holds one websocket) plus room for the page loads and cover art of those arriving.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;
/// Open connections one address may hold by default. A phone holds one websocket and, while a
/// page loads, up to six HTTP connections (a browser's limit per host); 32 is four phones
/// sharing one address (a NAT, a shared laptop), and far from the thousand sockets one laptop
/// could otherwise hold.
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: u32 = 32;

settings! {
    /// Folder of music to play, scanned recursively.
    config music: Folder = "./music".into(), "DIR";
    /// SQLite database holding the library index, queue, votes, likes and history.
    config db: FilePath = "./jukebox.db".into(), "FILE";
    /// Address and port to serve phones on.
    config listen: Listen = SocketAddr::from(([0, 0, 0, 0], 8080)), "ADDR:PORT";
    /// Audio output: default | alsa:NAME | wav:PATH | snapcast:PATH (snapserver's pipe
    /// source, for every room in sync) | null.
    config output: Output = OutputSpec::Default, "SPEC";
    /// snapserver's `buffer` (its delay from the pipe to every room) with --output
    /// snapcast:PATH: the phones' progress bars follow what is heard.
    config snapcast_buffer_ms: Num<20, 10_000> = DEFAULT_SNAPCAST_BUFFER_MS, "MS";
    /// snapserver's control port (its [tcp] JSON-RPC, e.g. 127.0.0.1:1705): the host page
    /// shows every room (snapclient) with its volume and mute [default: off].
    config snapcast_rpc: Listen, "ADDR:PORT";
    /// Address and port for MPD clients (mpc, ncmpcpp, M.A.L.P., Home Assistant). Without a
    /// password they see the party; `password PIN` gives the host's controls.
    config mpd_listen: Listen = SocketAddr::from(([0, 0, 0, 0], 6600)), "ADDR:PORT";
    /// Do not serve MPD clients.
    config no_mpd: Switch = false;
    /// Party name shown to guests and advertised over mDNS; phones reach NAME.local (as a host
    /// label: "Mia's party" is mias-party.local).
    config name: PartyName = "jukebox".into(), "NAME";
    /// Host PIN, 6 to 12 digits [default: 8 digits generated on first start and printed in the
    /// log once; `jukebox reset-pin` makes a new one].
    config host_pin: Pin, "PIN";
    /// Do not advertise over mDNS.
    config no_mdns: Switch = false;
    /// The Wi-Fi the guests join (the Pi's own hotspot, for a party with no router): the TV
    /// shows a QR code that joins it beside the jukebox's own, 1 to 32 bytes [default: none].
    config wifi_ssid: Ssid, "SSID";
    /// The password of wifi_ssid (WPA), 8 to 63 bytes or 64 hex digits; only the TV's
    /// Wi-Fi QR code carries it [default: an open network].
    config wifi_password: WifiPassword, "PASSWORD";
    /// Answer requests for other host names (the connectivity checks of a phone that joined
    /// the hotspot) with a redirect to the guest page, so the phone opens the jukebox by itself.
    config captive_portal: Switch = false;
    /// Generate a small tagged demo library and play it (ignores --music).
    config demo: Switch = false;
    /// Most pending requests one guest may have.
    live request_limit: Live, "N";
    /// Minutes before a played track may be requested or auto-played again.
    live no_repeat_minutes: Live, "MIN";
    /// A request is refused when its artist is among the last N tracks played.
    live artist_spacing: Live, "N";
    /// Skip votes always needed at least.
    live skip_min_votes: Live, "N";
    /// Percentage of connected guests whose skip votes skip a track.
    live skip_percent: Live, "PCT";
    /// Volume at first start.
    live volume: Live, "PCT";
    /// Highest volume anyone may set.
    live max_volume: Live, "PCT";
    /// Loudness levelling (auto: album gain while consecutive plays come from one album,
    /// track gain otherwise; off: every track as mastered).
    live normalize: Live, "MODE";
    /// The loudness every track is levelled to, in LUFS.
    live loudness_lufs: Live, "LUFS";
    /// Seconds two tracks of different albums overlap (0: none; one album's tracks always
    /// join gaplessly).
    live crossfade_s: Live, "SECS";
    /// Snapcast's apps (Snapweb, Snapdroid) may play, pause and skip through
    /// `jukebox snapcast-plugin`.
    live snapcast_control: Live, "on|off";
    /// Artists guests may not request and the auto-DJ does not play (case and accents
    /// ignored: "beyonce" blocks "Beyoncé").
    live blocked_artists: LiveList, "ARTIST";
    /// Words (or phrases) that keep a song out when its title, artist or album has them as
    /// whole words.
    live blocked_words: LiveList, "WORD";
    /// The longest song guests may request and the auto-DJ plays, in minutes (0: no limit).
    live max_track_minutes: Live, "MIN";
    /// Requests and the auto-DJ only from this folder of the music folder (the wedding
    /// playlist), e.g. Wedding or Albums/Jazz.
    live pool: LivePool, "FOLDER";
    /// New guest tokens per minute from one address.
    limit guest_rate: Num<1, 100_000> = 30, "N";
    /// Host PIN attempts per minute from one address.
    limit login_rate: Num<1, 1000> = 5, "N";
    /// Wrong host PINs from all addresses together, within --login-budget-seconds, before
    /// every host login (the right PIN too) waits 1 s, doubling with each further wrong PIN up
    /// to 5 minutes.
    limit login_budget: Num<1, 10_000> = 20, "N";
    /// The window of --login-budget in seconds.
    limit login_budget_seconds: Num<1, 86_400> = 3600, "SECS";
    /// Hours a host login lasts before the host must enter the PIN again.
    limit host_token_hours: Num<1, 720> = 12, "HOURS";
    /// Live requests per second one connection may send.
    limit ws_rate: Num<1, 10_000> = 20, "N";
    /// Burst of live requests above that rate.
    limit ws_burst: Num<1, 100_000> = 60, "N";
    /// Live connections one guest may have at once.
    limit sockets_per_guest: Num<1, 100> = 5, "N";
    /// Open connections (HTTP and live) the server holds at once.
    limit max_connections: Num<16, 1_000_000> = DEFAULT_MAX_CONNECTIONS, "N";
    /// Open connections one address (one device) may hold at once.
    limit connections_per_address: Num<1, 1_000_000> = DEFAULT_CONNECTIONS_PER_ADDRESS, "N";
    /// Extra name or address the jukebox answers to in the Host header (repeatable;
    /// comma-separated in the environment), e.g. party.example. Its mDNS name, its own
    /// addresses and localhost always are.
    config allow_host: Hosts = Vec::new(), "HOST";
    /// Distinct guests connected at once from one address (shared phones; the host and
    /// screens are not counted).
    limit guests_per_address: Num<1, 100_000> = 4, "N";
    /// New guest tokens per minute from all addresses together.
    limit guest_rate_total: Num<1, 1_000_000> = 120, "N";
    /// Seconds after which a guest token that never connected is deleted.
    limit unused_guest_ttl: Num<1, 86_400> = 600, "SECS";
    /// Live sessions one guest may keep; a new one replaces the guest's oldest detached one.
    limit sessions_per_guest: Num<1, 100> = 8, "N";
    /// Live sessions in all; a new one replaces the oldest detached one.
    limit max_sessions: Num<1, 1_000_000> = 5000, "N";
    /// Live connections (hellos) one guest may open in any 10 seconds.
    limit hello_rate: Num<1, 10_000> = 10, "N";
    /// Seconds a session that was never in use outlives its connection.
    limit unused_session_ttl: Num<1, 900> = 120, "SECS";
    /// Extra web origin allowed to open the live connection (repeatable; comma-separated in
    /// the environment), e.g. http://tv.example:3000. The jukebox's own origin always is.
    config allow_origin: Origins = Vec::new(), "ORIGIN";
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    config log: LogFilter = "info".into(), "FILTER";
    /// Serve the phone app from this folder instead of the copy built into the binary (for
    /// working on the app without rebuilding).
    config web_dir: AppDir, "DIR";
}

/// `--config`: read before the other keys, so it is a flag and a variable but not a file key.
fn config_arg() -> Arg {
    Arg::new("config")
        .long("config")
        .env("JUKEBOX_CONFIG")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help(format!(
            "TOML configuration file [default: {DEFAULT_CONFIG_FILE} if it exists]"
        ))
}

/// The flag of one entry: `--key-name`, `JUKEBOX_KEY_NAME`, and its help line from the doc.
fn arg<K: Kind>(
    key: &'static str,
    doc: &[&str],
    value_name: Option<&str>,
    default: Option<&K::Value>,
) -> Arg {
    let text = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    // As clap shows a doc comment: without its last period.
    let text = text.strip_suffix('.').unwrap_or(&text);
    <K::Raw as Raw>::arg(
        Arg::new(key)
            .long(key.replace('_', "-"))
            .env(format!("JUKEBOX_{}", key.to_uppercase()))
            .value_name(value_name.map_or_else(|| key.to_uppercase(), str::to_string))
            .hide_env_values(K::SECRET)
            .help(K::help(key, text, default)),
    )
}

/// A configuration value that is not acceptable: which key, why, and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for `{key}` (--{flag}, JUKEBOX_{env}): {reason}")]
    Invalid {
        key: &'static str,
        flag: String,
        env: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        flag: key.replace('_', "-"),
        env: key.to_uppercase(),
        reason: reason.into(),
    }
}

/// The value of `raw` for `key`, or the error naming the key.
fn check<K: Kind>(key: &'static str, raw: K::Raw) -> Result<K::Value, ConfigError> {
    K::check(key, raw).map_err(|reason| invalid(key, reason))
}

impl Config {
    /// Merge flags/environment (already in `args`) with the file and the defaults, then validate.
    pub fn load(args: &RunArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => RunArgs::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: &RunArgs, file: RunArgs) -> Result<Config, ConfigError> {
        let c = Self::merge_keys(args, file)?;
        if c.wifi_password.is_some() && c.wifi_ssid.is_none() {
            return Err(invalid(
                "wifi_password",
                "given without wifi_ssid; allowed only with the name of the Wi-Fi it opens",
            ));
        }
        let s = &c.settings;
        if s.volume > s.max_volume {
            return Err(invalid(
                "volume",
                format!(
                    "{} is above max_volume {}; allowed 0..={}",
                    s.volume, s.max_volume, s.max_volume
                ),
            ));
        }
        Ok(c)
    }
}

fn read_file(path: &Path) -> Result<RunArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<RunArgs, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl Config {
    /// The configuration a file with `text` gives when no flag or variable is set: what
    /// `load` does with it, read from memory.
    pub fn from_file_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::merge(&RunArgs::default(), parse_file(path, text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("jukebox").chain(args.iter().copied()))
            .expect("flags parse");
        Config::merge(&cli.run, RunArgs::default())
    }

    #[test]
    fn defaults_follow_the_product_rules() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.settings, Settings::default());
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.output, OutputSpec::Default);
        assert_eq!(c.name, "jukebox");
        assert!(!c.no_mdns && !c.demo);
        assert!(c.explicit_settings.is_empty());
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn bad_values_name_key_reason_and_range() {
        let table: &[(&[&str], &str)] = &[
            (&["--request-limit", "0"], "`request_limit`"),
            (&["--skip-percent", "101"], "allowed 1..=100"),
            (&["--listen", "nowhere"], "`listen`"),
            (&["--output", "speaker"], "`output`"),
            (&["--host-pin", "12ab"], "`host_pin`"),
            (&["--name", "bell\u{7}"], "`name`"),
            (&["--volume", "90", "--max-volume", "80"], "`volume`"),
            (&["--log", "=="], "`log`"),
            (&["--max-connections", "8"], "allowed 16..=1000000"),
            (
                &["--connections-per-address", "0"],
                "`connections_per_address`",
            ),
            (&["--allow-host", "party.example:8080"], "`allow_host`"),
            (&["--allow-host", "http://party.example"], "`allow_host`"),
            (&["--guest-rate=-1"], "allowed 1..=100000"),
        ];
        for (args, want) in table {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn file_keys_fill_what_flags_leave_out() {
        let f: RunArgs = toml::from_str(
            r#"music = "/m"
               listen = "127.0.0.1:80"
               request_limit = 5
               no_mdns = true"#,
        )
        .unwrap();
        let cli = Cli::try_parse_from(["jukebox", "--request-limit", "7"]).unwrap();
        let c = Config::merge(&cli.run, f).unwrap();
        assert_eq!(c.music, PathBuf::from("/m"));
        assert_eq!(c.listen.port(), 80);
        assert_eq!(c.settings.request_limit, 7, "flag beats file");
        assert!(c.no_mdns);
        assert_eq!(c.explicit_settings, vec!["request_limit"]);
        // An empty path gets past clap only in the file.
        let f: RunArgs = toml::from_str("db = \"\"").unwrap();
        let err = Config::merge(&RunArgs::default(), f).unwrap_err();
        assert!(err.to_string().contains("`db`"), "{err}");
    }

    #[test]
    fn connection_limits_and_hosts() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.limits.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            c.limits.connections_per_address,
            DEFAULT_CONNECTIONS_PER_ADDRESS
        );
        let c = parse(&[
            "--allow-host",
            "Party.Example,10.0.0.5,fd00::5",
            "--connections-per-address",
            "5000",
        ])
        .unwrap();
        assert_eq!(c.allow_host, ["party.example", "10.0.0.5", "[fd00::5]"]);
        assert_eq!(c.limits.connections_per_address, 5000);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        for text in ["musik = \"/m\"", "config = \"/other.toml\""] {
            let e = toml::from_str::<RunArgs>(text).unwrap_err();
            assert!(e.to_string().contains(&text[..5]), "{e}");
        }
    }

    /// Each live key is a party setting with a rule: given, it lands in `Settings` (and
    /// nowhere else) and is marked explicit; outside its rule, it is refused.
    #[test]
    fn every_live_key_is_a_party_setting_with_a_rule() {
        use crate::party::Allowed;
        for key in LIVE_KEYS {
            let rule = crate::party::allowed(key).unwrap_or_else(|| panic!("{key} has no rule"));
            let flag = format!("--{}", key.replace('_', "-"));
            let (good, bad, want): (Vec<String>, String, serde_json::Value) = match rule {
                Allowed::Range(lo, hi) => (
                    vec![lo.to_string()],
                    (hi + 1).to_string(),
                    serde_json::json!(lo),
                ),
                Allowed::Words(w) => (
                    w.iter().map(|w| w.to_string()).collect(),
                    "loudest".into(),
                    serde_json::json!(w[w.len() - 1]),
                ),
                Allowed::List => (
                    vec!["Beyoncé".into()],
                    "x".repeat(101),
                    serde_json::json!(["Beyoncé"]),
                ),
                Allowed::Folder => (
                    vec!["Wedding/".into()],
                    "../etc".into(),
                    serde_json::json!("Wedding"),
                ),
            };
            for g in &good {
                // A volume cap of 0 needs a volume of 0.
                let mut args = vec![flag.as_str(), g.as_str()];
                if *key == "max_volume" {
                    args.extend(["--volume", "0"]);
                }
                let c = parse(&args).unwrap_or_else(|e| panic!("{key} {g}: {e}"));
                assert!(c.explicit_settings.contains(key), "{key}");
                let mut got = serde_json::to_value(&c.settings).unwrap()[key].clone();
                // An on/off setting is a bool in `Settings`.
                if let Some(b) = got.as_bool() {
                    got = serde_json::json!(if b { "on" } else { "off" });
                }
                if *g == good[good.len() - 1] {
                    assert_eq!(got, want, "{key}");
                }
            }
            let err = parse(&[&flag, &bad]).unwrap_err();
            assert!(
                err.to_string().contains(&format!("allowed {rule}")),
                "{err}"
            );
        }
    }

    #[test]
    fn sound_settings_from_flags_and_file() {
        let c = parse(&["--loudness-lufs", "-18", "--normalize", "track"]).unwrap();
        assert_eq!(c.settings.loudness_lufs, -18);
        assert_eq!(c.settings.normalize, crate::party::Normalize::Track);
        let f: RunArgs = toml::from_str(
            r#"normalize = "off"
               loudness_lufs = -23
               crossfade_s = 6"#,
        )
        .unwrap();
        let c = Config::merge(&RunArgs::default(), f).unwrap();
        assert_eq!(c.settings.normalize, crate::party::Normalize::Off);
        assert_eq!((c.settings.loudness_lufs, c.settings.crossfade_s), (-23, 6));
        let f: RunArgs = toml::from_str("normalize = 3").unwrap();
        let err = Config::merge(&RunArgs::default(), f)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`normalize`") && err.contains("allowed auto"),
            "{err}"
        );
        let f: RunArgs = toml::from_str("crossfade_s = \"long\"").unwrap();
        let err = Config::merge(&RunArgs::default(), f)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`crossfade_s`") && err.contains("allowed 0..=12"),
            "{err}"
        );
        let defaults = Settings::default();
        assert_eq!(defaults.loudness_lufs, -14);
        assert_eq!(defaults.crossfade_s, 0);
        assert_eq!(defaults.normalize, crate::party::Normalize::Auto);
    }

    /// The Wi-Fi password reaches the Wi-Fi QR code and nothing else: not a refusal, not
    /// `Debug`, not `--help` (whose env values it hides, as the host PIN's).
    #[test]
    fn the_wifi_password_is_never_shown() {
        let c = parse(&["--wifi-ssid", "Party", "--wifi-password", "hunter22"]).unwrap();
        assert_eq!(c.wifi_ssid.as_deref(), Some("Party"));
        assert_eq!(
            c.wifi_password.as_ref().map(|p| p.expose()),
            Some("hunter22")
        );
        assert!(!format!("{c:?}").contains("hunter22"));
        assert!(!c.captive_portal);
        let err = parse(&["--wifi-ssid", "Party", "--wifi-password", "short1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`wifi_password`") && !err.contains("short1"),
            "{err}"
        );
        let err = parse(&["--wifi-password", "hunter22"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("without wifi_ssid"), "{err}");
        assert!(parse(&["--wifi-ssid", "P", "--wifi-password", &"ab12".repeat(16)]).is_ok());
        for bad in ["", "tab\there", &"x".repeat(33), &"é".repeat(17)] {
            let err = parse(&["--wifi-ssid", bad]).unwrap_err().to_string();
            assert!(err.contains("`wifi_ssid`"), "{bad:?}: {err}");
        }
        assert!(parse(&["--wifi-ssid", &"é".repeat(16)]).is_ok());
        let cmd = <Cli as clap::CommandFactory>::command();
        let hidden = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .is_some_and(|a| a.is_hide_env_values_set())
        };
        assert!(hidden("wifi_password") && hidden("host_pin"));
        assert!(!hidden("wifi_ssid"));
    }

    /// The README's configuration table has a row for every key.
    #[test]
    fn the_readme_lists_every_key() {
        let readme = include_str!("../../README.md");
        for key in KEYS {
            let row = format!("\n| `{key}` |");
            assert!(readme.contains(&row), "README.md lacks a row for {key}");
        }
    }
}
