//! Configuration: every key as a flag, as a `JUKEBOX_*` variable and in the TOML file, their
//! precedence, and bad values through the real binary (named key, reason, range, exit code 2).

mod common;

use std::process::Command;

use clap::Parser;
use jukebox::config::{Cli, Config, OutputSpec};

const CASES: &[(&str, &str, &str, &str)] = &[
    // key, flag value, env value, toml value
    ("music", "/srv/music", "/srv/music", "\"/srv/music\""),
    ("db", "/var/lib/j.db", "/var/lib/j.db", "\"/var/lib/j.db\""),
    (
        "listen",
        "127.0.0.1:9000",
        "127.0.0.1:9000",
        "\"127.0.0.1:9000\"",
    ),
    (
        "output",
        "wav:/tmp/o.wav",
        "wav:/tmp/o.wav",
        "\"wav:/tmp/o.wav\"",
    ),
    ("name", "garden", "garden", "\"garden\""),
    ("host-pin", "48213597", "48213597", "\"48213597\""),
    ("request-limit", "7", "7", "7"),
    ("no-repeat-minutes", "30", "30", "30"),
    ("artist-spacing", "4", "4", "4"),
    ("skip-min-votes", "3", "3", "3"),
    ("skip-percent", "40", "40", "40"),
    ("volume", "55", "55", "55"),
    ("max-volume", "90", "90", "90"),
    ("log", "debug", "debug", "\"debug\""),
    ("max-connections", "9000", "9000", "9000"),
    ("connections-per-address", "64", "64", "64"),
    (
        "allow-host",
        "party.example",
        "party.example",
        "[\"party.example\"]",
    ),
    (
        "web-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/web"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/web"),
        concat!("\"", env!("CARGO_MANIFEST_DIR"), "/web\""),
    ),
];

fn check(key: &str, c: &Config) -> bool {
    match key {
        "music" => c.music == std::path::Path::new("/srv/music"),
        "db" => c.db == std::path::Path::new("/var/lib/j.db"),
        "listen" => c.listen.to_string() == "127.0.0.1:9000",
        "output" => c.output == OutputSpec::Wav("/tmp/o.wav".into()),
        "name" => c.name == "garden",
        "host-pin" => c.host_pin.as_deref() == Some("48213597"),
        "request-limit" => c.settings.request_limit == 7,
        "no-repeat-minutes" => c.settings.no_repeat_minutes == 30,
        "artist-spacing" => c.settings.artist_spacing == 4,
        "skip-min-votes" => c.settings.skip_min_votes == 3,
        "skip-percent" => c.settings.skip_percent == 40,
        "volume" => c.settings.volume == 55,
        "max-volume" => c.settings.max_volume == 90,
        "log" => c.log == "debug",
        "max-connections" => c.limits.max_connections == 9000,
        "connections-per-address" => c.limits.connections_per_address == 64,
        "allow-host" => c.allow_host == ["party.example"],
        "web-dir" => {
            c.web_dir.as_deref()
                == Some(std::path::Path::new(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/web"
                )))
        }
        _ => unreachable!(),
    }
}

