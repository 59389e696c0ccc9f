//! Bounded waits on something a test can observe (an HTTP answer, a count, a file, a process).
//! A test waits for what it needs rather than sleeping for a guess: it goes on as soon as the
//! condition holds, and when it never does, the panic names what did not happen.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it gives `Some`, and returns that; panics naming `what` after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it is true; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(limit, what, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

/// [`wait_for`] for code that is not async (it blocks the thread between looks).
pub fn wait_for_blocking<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] for code that is not async.
pub fn wait_until_blocking(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    wait_for_blocking(limit, what, || check().then_some(()))
}
