//! jukebox: a party jukebox appliance. One binary plays the music in a folder; guests request,
//! vote, like and vote to skip from their phones; the host moderates.
//!
//! Layout (one job per module):
//! - [`config`]: flags + environment + TOML file → one validated `Config`.
//! - [`library`]: scans the music folder and reads tags (blocking, on its own thread).
//! - [`store`]: the only owner of the SQLite connection, on its own thread; group commits.
//! - [`ids`]: the typed row ids (play, queue entry, track, guest) and their wire spelling.
//! - [`party`]: the party rules as pure functions (order, fairness, admission, skip, auto-DJ).
//! - [`hub`]: the single owner of live state; applies rules, persists, then announces.
//! - [`loudness`]: loudness levelling: what is known of a track's loudness, the gain to the target.
//! - [`player`]: the audio thread (rodio): outputs (device, WAV file, null), decode, engine.
//! - [`demo`]: a generated, tagged demo library.
//! - [`export`]: tonight's plays as M3U or CSV.
//! - [`addr`]: how clients are told apart by address (one device; one attacker's network).
//! - [`login`]: the host PIN (hashed; limits per address and across all) and host sessions.
//! - [`protocol`]: the live protocol's JSON on the wire: client frames parsed into typed
//!   commands, the hub's changes and replies encoded. No logic.
//! - [`server`]: the live server: websocket sessions, the JSON API, the phone app.
//! - [`rooms`]: snapserver's rooms (its control port) for the host page.
//! - [`mdns`]: `jukebox.local` and the service advertisements.
//! - [`mpd`]: the MPD protocol front end, for MPD's clients.
//! - [`notify`]: systemd readiness, status and watchdog.
//! - [`app`]: start-up and orderly shutdown.
//! - [`logging`]: the log filter: our lines at the level asked for, dependencies' at WARN.
//! - [`chain`]: an error and its causes on one line.
//! - [`untrusted`]: every reader of outside input, one function each, for the fuzz targets.

pub mod addr;
pub mod app;
pub mod chain;
pub mod config;
pub mod demo;
pub mod export;
pub mod hub;
pub mod ids;
pub mod library;
pub mod logging;
pub mod login;
pub mod loudness;
pub mod mdns;
pub mod mpd;
pub mod notify;
pub mod party;
pub mod player;
pub mod protocol;
pub mod rooms;
pub mod server;
pub mod snapcast_plugin;
pub mod store;
pub mod untrusted;
