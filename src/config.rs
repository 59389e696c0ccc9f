//! Configuration: command-line flags, `JUKEBOX_*` environment variables and the TOML file,
//! merged into one validated [`Config`] at start-up. Precedence: flag > environment > file >
//! built-in default. Nothing reads configuration after start-up; the party settings that the
//! host can change live are copied into the hub and persisted there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::party::Settings;

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
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub gap_hours: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    M3u,
    Csv,
}

/// Flags of the main command. Every field is optional here so that the file and the defaults
/// can fill what the command line and environment leave out.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// TOML configuration file [default: /etc/jukebox/jukebox.toml if it exists].
    #[arg(long, env = "JUKEBOX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder of music to play, scanned recursively [default: ./music].
    #[arg(long, env = "JUKEBOX_MUSIC", value_name = "DIR")]
    pub music: Option<PathBuf>,
    /// SQLite database holding the library index, queue, votes, likes and history
    /// [default: ./jukebox.db].
    #[arg(long, env = "JUKEBOX_DB", value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Address and port to serve phones on [default: 0.0.0.0:8080].
    #[arg(long, env = "JUKEBOX_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Audio output: default | alsa:NAME | wav:PATH | null [default: default].
    #[arg(long, env = "JUKEBOX_OUTPUT", value_name = "SPEC")]
    pub output: Option<String>,
    /// Party name shown to guests and advertised over mDNS; phones reach NAME.local (as a host
    /// label: "Mia's party" is mias-party.local) [default: jukebox].
    #[arg(long, env = "JUKEBOX_NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// Host PIN, 6 to 12 digits [default: 8 digits generated on first start and printed in the
    /// log once; `jukebox reset-pin` makes a new one].
    #[arg(long, env = "JUKEBOX_HOST_PIN", value_name = "PIN")]
    pub host_pin: Option<String>,
    /// Do not advertise over mDNS.
    #[arg(long, env = "JUKEBOX_NO_MDNS", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub no_mdns: Option<bool>,
    /// Generate a small tagged demo library and play it (ignores --music).
    #[arg(long, env = "JUKEBOX_DEMO", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub demo: Option<bool>,
    /// Most pending requests one guest may have, 1..=50 [default: 3].
    #[arg(long, env = "JUKEBOX_REQUEST_LIMIT", value_name = "N")]
    pub request_limit: Option<i64>,
    /// Minutes before a played track may be requested or auto-played again, 0..=1440 [default: 60].
    #[arg(long, env = "JUKEBOX_NO_REPEAT_MINUTES", value_name = "MIN")]
    pub no_repeat_minutes: Option<i64>,
    /// A request is refused when its artist is among the last N tracks played, 0..=20 [default: 2].
    #[arg(long, env = "JUKEBOX_ARTIST_SPACING", value_name = "N")]
    pub artist_spacing: Option<i64>,
    /// Skip votes always needed at least, 1..=100 [default: 2].
    #[arg(long, env = "JUKEBOX_SKIP_MIN_VOTES", value_name = "N")]
    pub skip_min_votes: Option<i64>,
    /// Percentage of connected guests whose skip votes skip a track, 1..=100 [default: 50].
    #[arg(long, env = "JUKEBOX_SKIP_PERCENT", value_name = "PCT")]
    pub skip_percent: Option<i64>,
    /// Volume at first start, 0..=100 [default: 70].
    #[arg(long, env = "JUKEBOX_VOLUME", value_name = "PCT")]
    pub volume: Option<i64>,
    /// Highest volume anyone may set, 0..=100 [default: 100].
    #[arg(long, env = "JUKEBOX_MAX_VOLUME", value_name = "PCT")]
    pub max_volume: Option<i64>,
    /// New guest tokens per minute from one address, 1..=100000 [default: 30].
    #[arg(long, env = "JUKEBOX_GUEST_RATE", value_name = "N")]
    pub guest_rate: Option<i64>,
    /// Host PIN attempts per minute from one address, 1..=1000 [default: 5].
    #[arg(long, env = "JUKEBOX_LOGIN_RATE", value_name = "N")]
    pub login_rate: Option<i64>,
    /// Wrong host PINs from all addresses together, within --login-budget-seconds, before
    /// every host login (the right PIN too) waits 1 s, doubling with each further wrong PIN up
    /// to 5 minutes, 1..=10000 [default: 20].
    #[arg(long, env = "JUKEBOX_LOGIN_BUDGET", value_name = "N")]
    pub login_budget: Option<i64>,
    /// The window of --login-budget in seconds, 1..=86400 [default: 3600].
    #[arg(long, env = "JUKEBOX_LOGIN_BUDGET_SECONDS", value_name = "SECS")]
    pub login_budget_seconds: Option<i64>,
    /// Hours a host login lasts before the host must enter the PIN again, 1..=720 [default: 12].
    #[arg(long, env = "JUKEBOX_HOST_TOKEN_HOURS", value_name = "HOURS")]
    pub host_token_hours: Option<i64>,
    /// Live requests per second one connection may send, 1..=10000 [default: 20].
    #[arg(long, env = "JUKEBOX_WS_RATE", value_name = "N")]
    pub ws_rate: Option<i64>,
    /// Burst of live requests above that rate, 1..=100000 [default: 60].
    #[arg(long, env = "JUKEBOX_WS_BURST", value_name = "N")]
    pub ws_burst: Option<i64>,
    /// Live connections one guest may have at once, 1..=100 [default: 5].
    #[arg(long, env = "JUKEBOX_SOCKETS_PER_GUEST", value_name = "N")]
    pub sockets_per_guest: Option<i64>,
    /// Open connections (HTTP and live) the server holds at once, 16..=1000000 [default: 4096].
    #[arg(long, env = "JUKEBOX_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<i64>,
    /// Open connections one address (one device) may hold at once, 1..=1000000 [default: 32].
    #[arg(long, env = "JUKEBOX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    pub connections_per_address: Option<i64>,
    /// Extra name or address the jukebox answers to in the Host header (repeatable;
    /// comma-separated in the environment), e.g. party.example. Its mDNS name, its own
    /// addresses and localhost always are.
    #[arg(
        long,
        env = "JUKEBOX_ALLOW_HOST",
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub allow_host: Option<Vec<String>>,
    /// Distinct guests connected at once from one address (shared phones; the host and
    /// screens are not counted), 1..=100000 [default: 4].
    #[arg(long, env = "JUKEBOX_GUESTS_PER_ADDRESS", value_name = "N")]
    pub guests_per_address: Option<i64>,
    /// New guest tokens per minute from all addresses together, 1..=1000000 [default: 120].
    #[arg(long, env = "JUKEBOX_GUEST_RATE_TOTAL", value_name = "N")]
    pub guest_rate_total: Option<i64>,
    /// Seconds after which a guest token that never connected is deleted, 1..=86400
    /// [default: 600].
    #[arg(long, env = "JUKEBOX_UNUSED_GUEST_TTL", value_name = "SECS")]
    pub unused_guest_ttl: Option<i64>,
    /// Live sessions one guest may keep; a new one replaces the guest's oldest detached one,
    /// 1..=100 [default: 8].
    #[arg(long, env = "JUKEBOX_SESSIONS_PER_GUEST", value_name = "N")]
    pub sessions_per_guest: Option<i64>,
    /// Live sessions in all; a new one replaces the oldest detached one, 1..=1000000
    /// [default: 5000].
    #[arg(long, env = "JUKEBOX_MAX_SESSIONS", value_name = "N")]
    pub max_sessions: Option<i64>,
    /// Live connections (hellos) one guest may open in any 10 seconds, 1..=10000
    /// [default: 10].
    #[arg(long, env = "JUKEBOX_HELLO_RATE", value_name = "N")]
    pub hello_rate: Option<i64>,
    /// Seconds a session that was never in use outlives its connection, 1..=900
    /// [default: 120].
    #[arg(long, env = "JUKEBOX_UNUSED_SESSION_TTL", value_name = "SECS")]
    pub unused_session_ttl: Option<i64>,
    /// Extra web origin allowed to open the live connection (repeatable; comma-separated in
    /// the environment), e.g. http://tv.example:3000. The jukebox's own origin always is.
    #[arg(
        long,
        env = "JUKEBOX_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Option<Vec<String>>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive) [default: info].
    #[arg(long, env = "JUKEBOX_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Serve the phone app from this folder instead of the copy built into the binary (for
    /// working on the app without rebuilding).
    #[arg(long, env = "JUKEBOX_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
}

