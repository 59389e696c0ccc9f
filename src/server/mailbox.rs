//! A small single-consumer queue for thousands of idle connections. tokio's channels allocate
//! a block of 32 slots up front (about 1–2 KB each, per channel, per phone) and keep it; this
//! one holds nothing while empty and gives back what a burst made it grow. The consumer is one
//! task; `Notify` keeps a wake-up permit, so a push between a check and the wait is not lost.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Capacity kept after a burst; more is returned to the allocator once the queue empties.
const KEEP: usize = 4;

pub struct Mailbox<T> {
    inner: Mutex<Inner<T>>,
    notify: Notify,
}

struct Inner<T> {
    queue: VecDeque<T>,
    closed: bool,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                closed: false,
            }),
            notify: Notify::new(),
        }
    }
}

impl<T> Mailbox<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` unless the mailbox is closed or already holds `max` items; gives it back
    /// when refused.
    pub fn push_bounded(&self, item: T, max: usize) -> Result<(), T> {
        {
            let mut inner = self.lock();
            if inner.closed || inner.queue.len() >= max {
                return Err(item);
            }
            inner.queue.push_back(item);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Queues `item` unless the mailbox is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        self.push_bounded(item, usize::MAX)
    }

    /// The next item, if one is queued.
    pub fn try_pop(&self) -> Option<T> {
        let mut inner = self.lock();
        let item = inner.queue.pop_front();
        if inner.queue.is_empty() && inner.queue.capacity() > KEEP {
            inner.queue.shrink_to(KEEP);
        }
        item
    }

    /// Waits for the next item; `None` once the mailbox is closed and drained.
    pub async fn recv(&self) -> Option<T> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(item) = inner.queue.pop_front() {
                    if inner.queue.is_empty() && inner.queue.capacity() > KEEP {
                        inner.queue.shrink_to(KEEP);
                    }
                    return Some(item);
                }
                if inner.closed {
                    return None;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Resolves after the next push (or at once if one happened since the last wait).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Wakes the consumer without queueing anything.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Refuses further pushes and drops what is queued (its senders learn by the drop, e.g. a
    /// oneshot inside an item).
    pub fn close(&self) {
        let dropped = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.queue)
        };
        drop(dropped);
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn order_bound_close_and_shrink() {
        let m = Mailbox::default();
        for i in 0..100 {
            m.push_bounded(i, 100).unwrap();
        }
        assert_eq!(m.push_bounded(100, 100), Err(100));
        for i in 0..100 {
            assert_eq!(m.recv().await, Some(i));
        }
        assert!(m.lock().queue.capacity() <= KEEP);
        m.push(7).unwrap();
        m.close();
        assert_eq!(m.push(8), Err(8));
        assert_eq!(m.recv().await, None);
    }

    /// The race a consumer runs every time it goes idle (`ws::flush_out`, then the live
    /// loop): it finds the queue empty, and a push lands before its wait has begun. The push
    /// must leave a wake-up for that wait; a notify that only wakes waiters already waiting
    /// would lose it, and the phone would sit on a queued frame. Played here in that order,
    /// one step at a time, so the outcome does not depend on scheduling.
    #[test]
    fn a_push_before_the_wait_is_not_lost() {
        use futures_util::FutureExt;

        let m = Mailbox::default();
        assert_eq!(m.try_pop(), None, "the consumer looks: nothing yet");
        m.push(1).unwrap();
        assert!(
            m.changed().now_or_never().is_some(),
            "the wait that began after the push did not see it"
        );
        assert_eq!(m.try_pop(), Some(1));

        // And a wait already under way is woken by the next push.
        let mut recv = std::pin::pin!(m.recv());
        assert!(recv.as_mut().now_or_never().is_none(), "nothing queued");
        m.push(2).unwrap();
        assert_eq!(recv.now_or_never(), Some(Some(2)));
    }
}