fn load(args: &[String]) -> Config {
    let cli =
        Cli::try_parse_from(std::iter::once("jukebox".to_string()).chain(args.iter().cloned()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    Config::load(&cli.run).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

// One test, run in order, because environment variables are shared by the whole process.
#[test]
fn every_key_as_flag_env_and_file() {
    let dir = common::tempdir();
    for (key, flag, env, toml) in CASES {
        // Flag.
        let c = load(&[format!("--{key}"), flag.to_string()]);
        assert!(check(key, &c), "flag --{key}");
        // File.
        let file = dir.path().join(format!("{key}.toml"));
        std::fs::write(&file, format!("{} = {toml}\n", key.replace('-', "_"))).unwrap();
        let c = load(&["--config".into(), file.display().to_string()]);
        assert!(check(key, &c), "file key {key}");
        // Environment.
        let var = format!("JUKEBOX_{}", key.replace('-', "_").to_uppercase());
        std::env::set_var(&var, env);
        let c = load(&[]);
        assert!(check(key, &c), "env {var}");
        std::env::remove_var(&var);
    }
    // Booleans: flag, env and file.
    assert!(load(&["--no-mdns".into()]).no_mdns);
    assert!(load(&["--demo".into()]).demo);
    let file = dir.path().join("b.toml");
    std::fs::write(&file, "no_mdns = true\ndemo = true\n").unwrap();
    let c = load(&["--config".into(), file.display().to_string()]);
    assert!(c.no_mdns && c.demo);
    std::env::set_var("JUKEBOX_NO_MDNS", "true");
    std::env::set_var("JUKEBOX_DEMO", "1");
    let c = load(&[]);
    assert!(c.no_mdns && c.demo);
    std::env::remove_var("JUKEBOX_NO_MDNS");
    std::env::remove_var("JUKEBOX_DEMO");
    // Precedence.
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "request_limit = 4\n").unwrap();
    std::env::set_var("JUKEBOX_REQUEST_LIMIT", "5");
    let c = load(&["--config".into(), file.display().to_string()]);
    assert_eq!(c.settings.request_limit, 5, "env beats file");
    let c = load(&[
        "--config".into(),
        file.display().to_string(),
        "--request-limit".into(),
        "6".into(),
    ]);
    assert_eq!(c.settings.request_limit, 6, "flag beats env");
    std::env::remove_var("JUKEBOX_REQUEST_LIMIT");
    // The config file itself from the environment.
    std::env::set_var("JUKEBOX_CONFIG", file.display().to_string());
    assert_eq!(load(&[]).settings.request_limit, 4);
    std::env::remove_var("JUKEBOX_CONFIG");
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).env_remove("JUKEBOX_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_name_the_key_the_reason_and_the_range_and_exit_2() {
    let dir = common::tempdir();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "skip_percent = 250\n").unwrap();
    let unknown_file = dir.path().join("unknown.toml");
    std::fs::write(&unknown_file, "musik = \"/m\"\n").unwrap();
    let broken_file = dir.path().join("broken.toml");
    std::fs::write(&broken_file, "music = \n").unwrap();
    let bad = bad_file.display().to_string();
    let unknown = unknown_file.display().to_string();
    let broken = broken_file.display().to_string();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let table: Vec<Case> = vec![
        (
            vec!["--request-limit", "0"],
            vec![],
            vec!["request_limit", "allowed 1..=50"],
        ),
        (
            vec!["--request-limit", "many"],
            vec![],
            vec!["request-limit", "many"],
        ),
        (
            vec![],
            vec![("JUKEBOX_SKIP_PERCENT", "0")],
            vec!["skip_percent", "allowed 1..=100"],
        ),
        (
            vec!["--config", &bad],
            vec![],
            vec!["skip_percent", "250", "1..=100"],
        ),
        (vec!["--config", &unknown], vec![], vec!["musik"]),
        (vec!["--config", &broken], vec![], vec!["broken.toml"]),
        (
            vec!["--config", "/nonexistent.toml"],
            vec![],
            vec!["/nonexistent.toml"],
        ),
        (
            vec!["--output", "speakers"],
            vec![],
            vec![
                "output",
                "default, alsa:NAME, wav:PATH, snapcast:PATH, null",
            ],
        ),
        (vec!["--listen", "80"], vec![], vec!["listen", "ADDR:PORT"]),
        (
            vec!["--host-pin", "12"],
            vec![],
            vec!["host_pin", "6 to 12 digits"],
        ),
        (
            vec!["--host-pin", "12345"],
            vec![],
            vec!["host_pin", "6 to 12 digits"],
        ),
        (
            vec!["--login-budget", "0"],
            vec![],
            vec!["login_budget", "1..=10000"],
        ),
        (
            vec!["--host-token-hours", "721"],
            vec![],
            vec!["host_token_hours", "1..=720"],
        ),
        (vec!["--name= padded"], vec![], vec!["name", "party name"]),
        (vec!["--volume", "101"], vec![], vec!["volume", "0..=100"]),
        (vec!["--no-such-flag"], vec![], vec!["--no-such-flag"]),
        (
            vec!["export", "--db", "x.db", "--format", "xml"],
            vec![],
            vec!["xml", "m3u"],
        ),
    ];
    for (args, env, wants) in table {
        let (code, _, err) = run(&args, &env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        for w in wants {
            assert!(err.contains(w), "{args:?} {env:?}: missing {w:?} in {err}");
        }
    }
}

#[test]
fn help_explains_every_key_with_its_default() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for (key, ..) in CASES {
        assert!(out.contains(&format!("--{key}")), "--help lacks --{key}");
        assert!(
            out.contains(&format!("JUKEBOX_{}", key.replace('-', "_").to_uppercase())),
            "--help lacks the env var of {key}"
        );
    }
    for flag in ["--config", "--no-mdns", "--demo", "export", "devices"] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
    for default in [
        "[default: 3]",
        "[default: 60]",
        "[default: 50]",
        "[default: 0.0.0.0:8080]",
    ] {
        assert!(out.contains(default), "--help lacks {default}");
    }
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn devices_lists_the_outputs() {
    let (code, out, _) = run(&["devices"], &[]);
    assert_eq!(code, 0);
    for spec in ["default", "null", "wav:PATH", "snapcast:PATH"] {
        assert!(out.lines().any(|l| l.starts_with(spec)), "{out}");
    }
}