/// The keys accepted in the TOML file: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    music: Option<PathBuf>,
    db: Option<PathBuf>,
    listen: Option<String>,
    output: Option<String>,
    name: Option<String>,
    host_pin: Option<String>,
    no_mdns: Option<bool>,
    demo: Option<bool>,
    request_limit: Option<i64>,
    no_repeat_minutes: Option<i64>,
    artist_spacing: Option<i64>,
    skip_min_votes: Option<i64>,
    skip_percent: Option<i64>,
    volume: Option<i64>,
    max_volume: Option<i64>,
    allow_origin: Option<Vec<String>>,
    guest_rate: Option<i64>,
    login_rate: Option<i64>,
    login_budget: Option<i64>,
    login_budget_seconds: Option<i64>,
    host_token_hours: Option<i64>,
    ws_rate: Option<i64>,
    ws_burst: Option<i64>,
    sockets_per_guest: Option<i64>,
    max_connections: Option<i64>,
    connections_per_address: Option<i64>,
    allow_host: Option<Vec<String>>,
    guests_per_address: Option<i64>,
    guest_rate_total: Option<i64>,
    unused_guest_ttl: Option<i64>,
    sessions_per_guest: Option<i64>,
    max_sessions: Option<i64>,
    hello_rate: Option<i64>,
    unused_session_ttl: Option<i64>,
    log: Option<String>,
    web_dir: Option<PathBuf>,
}

