//! Snapshots every guest sees alike (now playing, the queue, the room, the history), encoded
//! once and shared by the sessions that send them until their topic changes.
//!
//! Why: a phone that joins gets four snapshots. Encoded by each session, a room of 3,000
//! phones joining encoded the same text 3,000 times, and every session kept its own copy in
//! its resume buffer: about 1 kB a phone, the largest per-phone allocation after the tasks
//! themselves (heaptrack, bench/README.md "Profiling"). Now a resume buffer keeps a pointer.
//!
//! When an encoding taken at hub seq `A` is good for a snapshot taken at seq `S`: the
//! encoder has handed on every change up to `S`, and the topic's last change it has seen is
//! at or below both `A` and `S`. Then nothing changed the topic between the two, so they
//! show the same state. Now playing also ages: its position is the hub's estimate when it
//! was taken (clients move it on from `server_time_ms`), and the hub's estimate follows the
//! player's reports without a change, so a shared one is used for at most
//! [`NOW_PLAYING_FOR`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::buffer::Kept;
use super::encoder::Wire;
use crate::protocol::{Tail, Topic};

/// How long an encoding of now playing is shared.
const NOW_PLAYING_FOR: Duration = Duration::from_millis(500);

/// The topics whose snapshots are the same for every guest.
const SHARED: [Topic; 4] = [Topic::NowPlaying, Topic::Queue, Topic::Room, Topic::History];

fn slot(t: Topic) -> Option<usize> {
    SHARED.iter().position(|s| *s == t)
}

struct Encoded {
    at: u64,
    made: Instant,
    wire: Arc<Wire>,
}

#[derive(Default)]
pub(super) struct SharedSnapshots {
    /// The hub seq of each topic's last change handed on (written by the encoder before it
    /// marks the seq handed on, so a reader that sees it handed on sees this too).
    changed: [AtomicU64; SHARED.len()],
    encoded: Mutex<[Option<Encoded>; SHARED.len()]>,
}

impl SharedSnapshots {
    /// The encoder: a change of `topic` at `seq` is about to be handed on.
    pub(super) fn changed(&self, topic: Option<Topic>, seq: u64) {
        if let Some(i) = topic.and_then(slot) {
            self.changed[i].fetch_max(seq, Ordering::Release);
        }
    }

    /// The encoder lost changes up to `seq`: which topics they were is unknown.
    pub(super) fn lost(&self, seq: u64) {
        for c in &self.changed {
            c.fetch_max(seq, Ordering::Release);
        }
    }

