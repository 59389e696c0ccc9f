//! The resume buffer: the last messages a session numbered, so a phone that comes back
//! gets what it missed instead of fresh snapshots.

use std::collections::VecDeque;
use std::sync::Arc;

use super::encoder::Wire;
use super::limits::SessionLimits;
use crate::protocol::Tail;

/// A message kept for resume: shared ones are encoded once for every session; the session's
/// own (snapshots, replies) are wrapped the same way so each entry is one pointer. Own
/// messages carry hub seq 0, which no shared change has (the hub numbers from 1).
#[derive(Clone)]
pub(super) struct Kept(Arc<Wire>);

impl Kept {
    pub(super) fn shared(w: Arc<Wire>) -> Kept {
        Kept(w)
    }

    /// A snapshot or reply, which only this session sends.
    pub(super) fn own(tail: Tail) -> Kept {
        Kept(Arc::new(Wire {
            hub_seq: 0,
            topic: None,
            to: None,
            tail: Some(tail),
            gap: false,
        }))
    }

    pub(super) fn is_own(&self) -> bool {
        self.0.hub_seq == 0
    }

    /// Whether both are the one shared message.
    #[cfg(test)]
    pub(super) fn is(&self, other: &Kept) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// What it costs the session alone: nothing for a shared one (its pointer is counted in
    /// the buffer), its text and its allocation for the session's own.
    fn cost(&self) -> usize {
        if !self.is_own() {
            return 0;
        }
        let text = self
            .0
            .tail
            .as_ref()
            .map_or(0, |t| t.rest.capacity() + t.cmd.len());
        text + std::mem::size_of::<Wire>() + 2 * std::mem::size_of::<usize>()
    }

    pub(super) fn render(&self, seq: u64) -> String {
        self.0
            .tail
            .as_ref()
            .map_or_else(String::new, |t| t.render(seq))
    }
}

/// The session's numbered messages. Seqs are contiguous, so they are not stored:
/// `kept[i]` has seq `seq + 1 - kept.len() + i`. It never holds more than
/// `limits.buffer` messages nor (beyond its newest) more than `limits.own_bytes` of own ones.
#[derive(Default)]
pub(super) struct ResumeBuffer {
    /// The seq of the newest message (0 before the first).
    seq: u64,
    kept: VecDeque<Kept>,
    /// What the own messages in `kept` cost ([`Kept::cost`]).
    own_bytes: usize,
}

impl ResumeBuffer {
    /// Numbers `item` with the next seq and keeps it, dropping the oldest to stay in limits.
    pub(super) fn push(&mut self, item: Kept, limits: &SessionLimits) -> u64 {
        self.seq += 1;
        // Make room first: the buffer then never grows past its limit (a deque that reached
        // limit + 1 would double its allocation, in every session).
        while self.kept.len() >= limits.buffer.max(1) {
            self.drop_oldest();
        }
        self.own_bytes += item.cost();
        self.kept.push_back(item);
        // Big own messages (search results, snapshots) push out the oldest ones: a resume
        // that needs those is answered too_old, and the phone gets fresh snapshots.
        while self.own_bytes > limits.own_bytes && !self.kept.is_empty() {
            self.drop_oldest();
        }
        self.seq
    }

    fn drop_oldest(&mut self) {
        if let Some(k) = self.kept.pop_front() {
            self.own_bytes -= k.cost();
        }
    }

    /// The seq of the oldest message still kept (`seq + 1` when none is).
    fn oldest(&self) -> u64 {
        self.seq + 1 - self.kept.len() as u64
    }

    /// Whether a phone that saw up to `last` can resume: nothing after it has been dropped,
    /// and it does not claim messages this session never sent.
    pub(super) fn can_resume(&self, last: u64) -> bool {
        last <= self.seq && last + 1 >= self.oldest()
    }

    /// The messages after `last`, with their seqs.
    pub(super) fn after(&self, last: u64) -> Vec<(u64, Kept)> {
        let oldest = self.oldest();
        self.kept
            .iter()
            .enumerate()
            .map(|(i, k)| (oldest + i as u64, k.clone()))
            .filter(|(s, _)| *s > last)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(hub_seq: u64) -> Kept {
        Kept::shared(Arc::new(Wire {
            hub_seq,
            topic: None,
            to: None,
            tail: Some(Tail {
                cmd: "event",
                rest: String::new(),
            }),
            gap: false,
        }))
    }

    fn own(len: usize) -> Kept {
        Kept::own(Tail {
            cmd: "reply",
            rest: "x".repeat(len),
        })
    }

    fn limits(buffer: usize, own_bytes: usize) -> SessionLimits {
        SessionLimits {
            buffer,
            own_bytes,
            ..SessionLimits::default()
        }
    }

    #[test]
    fn it_keeps_the_last_messages_numbered_in_order() {
        let (mut b, l) = (ResumeBuffer::default(), limits(3, 1 << 20));
        for i in 1..=5 {
            assert_eq!(b.push(shared(i), &l), i);
        }
        assert_eq!(b.kept.len(), 3, "never more than the limit");
        assert!(b.can_resume(2) && b.can_resume(5));
        assert!(!b.can_resume(1), "message 2 is gone");
        assert!(!b.can_resume(6), "message 6 was never sent");
        let seqs: Vec<u64> = b.after(3).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [4, 5]);
        assert_eq!(b.after(3)[0].1.render(4), r#"{"cmd":"event","seq":4}"#);
    }

    #[test]
    fn own_bytes_push_out_the_oldest_and_shared_ones_cost_nothing() {
        let one = own(1000).cost();
        let (mut b, l) = (ResumeBuffer::default(), limits(256, 2 * one));
        b.push(shared(1), &l);
        b.push(own(1000), &l);
        b.push(own(1000), &l);
        assert_eq!(b.kept.len(), 3, "two own messages fit beside a shared one");
        b.push(own(1000), &l);
        assert_eq!(b.kept.len(), 2, "a third drops the oldest until it fits");
        assert_eq!(b.own_bytes, 2 * one);
        assert!(!b.can_resume(1) && b.can_resume(2));
        // One message over the bound alone is still numbered, but nothing is kept.
        assert_eq!(b.push(own(10_000), &l), 5);
        assert_eq!((b.kept.len(), b.own_bytes), (0, 0));
        assert!(b.can_resume(5) && !b.can_resume(4));
    }
}