/// Where the audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// The system's default ALSA device; falls back to `Null` while it is missing.
    Default,
    /// A named ALSA device (as listed by `jukebox devices`).
    Alsa(String),
    /// The exact PCM the device would get, paced in real time, into a WAV file.
    Wav(PathBuf),
    /// Paced like a device, discarded.
    Null,
}

impl std::fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputSpec::Default => write!(f, "default"),
            OutputSpec::Alsa(n) => write!(f, "alsa:{n}"),
            OutputSpec::Wav(p) => write!(f, "wav:{}", p.display()),
            OutputSpec::Null => write!(f, "null"),
        }
    }
}

impl std::str::FromStr for OutputSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(OutputSpec::Default),
            "null" => Ok(OutputSpec::Null),
            _ => {
                if let Some(name) = s.strip_prefix("alsa:") {
                    if name.is_empty() {
                        return Err(
                            "alsa: needs a device name, e.g. alsa:hw:CARD=Headphones".into()
                        );
                    }
                    Ok(OutputSpec::Alsa(name.to_string()))
                } else if let Some(path) = s.strip_prefix("wav:") {
                    if path.is_empty() {
                        return Err("wav: needs a file path, e.g. wav:/tmp/out.wav".into());
                    }
                    Ok(OutputSpec::Wav(PathBuf::from(path)))
                } else {
                    Err(format!(
                        "unknown output {s:?}; allowed: default, alsa:NAME, wav:PATH, null"
                    ))
                }
            }
        }
    }
}

/// Open connections at once by default: the 3,000 phones the jukebox is measured with (each
/// holds one websocket) plus room for the page loads and cover art of those arriving.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;
/// Open connections one address may hold by default. A phone holds one websocket and, while a
/// page loads, up to six HTTP connections (a browser's limit per host); 32 is four phones
/// sharing one address (a NAT, a shared laptop), and far from the thousand sockets one laptop
/// could otherwise hold.
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: u32 = 32;

