//! The two orders a session keeps: a reply comes after the changes it caused, and a
//! snapshot neither misses a change nor is followed by one it already contains.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::encoder::Wire;
use crate::protocol::{Tail, Topic};

/// Replies waiting until the hub changes up to their `after` have been numbered; among
/// replies that wait for the same change, the first asked goes first.
#[derive(Default)]
pub(super) struct PendingReplies {
    /// (after, order) → tail.
    waiting: BTreeMap<(u64, u64), Tail>,
    order: u64,
}

impl PendingReplies {
    pub(super) fn push(&mut self, after: u64, tail: Tail) {
        self.order += 1;
        self.waiting.insert((after, self.order), tail);
    }

    /// The next reply whose changes have all been dealt with (up to `cursor`).
    pub(super) fn pop_ready(&mut self, cursor: u64) -> Option<Tail> {
        let (&(after, _), _) = self.waiting.first_key_value()?;
        if after > cursor {
            return None;
        }
        self.waiting.pop_first().map(|(_, tail)| tail)
    }
}

/// Snapshots in flight, the changes held back meanwhile, and what each topic's last
/// snapshot covers. A change that arrives while a snapshot is being taken may or may not be
/// in it, so it waits; once the snapshot is sent, the held changes it covers are dropped.
#[derive(Default)]
pub(super) struct Snapshots {
    in_flight: u32,
    held: Vec<Arc<Wire>>,
    /// For each topic, the hub seq its last snapshot reflects: older changes are in it.
    covered: [u64; Topic::ALL.len()],
}

impl Snapshots {
    pub(super) fn begin(&mut self) {
        self.in_flight += 1;
    }

    /// A snapshot came back (sent or failed).
    pub(super) fn end(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// While any snapshot is in flight, changes wait (and so do replies, which follow them).
    pub(super) fn busy(&self) -> bool {
        self.in_flight > 0
    }

    pub(super) fn hold(&mut self, w: Arc<Wire>) {
        self.held.push(w);
    }

    /// The changes held back, once no snapshot is in flight any more.
    pub(super) fn release(&mut self) -> Vec<Arc<Wire>> {
        if self.busy() {
            return Vec::new();
        }
        std::mem::take(&mut self.held)
    }

    /// A snapshot of `t` reflecting the hub up to `hub_seq` was sent.
    pub(super) fn cover(&mut self, t: Topic, hub_seq: u64) {
        self.covered[t as usize] = hub_seq;
    }

    /// Whether the change `hub_seq` of topic `t` is already part of a snapshot sent.
    pub(super) fn covers(&self, t: Topic, hub_seq: u64) -> bool {
        hub_seq <= self.covered[t as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(cmd: &'static str) -> Tail {
        Tail {
            cmd,
            rest: String::new(),
        }
    }

    #[test]
    fn replies_wait_for_their_changes_and_keep_their_order() {
        let mut r = PendingReplies::default();
        r.push(5, tail("b"));
        r.push(3, tail("a"));
        r.push(5, tail("c"));
        assert!(r.pop_ready(2).is_none());
        assert_eq!(r.pop_ready(4).map(|t| t.cmd), Some("a"));
        assert!(r.pop_ready(4).is_none());
        assert_eq!(r.pop_ready(5).map(|t| t.cmd), Some("b"));
        assert_eq!(r.pop_ready(5).map(|t| t.cmd), Some("c"));
        assert!(r.pop_ready(u64::MAX).is_none());
    }

    #[test]
    fn held_changes_wait_for_the_last_snapshot_in_flight() {
        let wire = |hub_seq| {
            Arc::new(Wire {
                hub_seq,
                topic: None,
                to: None,
                tail: None,
                gap: false,
            })
        };
        let mut s = Snapshots::default();
        s.begin();
        s.begin();
        s.hold(wire(1));
        s.end();
        assert!(s.busy());
        assert!(s.release().is_empty(), "one snapshot is still in flight");
        s.end();
        s.end();
        assert!(!s.busy(), "an extra end does not wrap around");
        assert_eq!(s.release().len(), 1);
        let t = Topic::ALL[0];
        assert!(!s.covers(t, 1));
        s.cover(t, 7);
        assert!(s.covers(t, 7) && !s.covers(t, 8) && !s.covers(Topic::ALL[1], 1));
    }
}