    /// The snapshot of `topic` taken at `after`, for a session: a shared encoding when one is
    /// good, else `encode()`'s (kept for the next session when it is the newest state, and
    /// then shared too). `handed_on` is the last seq the encoder has handed on. Personal and
    /// host-only topics are `encode()`'d every time, as the session's own.
    pub(super) fn get(
        &self,
        topic: Topic,
        after: u64,
        handed_on: u64,
        encode: impl FnOnce() -> Tail,
    ) -> Kept {
        let Some(i) = slot(topic).filter(|_| handed_on >= after) else {
            return Kept::own(encode());
        };
        let changed = self.changed[i].load(Ordering::Acquire);
        // `e.at <= handed_on`: every change up to it was recorded before `handed_on` was read
        // (and `changed` after it), so none of them can be missing from `changed`.
        let fresh_enough = |e: &Encoded| {
            e.at <= handed_on
                && changed <= e.at.min(after)
                && (topic != Topic::NowPlaying || e.made.elapsed() < NOW_PLAYING_FOR)
        };
        if let Some(e) = self.lock()[i].as_ref().filter(|e| fresh_enough(e)) {
            return Kept::shared(e.wire.clone());
        }
        // Encoded outside the lock: sessions on other threads need not wait for it.
        let tail = encode();
        if changed > after {
            return Kept::own(tail);
        }
        let w = wire(after, tail);
        let mut slots = self.lock();
        if slots[i].as_ref().is_none_or(|e| e.at <= after) {
            slots[i] = Some(Encoded {
                at: after,
                made: Instant::now(),
                wire: w.clone(),
            });
        }
        Kept::shared(w)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Option<Encoded>; SHARED.len()]> {
        self.encoded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A snapshot as a resume buffer keeps it. It carries the seq it was taken at, not 0: a
/// buffer counts only what is its own against its byte limit, and this is shared (a
/// snapshot at seq 0, before the hub's first change, is counted, which is only cautious).
fn wire(after: u64, tail: Tail) -> Arc<Wire> {
    Arc::new(Wire {
        hub_seq: after,
        topic: None,
        to: None,
        tail: Some(tail),
        gap: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Kept, b: &Kept) -> bool {
        a.is(b)
    }

    fn tail(n: u64) -> Tail {
        Tail {
            cmd: "update",
            rest: format!(",\"n\":{n}"),
        }
    }

    #[test]
    fn an_encoding_is_shared_until_its_topic_changes() {
        let s = SharedSnapshots::default();
        let a = s.get(Topic::Queue, 5, 5, || tail(1));
        let b = s.get(Topic::Queue, 7, 7, || panic!("encoded again"));
        assert!(same(&a, &b));
        // Another topic's change does not matter.
        s.changed(Some(Topic::Room), 8);
        let c = s.get(Topic::Queue, 8, 8, || panic!("encoded again"));
        assert!(same(&a, &c));
        // Its own does.
        s.changed(Some(Topic::Queue), 9);
        let d = s.get(Topic::Queue, 9, 9, || tail(2));
        assert!(!same(&a, &d));
        assert!(same(&d, &s.get(Topic::Queue, 10, 10, || tail(3))));
    }

    #[test]
    fn a_snapshot_from_before_a_change_is_not_given_one_from_after_it() {
        let s = SharedSnapshots::default();
        s.changed(Some(Topic::Queue), 6);
        let newer = s.get(Topic::Queue, 6, 6, || tail(2));
        // A session whose snapshot was taken at 4 (before the change at 6) gets its own.
        let older = s.get(Topic::Queue, 4, 6, || tail(1));
        assert!(!same(&newer, &older));
        assert!(older.is_own());
        // ...and the newer one stays the shared one.
        assert!(same(&newer, &s.get(Topic::Queue, 7, 7, || tail(3))));
    }

    #[test]
    fn nothing_is_shared_before_the_encoder_has_caught_up() {
        let s = SharedSnapshots::default();
        let a = s.get(Topic::Queue, 5, 5, || tail(1));
        // The encoder has handed on only up to 6: a change at 7 may be on its way.
        let b = s.get(Topic::Queue, 7, 6, || tail(2));
        assert!(!same(&a, &b));
    }

    #[test]
    fn an_encoding_newer_than_what_a_session_knows_is_handed_on_is_not_shared() {
        let s = SharedSnapshots::default();
        let a = s.get(Topic::Queue, 8, 8, || tail(1));
        // This session read `handed_on` = 6: a change at 7 or 8 might not have been
        // recorded when it looked.
        assert!(!same(&a, &s.get(Topic::Queue, 5, 6, || tail(2))));
    }

    #[test]
    fn lost_changes_and_personal_topics_are_never_shared() {
        let s = SharedSnapshots::default();
        let a = s.get(Topic::Queue, 5, 5, || tail(1));
        s.lost(6);
        assert!(!same(&a, &s.get(Topic::Queue, 6, 6, || tail(2))));
        let me = s.get(Topic::Me, 6, 6, || tail(3));
        assert!(
            me.is_own(),
            "a personal snapshot counts against its session's bytes"
        );
        assert!(!same(&me, &s.get(Topic::Me, 6, 6, || tail(4))));
    }

    #[test]
    fn now_playing_is_shared_only_briefly() {
        let s = SharedSnapshots::default();
        let a = s.get(Topic::NowPlaying, 5, 5, || tail(1));
        assert!(same(&a, &s.get(Topic::NowPlaying, 5, 5, || tail(2))));
        std::thread::sleep(NOW_PLAYING_FOR + Duration::from_millis(20));
        assert!(!same(&a, &s.get(Topic::NowPlaying, 5, 5, || tail(3))));
    }
}
