//! How the jukebox tells clients apart by their address, in one place for every limit.
//!
//! Two scopes, because they answer different questions:
//! - [`device`]: *which phone is this?* On the party's LAN or the Pi's hotspot each phone has an
//!   address of its own, and on an IPv6 LAN every phone shares one /64, so a per-phone rule
//!   (a ban that covers a guest's addresses, guests or connections per address) keys IPv6 by the
//!   whole address. Keyed by /64 it would ban, or lock out, the whole party.
//! - [`network`]: *how many guesses does one attacker get?* SLAAC gives one machine any number of
//!   addresses in its /64, so a budget against guessing (the wrong-PIN limit) keys IPv6 by /64.
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports) is the IPv4
//! address in both.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A rate limit per address key (the caller picks the scope).
pub type Limiter = DefaultKeyedRateLimiter<IpAddr>;

/// `per_minute` a minute per key, with bursts of `burst`.
pub fn limiter(per_minute: u32, burst: u32) -> Limiter {
    RateLimiter::keyed(
        Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)),
    )
}

/// Drops the keys of a keyed limiter that are back to a fresh state, and the memory they held:
/// without it a limiter keeps every address it ever saw.
pub fn prune_limiter(l: &Limiter) {
    l.retain_recent();
    l.shrink_to_fit();
}

/// The key of one device: IPv4 as it is, IPv6 whole.
pub fn device(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The key of what one attacker controls: IPv4 as it is, IPv6 by its /64.
pub fn network(ip: IpAddr) -> IpAddr {
    match device(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The jukebox's own address (127.0.0.1, ::1): a kiosk browser on the box itself (the TV on the
/// Pi's HDMI) or a local proxy, not one phone. Per-device rules cannot tell its guests apart, so
/// they leave it out. Only these two: the rest of 127.0.0.0/8 is still one "device" each.
pub fn is_own(ip: IpAddr) -> bool {
    match device(ip) {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // (address, its device key, its network key)
        let table = [
            ("192.168.1.23", "192.168.1.23", "192.168.1.23"),
            ("::ffff:192.168.1.23", "192.168.1.23", "192.168.1.23"),
            (
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
                "2001:db8:1:2::",
            ),
            ("2001:db8:1:3::1", "2001:db8:1:3::1", "2001:db8:1:3::"),
            ("fe80::1", "fe80::1", "fe80::"),
            ("::1", "::1", "::"),
        ];
        for (a, dev, net) in table {
            assert_eq!(device(ip(a)), ip(dev), "{a}");
            assert_eq!(network(ip(a)), ip(net), "{a}");
        }
        assert_eq!(
            network(ip("2001:db8:1:2::1")),
            network(ip("2001:db8:1:2:ffff::9"))
        );
        assert!(is_own(ip("127.0.0.1")));
        assert!(is_own(ip("::1")));
        assert!(is_own(ip("::ffff:127.0.0.1")));
        assert!(!is_own(ip("127.0.0.2")));
        assert!(!is_own(ip("192.168.1.2")));
    }
}
