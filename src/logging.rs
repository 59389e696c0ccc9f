//! The log filter. The `log` setting is written for the jukebox's own lines: a bare level such
//! as `info` or `debug` sets ours, while the libraries under us (symphonia announces every Ogg
//! stream at INFO, hyper and mdns-sd are chatty at DEBUG) stay at WARN unless a directive names
//! them (`log = "debug,symphonia=info"`). Directives are otherwise tracing's own, kept as
//! written, so an explicit filter still means what it says.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// Every log target of this package (the library's modules and the binary) starts with it.
const OURS: &str = "jukebox";
/// The most a dependency logs unless the filter names it.
const DEPENDENCIES: LevelFilter = LevelFilter::WARN;

/// The directives for `spec`, as one tracing filter string.
pub fn directives(spec: &str) -> String {
    let mut ours = None;
    let mut named_ours = false;
    let mut rest = Vec::new();
    for piece in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match piece.parse::<LevelFilter>() {
            Ok(level) => ours = Some(level),
            Err(_) => {
                let target = piece.split(['=', '[']).next().unwrap_or_default();
                named_ours |= target == OURS;
                rest.push(piece);
            }
        }
    }
    let Some(level) = ours else {
        // No bare level: only what the directives name logs, as tracing has it.
        return rest.join(",");
    };
    let mut out = vec![level.min(DEPENDENCIES).to_string()];
    if !named_ours {
        out.push(format!("{OURS}={level}"));
    }
    out.extend(rest.iter().map(|p| p.to_string()));
    out.join(",")
}

/// The filter for the `log` setting (already checked to be a valid filter by the config).
pub fn filter(spec: &str) -> EnvFilter {
    EnvFilter::new(directives(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_ours_and_dependencies_stay_at_warn() {
        let table = [
            ("info", "warn,jukebox=info"),
            ("debug", "warn,jukebox=debug"),
            ("TRACE", "warn,jukebox=trace"),
            // Quieter than WARN applies to everyone.
            ("error", "error,jukebox=error"),
            ("off", "off,jukebox=off"),
            // Naming a dependency asks for more of it.
            ("info,symphonia=info", "warn,jukebox=info,symphonia=info"),
            (
                " debug , hyper=debug,symphonia_format_ogg=trace",
                "warn,jukebox=debug,hyper=debug,symphonia_format_ogg=trace",
            ),
            // A directive for our own modules refines the bare level.
            (
                "info,jukebox::player=debug",
                "warn,jukebox=info,jukebox::player=debug",
            ),
            // One that sets the whole package replaces it.
            ("info,jukebox=debug", "warn,jukebox=debug"),
            // No bare level: exactly what was written.
            ("jukebox::player=debug", "jukebox::player=debug"),
            ("symphonia=info,jukebox=info", "symphonia=info,jukebox=info"),
        ];
        for (spec, want) in table {
            assert_eq!(directives(spec), want, "{spec:?}");
            // Every result is a filter tracing accepts.
            EnvFilter::try_new(directives(spec)).unwrap();
        }
    }
}