/// The validated configuration of a running jukebox.
#[derive(Debug, Clone)]
pub struct Config {
    pub music: PathBuf,
    pub db: PathBuf,
    pub listen: SocketAddr,
    pub output: OutputSpec,
    pub name: String,
    pub host_pin: Option<String>,
    pub mdns: bool,
    pub demo: bool,
    /// Party rules used on first start; afterwards the persisted (host-edited) ones win,
    /// except for keys set explicitly, which are applied again at every start.
    pub settings: Settings,
    /// Which settings keys were given explicitly (flag, environment or file).
    pub explicit_settings: Vec<&'static str>,
    /// Web origins besides the jukebox's own that may open the live connection.
    pub allow_origin: Vec<String>,
    /// Host names besides the jukebox's own that requests may name (lower case).
    pub allow_host: Vec<String>,
    /// The phone app from disk instead of the embedded copy.
    pub web_dir: Option<PathBuf>,
    pub limits: Limits,
    pub log: String,
}

/// Abuse limits of the live server (defaults no honest guest meets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub guest_rate: u32,
    pub login_rate: u32,
    /// Wrong PINs from all addresses within `login_budget_seconds` before logins wait.
    pub login_budget: u32,
    pub login_budget_seconds: u32,
    pub host_token_hours: u32,
    pub ws_rate: u32,
    pub ws_burst: u32,
    pub sockets_per_guest: u32,
    /// Open connections in total, and from one address (one device, `crate::addr::device`).
    pub max_connections: u32,
    pub connections_per_address: u32,
    pub guests_per_address: u32,
    pub guest_rate_total: u32,
    /// Seconds.
    pub unused_guest_ttl: u32,
    pub sessions_per_guest: u32,
    pub max_sessions: u32,
    pub hello_rate: u32,
    /// Seconds.
    pub unused_session_ttl: u32,
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

fn ranged(key: &'static str, v: i64) -> Result<u32, ConfigError> {
    crate::party::check_setting(key, v).map_err(|reason| invalid(key, reason))
}

