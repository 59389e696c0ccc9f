//! The rate of hellos per guest: each hello may make a session, so one token cannot churn
//! through sessions faster than the protocol allows.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::party::GuestId;

/// Hellos one guest may send: `rate` in any 10 s, one more every 10 s / `rate`.
pub(super) struct HelloLimiter {
    limiter: DefaultKeyedRateLimiter<GuestId>,
    /// Hellos checked, to prune the limiter's table now and then.
    seen: AtomicU64,
}

impl HelloLimiter {
    pub(super) fn new(rate: u32) -> HelloLimiter {
        // A rate of 0 would be a limiter that never allows anything; the least is one.
        let rate = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs(10) / rate.get();
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(rate);
        HelloLimiter {
            limiter: RateLimiter::keyed(quota),
            seen: AtomicU64::new(0),
        }
    }

    /// Counts a hello of `guest`: `Err(ms)` when it comes too soon after too many others.
    pub(super) fn check(&self, guest: GuestId) -> Result<(), u64> {
        if self.seen.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            // Guests back to a full allowance need no entry.
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&guest).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            wait.as_millis().max(1) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_next_hello_waits() {
        let hellos = HelloLimiter::new(3);
        let g = GuestId::from(7);
        for _ in 0..3 {
            assert_eq!(hellos.check(g), Ok(()));
        }
        let wait = hellos.check(g).expect_err("the fourth hello is too soon");
        assert!(
            (1..=3400).contains(&wait),
            "waits about 10 s / 3: {wait} ms"
        );
        assert_eq!(
            hellos.check(GuestId::from(8)),
            Ok(()),
            "another guest has its own allowance"
        );
    }
}
