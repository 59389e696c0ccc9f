//! The limits of sessions (protocol.md §3, §10).

use std::time::Duration;

/// Limits of a session (protocol.md §3, §10).
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Messages kept for resume (at least 256).
    pub buffer: usize,
    /// Bytes the session's own kept messages (snapshots and replies, which no other session
    /// shares) may take together, their text and about 100 bytes each besides. Shared updates
    /// and events cost each session a pointer and do not count. 256 messages of 256 bytes fit,
    /// so the bound only bites on big messages (search results, large snapshots).
    pub own_bytes: usize,
    /// How long a session that was in use outlives its last socket.
    pub ttl: Duration,
    /// How long a session that was never in use outlives its socket.
    pub unused_ttl: Duration,
    /// A socket attached this long in one go puts its session in use.
    pub in_use_after: Duration,
    /// Messages that may wait for a socket's writer before it counts as too slow.
    pub socket_queue: usize,
    /// Sessions one guest may have; a new one replaces the guest's oldest detached one.
    pub per_guest: usize,
    /// Sessions in all; a new one replaces the oldest detached one of anyone.
    pub max: usize,
    /// Hellos one guest may send in any 10 s (the burst; one more every 10 s / this).
    pub hello_rate: u32,
}

impl SessionLimits {
    /// The configurable limits from the configuration; the rest are the protocol's.
    pub fn from_limits(l: &crate::config::Limits) -> SessionLimits {
        SessionLimits {
            // The protocol's minimum: thousands of phones each keep this many.
            buffer: 256,
            own_bytes: 64 * 1024,
            ttl: Duration::from_secs(15 * 60),
            unused_ttl: Duration::from_secs(l.unused_session_ttl.into()),
            in_use_after: Duration::from_secs(10),
            socket_queue: 512,
            per_guest: l.sessions_per_guest as usize,
            max: l.max_sessions as usize,
            hello_rate: l.hello_rate,
        }
    }

    /// How long a session outlives its socket: a session never in use goes sooner, so
    /// phones that only looked cannot pile sessions up.
    pub(super) fn ttl(&self, in_use: bool) -> Duration {
        if in_use {
            self.ttl
        } else {
            self.unused_ttl.min(self.ttl)
        }
    }
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits::from_limits(&crate::config::Limits::default())
    }
}
