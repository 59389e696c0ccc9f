//! mDNS: advertises `_http._tcp` and `_jukebox._tcp` (and `_mpd._tcp` for MPD clients)
//! under the jukebox's name, and answers
//! `<name>.local` with this machine's LAN addresses, following address changes (mdns-sd's
//! automatic addresses). It lives beside a running avahi-daemon: it never claims the system's
//! own host name, and when another machine already answers `<name>.local` the probe moves it
//! to `<name>-2.local` (logged, and shown on the TV). Goodbyes go out on shutdown.
//! A failure here is one warning: the jukebox still plays and serves by address.

use std::sync::Arc;
use std::time::Duration;

use mdns_sd::{DaemonEvent, ServiceDaemon, ServiceInfo};

const SERVICE_TYPES: [&str; 2] = ["_http._tcp.local.", "_jukebox._tcp.local."];
/// What MPD clients (M.A.L.P., MPDroid, Cantata) browse for.
const MPD_SERVICE: &str = "_mpd._tcp.local.";

pub struct Mdns {
    daemon: ServiceDaemon,
    fullnames: Vec<String>,
}

/// The machine's own host name, which avahi-daemon answers for.
fn system_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().trim_end_matches(".local").to_string())
        .filter(|h| !h.is_empty())
}

/// The DNS host label for a party name: ASCII letters and digits in lower case, anything else
/// a single '-' (apostrophes vanish), at most 63 bytes; "jukebox" if nothing is left.
/// "Mia's Birthday!" becomes `mias-birthday`.
pub fn label_for(name: &str) -> String {
    let mut label = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if matches!(c, '\'' | '’' | '`') {
            continue;
        } else if !label.ends_with('-') && !label.is_empty() {
            label.push('-');
        }
    }
    let mut label = label.trim_end_matches('-').to_string();
    label.truncate(63);
    let label = label.trim_end_matches('-').to_string();
    if label.is_empty() {
        "jukebox".into()
    } else {
        label
    }
}

/// The host label to announce for `name`: never the system's own host name.
pub fn host_label(name: &str, system: Option<&str>) -> String {
    let label = label_for(name);
    match system {
        Some(sys) if sys.eq_ignore_ascii_case(&label) => format!("{label}-2"),
        _ => label,
    }
}

/// Starts advertising. `on_host` is told the host name in use (`jukebox.local`) at once and
/// again whenever a conflict changes it.
pub fn start(
    name: &str,
    listen: std::net::SocketAddr,
    mpd: Option<std::net::SocketAddr>,
    on_host: Arc<dyn Fn(String) + Send + Sync>,
) -> Option<Mdns> {
    match try_start(name, listen, mpd, on_host) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!("mDNS is off: {e}. Phones can still open the address shown on the TV");
            None
        }
    }
}

fn try_start(
    name: &str,
    listen: std::net::SocketAddr,
    mpd: Option<std::net::SocketAddr>,
    on_host: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<Mdns, mdns_sd::Error> {
    let system = system_host_name();
    let label = host_label(name, system.as_deref());
    if label != label_for(name) {
        tracing::info!(
            "mDNS: {}.local is this machine's own host name (answered by the system); \
             the jukebox answers as {label}.local",
            label_for(name)
        );
    }
    let host = format!("{label}.local.");
    let daemon = ServiceDaemon::new()?;
    let monitor = daemon.monitor()?;
    let version = env!("CARGO_PKG_VERSION");
    let properties = [("path", "/"), ("version", version), ("proto", "1")];
    let mut fullnames = Vec::new();
    let services = SERVICE_TYPES
        .iter()
        .map(|ty| (*ty, listen, &properties[..]))
        .chain(mpd.map(|at| (MPD_SERVICE, at, &[][..])));
    for (ty, at, props) in services {
        let info = if at.ip().is_unspecified() {
            ServiceInfo::new(ty, name, &host, "", at.port(), props)?.enable_addr_auto()
        } else {
            ServiceInfo::new(ty, name, &host, at.ip(), at.port(), props)?
        };
        fullnames.push(info.get_fullname().to_string());
        daemon.register(info)?;
    }
    on_host(format!("{label}.local"));
    tracing::info!(
        "mDNS: advertising {name:?} (_http._tcp, _jukebox._tcp{}) at http://{label}.local{}",
        if mpd.is_some() { ", _mpd._tcp" } else { "" },
        match listen.port() {
            80 => String::new(),
            p => format!(":{p}"),
        }
    );
    let original = host.clone();
    std::thread::Builder::new()
        .name("mdns-events".into())
        .spawn(move || {
            // One conflict is reported per record (A, AAAA, SRV…): log each new name once.
            let mut seen = std::collections::HashSet::new();
            while let Ok(ev) = monitor.recv() {
                match ev {
                    DaemonEvent::NameChange(c) if seen.insert(c.new_name.clone()) => {
                        if c.original == original {
                            let new = c.new_name.trim_end_matches('.').to_string();
                            tracing::warn!(
                                "mDNS: another machine answers {} on {}; this jukebox is now {new}",
                                c.original.trim_end_matches('.'),
                                c.intf_name
                            );
                            on_host(new);
                        } else {
                            tracing::info!(
                                "mDNS: {} is taken; advertising as {}",
                                c.original,
                                c.new_name
                            );
                        }
                    }
                    DaemonEvent::Error(e) => tracing::debug!("mDNS: {e}"),
                    _ => {}
                }
            }
        })
        .map_err(|e| mdns_sd::Error::Msg(e.to_string()))?;
    Ok(Mdns { daemon, fullnames })
}

impl Mdns {
    /// Says goodbye (so phones forget the name at once) and stops.
    pub fn shutdown(self) {
        for name in &self.fullnames {
            if let Ok(rx) = self.daemon.unregister(name) {
                let _ = rx.recv_timeout(Duration::from_secs(1));
            }
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_the_system_host_name() {
        assert_eq!(host_label("jukebox", Some("raspberrypi")), "jukebox");
        assert_eq!(host_label("jukebox", Some("JukeBox")), "jukebox-2");
        assert_eq!(host_label("jukebox", None), "jukebox");
        assert_eq!(
            host_label("Mia's Birthday!", Some("raspberrypi")),
            "mias-birthday"
        );
    }

    #[test]
    fn labels() {
        for (name, label) in [
            ("jukebox", "jukebox"),
            ("Mia's Birthday!", "mias-birthday"),
            ("  Café  Olé ", "caf-ol"),
            ("🎉", "jukebox"),
            ("garden-party-2", "garden-party-2"),
        ] {
            assert_eq!(label_for(name), label, "{name}");
        }
        assert_eq!(label_for(&"a".repeat(80)).len(), 63);
    }
}