impl Config {
    /// Merge flags/environment (already in `args`) with the file and the defaults, then validate.
    pub fn load(args: &RunArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    fn merge(a: &RunArgs, f: FileConfig) -> Result<Config, ConfigError> {
        let defaults = Settings::default();
        let mut explicit = Vec::new();
        let mut setting = |key: &'static str,
                           cli: Option<i64>,
                           file: Option<i64>,
                           default: u32|
         -> Result<u32, ConfigError> {
            match cli.or(file) {
                Some(v) => {
                    explicit.push(key);
                    ranged(key, v)
                }
                None => Ok(default),
            }
        };
        let settings = Settings {
            request_limit: setting(
                "request_limit",
                a.request_limit,
                f.request_limit,
                defaults.request_limit,
            )?,
            no_repeat_minutes: setting(
                "no_repeat_minutes",
                a.no_repeat_minutes,
                f.no_repeat_minutes,
                defaults.no_repeat_minutes,
            )?,
            artist_spacing: setting(
                "artist_spacing",
                a.artist_spacing,
                f.artist_spacing,
                defaults.artist_spacing,
            )?,
            skip_min_votes: setting(
                "skip_min_votes",
                a.skip_min_votes,
                f.skip_min_votes,
                defaults.skip_min_votes,
            )?,
            skip_percent: setting(
                "skip_percent",
                a.skip_percent,
                f.skip_percent,
                defaults.skip_percent,
            )?,
            volume: setting("volume", a.volume, f.volume, defaults.volume)?,
            max_volume: setting(
                "max_volume",
                a.max_volume,
                f.max_volume,
                defaults.max_volume,
            )?,
            requests_paused: defaults.requests_paused,
        };
        if settings.volume > settings.max_volume {
            return Err(invalid(
                "volume",
                format!(
                    "{} is above max_volume {}; allowed 0..={}",
                    settings.volume, settings.max_volume, settings.max_volume
                ),
            ));
        }

        let listen_s = a
            .listen
            .clone()
            .or(f.listen)
            .unwrap_or_else(|| "0.0.0.0:8080".into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_s:?} is not ADDR:PORT; e.g. 0.0.0.0:8080 or [::]:80"),
            )
        })?;

        let output_s = a
            .output
            .clone()
            .or(f.output)
            .unwrap_or_else(|| "default".into());
        let output: OutputSpec = output_s.parse().map_err(|e: String| invalid("output", e))?;

        let name = a
            .name
            .clone()
            .or(f.name)
            .unwrap_or_else(|| "jukebox".into());
        validate_name(&name)?;

        let host_pin = a.host_pin.clone().or(f.host_pin);
        if let Some(pin) = &host_pin {
            if !(crate::login::MIN_DIGITS..=12).contains(&pin.len())
                || !pin.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid(
                    "host_pin",
                    "must be 6 to 12 digits (0-9); allowed e.g. 48213597",
                ));
            }
        }

        let log = a.log.clone().or(f.log).unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(invalid(
                "log",
                format!("{log:?} is not a log filter; allowed error, warn, info, debug, trace"),
            ));
        }

        let music = a
            .music
            .clone()
            .or(f.music)
            .unwrap_or_else(|| PathBuf::from("music"));
        let db =
            a.db.clone()
                .or(f.db)
                .unwrap_or_else(|| PathBuf::from("jukebox.db"));
        if db.as_os_str().is_empty() {
            return Err(invalid("db", "empty path; allowed: a file path"));
        }

        let allow_origin = a
            .allow_origin
            .clone()
            .or(f.allow_origin)
            .unwrap_or_default();
        for o in &allow_origin {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && o.len() <= 256;
            if !ok {
                return Err(invalid(
                    "allow_origin",
                    format!(
                        "{o:?} is not an origin; allowed e.g. http://tv.example:3000 (no path)"
                    ),
                ));
            }
        }

        let limit = |key: &'static str, v: Option<i64>, default: u32, hi: i64| match v {
            None => Ok(default),
            Some(v) if (1..=hi).contains(&v) => Ok(v as u32),
            Some(v) => Err(invalid(
                key,
                format!("{v} is out of range; allowed 1..={hi}"),
            )),
        };
        let limits = Limits {
            guest_rate: limit("guest_rate", a.guest_rate.or(f.guest_rate), 30, 100_000)?,
            login_rate: limit("login_rate", a.login_rate.or(f.login_rate), 5, 1000)?,
            login_budget: limit(
                "login_budget",
                a.login_budget.or(f.login_budget),
                20,
                10_000,
            )?,
            login_budget_seconds: limit(
                "login_budget_seconds",
                a.login_budget_seconds.or(f.login_budget_seconds),
                3600,
                86_400,
            )?,
            host_token_hours: limit(
                "host_token_hours",
                a.host_token_hours.or(f.host_token_hours),
                12,
                720,
            )?,
            ws_rate: limit("ws_rate", a.ws_rate.or(f.ws_rate), 20, 10_000)?,
            ws_burst: limit("ws_burst", a.ws_burst.or(f.ws_burst), 60, 100_000)?,
            sockets_per_guest: limit(
                "sockets_per_guest",
                a.sockets_per_guest.or(f.sockets_per_guest),
                5,
                100,
            )?,
            max_connections: limit(
                "max_connections",
                a.max_connections.or(f.max_connections),
                DEFAULT_MAX_CONNECTIONS,
                1_000_000,
            )?,
            connections_per_address: limit(
                "connections_per_address",
                a.connections_per_address.or(f.connections_per_address),
                DEFAULT_CONNECTIONS_PER_ADDRESS,
                1_000_000,
            )?,
            guests_per_address: limit(
                "guests_per_address",
                a.guests_per_address.or(f.guests_per_address),
                4,
                100_000,
            )?,
            guest_rate_total: limit(
                "guest_rate_total",
                a.guest_rate_total.or(f.guest_rate_total),
                120,
                1_000_000,
            )?,
            unused_guest_ttl: limit(
                "unused_guest_ttl",
                a.unused_guest_ttl.or(f.unused_guest_ttl),
                600,
                86_400,
            )?,
            sessions_per_guest: limit(
                "sessions_per_guest",
                a.sessions_per_guest.or(f.sessions_per_guest),
                8,
                100,
            )?,
            max_sessions: limit(
                "max_sessions",
                a.max_sessions.or(f.max_sessions),
                5000,
                1_000_000,
            )?,
            hello_rate: limit("hello_rate", a.hello_rate.or(f.hello_rate), 10, 10_000)?,
            unused_session_ttl: limit(
                "unused_session_ttl",
                a.unused_session_ttl.or(f.unused_session_ttl),
                120,
                900,
            )?,
        };
        if limits.max_connections < 16 {
            return Err(invalid(
                "max_connections",
                format!(
                    "{} is out of range; allowed 16..=1000000",
                    limits.max_connections
                ),
            ));
        }

        let mut allow_host = Vec::new();
        for h in a.allow_host.clone().or(f.allow_host).unwrap_or_default() {
            match host_entry(&h) {
                Some(h) => allow_host.push(h),
                None => {
                    return Err(invalid(
                        "allow_host",
                        format!(
                            "{h:?} is not a host name or address; allowed e.g. party.example, \
                             10.0.0.5 or [fd00::5] (no port, no scheme)"
                        ),
                    ))
                }
            }
        }

        let web_dir = a.web_dir.clone().or(f.web_dir);
        if let Some(dir) = &web_dir {
            if !dir.join("index.html").is_file() {
                return Err(invalid(
                    "web_dir",
                    format!(
                        "{} has no index.html; allowed: a folder like the source's web/",
                        dir.display()
                    ),
                ));
            }
        }

        Ok(Config {
            limits,
            allow_origin,
            allow_host,
            web_dir,
            music,
            db,
            listen,
            output,
            name,
            host_pin,
            mdns: !a.no_mdns.or(f.no_mdns).unwrap_or(false),
            demo: a.demo.or(f.demo).unwrap_or(false),
            settings,
            explicit_settings: explicit,
            log,
        })
    }
}

