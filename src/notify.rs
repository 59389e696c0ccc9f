//! systemd service notifications (`sd_notify`): `READY=1` once the jukebox serves, `STATUS=`
//! lines, `WATCHDOG=1` from the hub's loop, and `STOPPING=1`. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// The library is loaded and the port is bound.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Asks systemd to wait this much longer for READY (a first scan of a large library).
pub fn extend_start(by: Duration) {
    send(&[NotifyState::ExtendTimeoutUsec(
        u32::try_from(by.as_micros()).unwrap_or(u32::MAX),
    )]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings systemd's watchdog at half its interval. It is ticked by the hub's own loop, so a
/// hung hub stops the pings and gets the jukebox restarted, while a busy socket layer does not.
pub struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// `Some` when systemd asked for pings (`WATCHDOG_USEC`, for this process).
    pub fn from_env() -> Option<Watchdog> {
        sd_notify::watchdog_enabled().map(|interval| Watchdog {
            every: interval / 2,
            last: None,
        })
    }

    /// How often it pings: the loop that ticks it wakes at least twice as often.
    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn tick(&mut self) {
        if self.last.is_none_or(|t| t.elapsed() >= self.every) {
            send(&[NotifyState::Watchdog]);
            self.last = Some(Instant::now());
        }
    }
}
