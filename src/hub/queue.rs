//! The request queue: the entries waiting, their order (the party rules of `party::order`),
//! and which head was last announced to its requester as "your song is next".

use std::collections::{HashMap, HashSet};

use super::deck::Planned;
use crate::party::{self, Entry, EntryId, GuestId, TrackId};
use crate::store::Track;

pub(crate) struct Queued {
    pub entry: Entry,
    pub track: Track,
}

#[derive(Default)]
pub(crate) struct Queue {
    entries: HashMap<EntryId, Queued>,
    order: Vec<EntryId>,
    /// The head of the queue whose requester was last told "your song is next".
    announced_next: Option<EntryId>,
}

/// What [`Queue::reorder`] changed.
pub(crate) struct Reordered {
    /// The order changed: announce it.
    pub changed: bool,
    /// A new head whose requester should be told their song is next.
    pub new_head: Option<EntryId>,
}

impl Queue {
    /// Replaces the entries with what the store holds, ordered without announcing.
    pub(crate) fn load(
        &mut self,
        rows: Vec<(Entry, Track)>,
        banned: &HashSet<GuestId>,
        played_tonight: &HashMap<GuestId, u32>,
    ) {
        self.entries = rows
            .into_iter()
            .map(|(entry, track)| (entry.id, Queued { entry, track }))
            .collect();
        self.order = party::order(&self.entries(), banned, played_tonight);
    }

    pub(crate) fn get(&self, id: EntryId) -> Option<&Queued> {
        self.entries.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: EntryId) -> Option<&mut Queued> {
        self.entries.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: EntryId) -> bool {
        self.entries.contains_key(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry id, in no particular order.
    pub(crate) fn ids(&self) -> Vec<EntryId> {
        self.entries.keys().copied().collect()
    }

    /// A new entry; [`Queue::reorder`] places it.
    pub(crate) fn insert(&mut self, q: Queued) {
        self.entries.insert(q.entry.id, q);
    }

    pub(crate) fn remove(&mut self, id: EntryId) -> Option<Queued> {
        self.entries.remove(&id)
    }

    pub(crate) fn order(&self) -> &[EntryId] {
        &self.order
    }

    /// The entries as the party rules see them.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.entries.values().map(|q| q.entry.clone()).collect()
    }

    /// This guest's requests, in queue order.
    pub(crate) fn requested_by(&self, g: GuestId) -> Vec<EntryId> {
        self.in_order(|q| q.entry.guest == Some(g))
    }

    /// The entries this guest up-voted (its own requests included), in queue order.
    pub(crate) fn voted_by(&self, g: GuestId) -> Vec<EntryId> {
        self.in_order(|q| q.entry.voters.contains(&g))
    }

    /// The entries any of these guests voted for.
    pub(crate) fn voted_by_any(&self, guests: &HashSet<GuestId>) -> Vec<EntryId> {
        self.in_order(|q| q.entry.voters.iter().any(|v| guests.contains(v)))
    }

    fn in_order(&self, pred: impl Fn(&Queued) -> bool) -> Vec<EntryId> {
        self.order
            .iter()
            .filter(|id| self.entries.get(id).is_some_and(&pred))
            .copied()
            .collect()
    }

    /// Whether this guest requested or voted for anything waiting.
    pub(crate) fn mentions(&self, g: GuestId) -> bool {
        self.entries
            .values()
            .any(|q| q.entry.guest == Some(g) || q.entry.voters.contains(&g))
    }

    /// Guests with a request waiting.
    pub(crate) fn requesters(&self) -> HashSet<GuestId> {
        self.entries
            .values()
            .filter_map(|q| q.entry.guest)
            .collect()
    }

    pub(crate) fn pinned(&self) -> HashSet<EntryId> {
        self.entries
            .values()
            .filter(|q| q.entry.pin.is_some())
            .map(|q| q.entry.id)
            .collect()
    }

    pub(crate) fn track_ids(&self) -> impl Iterator<Item = TrackId> + '_ {
        self.entries.values().map(|q| q.track.id)
    }

    /// A track was measured: its queued copies take the new levels.
    pub(crate) fn set_levels(&mut self, id: TrackId, levels: crate::loudness::Levels) {
        for q in self.entries.values_mut().filter(|q| q.track.id == id) {
            q.track.levels = levels;
        }
    }

    /// The first entry of the order that is still queued, as the next thing to play.
    pub(crate) fn head(&self) -> Option<Planned> {
        self.order.iter().find_map(|id| {
            self.entries
                .get(id)
                .map(|q| Planned::Entry(*id, q.track.clone()))
        })
    }

    /// Recomputes the order by the party rules.
    pub(crate) fn reorder(
        &mut self,
        banned: &HashSet<GuestId>,
        played_tonight: &HashMap<GuestId, u32>,
    ) -> Reordered {
        let order = party::order(&self.entries(), banned, played_tonight);
        let changed = order != self.order;
        if changed {
            self.order = order;
        }
        let head = self.order.first().copied();
        let new_head = head.filter(|h| self.announced_next != Some(*h));
        self.announced_next = head;
        Reordered { changed, new_head }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn e(id: i64) -> EntryId {
        EntryId::new(id)
    }

    fn g(id: i64) -> GuestId {
        GuestId::new(id)
    }

    fn queued(id: i64, guest: i64, voters: &[i64]) -> Queued {
        Queued {
            entry: Entry {
                id: e(id),
                track_id: TrackId::new(id * 100),
                artist: String::new(),
                guest: Some(g(guest)),
                created_ms: id,
                voters: voters.iter().map(|&v| g(v)).collect(),
                pin: None,
                dedication: None,
            },
            track: Track {
                id: TrackId::new(id * 100),
                path: PathBuf::new(),
                title: String::new(),
                artist: String::new(),
                album: String::new(),
                track_no: None,
                duration_ms: 0,
                has_art: false,
                present: true,
                likes: 0,
                levels: Default::default(),
            },
        }
    }

    #[test]
    fn a_guests_entries_come_in_queue_order_and_each_new_head_is_announced_once() {
        let (none, played) = (HashSet::new(), HashMap::new());
        let mut q = Queue::default();
        q.insert(queued(1, 7, &[7]));
        q.insert(queued(2, 8, &[8, 7, 9]));
        q.insert(queued(3, 7, &[7, 9]));
        let r = q.reorder(&none, &played);
        assert!(r.changed);
        assert_eq!(r.new_head, Some(e(2)));
        assert_eq!(q.order(), &[e(2), e(3), e(1)]);
        assert_eq!(q.requested_by(g(7)), vec![e(3), e(1)]);
        assert_eq!(q.voted_by(g(7)), vec![e(2), e(3), e(1)]);
        assert_eq!(q.voted_by(g(9)), vec![e(2), e(3)]);
        let r = q.reorder(&none, &played);
        assert!(!r.changed && r.new_head.is_none(), "told once");
        // Banned voters stop counting: the order changes, and so does the head.
        let r = q.reorder(&[g(8), g(9)].into_iter().collect(), &played);
        assert_eq!(
            q.order(),
            &[e(1), e(2), e(3)],
            "equal votes: the earlier request"
        );
        assert_eq!(r.new_head, Some(e(1)));
        assert!(matches!(q.head(), Some(Planned::Entry(id, _)) if id == e(1)));
        q.remove(e(1));
        assert!(
            matches!(q.head(), Some(Planned::Entry(id, _)) if id == e(2)),
            "skips gone ids"
        );
    }
}