/// An `allow_host` entry as the Host header would carry it (lower case; IPv6 in brackets).
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

/// The party's name, shown to guests ("Mia's birthday"); its host label for mDNS is derived
/// from it (`mias-birthday.local`, see `mdns::label_for`).
fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 63
        && !name.chars().any(char::is_control)
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("{name:?} is not a party name; allowed 1..=63 characters, no control characters, no spaces at either end"),
        ))
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("jukebox").chain(args.iter().copied()))
            .expect("flags parse");
        Config::merge(&cli.run, FileConfig::default())
    }

    #[test]
    fn defaults_follow_the_product_rules() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.settings, Settings::default());
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.output, OutputSpec::Default);
        assert_eq!(c.name, "jukebox");
        assert!(c.mdns && !c.demo);
        assert!(c.explicit_settings.is_empty());
    }

    #[test]
    fn output_specs() {
        let table = [
            ("default", Ok(OutputSpec::Default)),
            ("null", Ok(OutputSpec::Null)),
            ("alsa:hw:0,0", Ok(OutputSpec::Alsa("hw:0,0".into()))),
            ("wav:/tmp/x.wav", Ok(OutputSpec::Wav("/tmp/x.wav".into()))),
            ("alsa:", Err(())),
            ("wav:", Err(())),
            ("speaker", Err(())),
        ];
        for (input, want) in table {
            let got = input.parse::<OutputSpec>().map_err(|_| ());
            assert_eq!(got, want, "{input}");
        }
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
        ];
        for (args, want) in table {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn file_keys_fill_what_flags_leave_out() {
        let f: FileConfig = toml::from_str(
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
        assert!(!c.mdns);
        assert_eq!(c.explicit_settings, vec!["request_limit"]);
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
        let e = toml::from_str::<FileConfig>("musik = \"/m\"").unwrap_err();
        assert!(e.to_string().contains("musik"));
    }
}
