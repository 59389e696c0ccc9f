//! The `jukebox` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use jukebox::config::{Cli, Command, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Devices) => {
            for (spec, desc) in jukebox::player::devices() {
                println!("{spec:<40} {desc}");
            }
            ExitCode::SUCCESS
        }
        Some(Command::Export(args)) => {
            let mut out = std::io::stdout().lock();
            match jukebox::export::run(&args.db, args.format, args.gap_hours, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("jukebox export: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::SnapcastPlugin(args)) => jukebox::snapcast_plugin::run(args),
        Some(Command::ResetPin(args)) => {
            let done =
                jukebox::store::Db::open(&args.db).and_then(|db| jukebox::login::reset_pin(&db));
            match done {
                Ok((pin, revoked)) => {
                    println!("new host PIN: {pin}");
                    println!(
                        "{revoked} host logins were logged out. Start the jukebox again to use \
                         it (a configured host_pin / --host-pin still wins over it)."
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("jukebox reset-pin: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let config = match Config::load(&cli.run) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("jukebox: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&config.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("jukebox: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(jukebox::app::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(filter: &str) {
    // Plain lines without colours or timestamps when journald adds its own.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(jukebox::logging::filter(filter))
        .with_target(false)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
