//! Recently played: the last plays, newest first, as the `history` topic shows them (what was
//! that song?). It is kept beside the party state so that a like or the end of a play changes
//! one entry, not a read of the store.

use std::collections::VecDeque;

use crate::party::PlayId;
pub(crate) use crate::store::PastPlay as Played;
use crate::store::PlayEnd;
#[cfg(test)]
use crate::store::Track;

/// How many plays the topic holds (protocol.md §11).
pub(crate) const HISTORY_LEN: usize = 50;

/// What a change did to the history, for the hub to announce.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Changed {
    Nothing,
    /// This entry is new or changed.
    Entry(PlayId),
    /// A new entry at the top, and the order with it; `dropped` fell off the end.
    Added {
        id: PlayId,
        dropped: Option<PlayId>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct History {
    plays: VecDeque<Played>,
}

impl History {
    /// The history as the store holds it, newest first.
    pub(crate) fn load(&mut self, rows: Vec<Played>) {
        self.plays = rows.into_iter().take(HISTORY_LEN).collect();
    }

    /// Newest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Played> {
        self.plays.iter()
    }

    pub(crate) fn order(&self) -> Vec<PlayId> {
        self.plays.iter().map(|p| p.play_id).collect()
    }

    pub(crate) fn get(&self, id: PlayId) -> Option<&Played> {
        self.plays.iter().find(|p| p.play_id == id)
    }

    /// A play started (a resumed one is there already: nothing changes).
    pub(crate) fn started(&mut self, p: Played) -> Changed {
        if self.get(p.play_id).is_some() {
            return Changed::Nothing;
        }
        let id = p.play_id;
        self.plays.push_front(p);
        let dropped = (self.plays.len() > HISTORY_LEN)
            .then(|| self.plays.pop_back().map(|p| p.play_id))
            .flatten();
        Changed::Added { id, dropped }
    }

    /// The likes of a play changed.
    pub(crate) fn likes(&mut self, id: PlayId, likes: u32) -> Changed {
        match self.plays.iter_mut().find(|p| p.play_id == id) {
            Some(p) if p.likes != likes => {
                p.likes = likes;
                Changed::Entry(id)
            }
            _ => Changed::Nothing,
        }
    }

    /// A play ended, with its likes as they ended.
    pub(crate) fn ended(&mut self, id: PlayId, end: PlayEnd, likes: u32) -> Changed {
        match self.plays.iter_mut().find(|p| p.play_id == id) {
            Some(p) if p.ended != Some(end) || p.likes != likes => {
                p.ended = Some(end);
                p.likes = likes;
                Changed::Entry(id)
            }
            _ => Changed::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn played(id: i64) -> Played {
        Played {
            play_id: PlayId::new(id),
            track: Track {
                id: crate::party::TrackId::new(id),
                path: format!("/m/{id}.flac").into(),
                title: format!("Song {id}"),
                artist: "A".into(),
                album: String::new(),
                track_no: None,
                duration_ms: 1000,
                has_art: false,
                present: true,
                likes: 0,
                levels: Default::default(),
            },
            requester: None,
            dedication: None,
            started_ms: id,
            likes: 0,
            ended: None,
        }
    }

    #[test]
    fn newest_first_bounded_and_changed_in_place() {
        let mut h = History::default();
        h.load((1..=3).rev().map(played).collect());
        assert_eq!(h.order(), [3, 2, 1].map(PlayId::new));
        assert_eq!(h.started(played(3)), Changed::Nothing, "resumed");
        assert_eq!(
            h.started(played(4)),
            Changed::Added {
                id: PlayId::new(4),
                dropped: None
            }
        );
        assert_eq!(h.likes(PlayId::new(4), 2), Changed::Entry(PlayId::new(4)));
        assert_eq!(h.likes(PlayId::new(4), 2), Changed::Nothing);
        assert_eq!(
            h.ended(PlayId::new(4), PlayEnd::Skipped, 3),
            Changed::Entry(PlayId::new(4))
        );
        assert_eq!(h.get(PlayId::new(4)).unwrap().likes, 3);
        assert_eq!(h.likes(PlayId::new(99), 1), Changed::Nothing);
        for id in 5..(5 + HISTORY_LEN as i64) {
            h.started(played(id));
        }
        assert_eq!(h.order().len(), HISTORY_LEN);
        let last = 4 + HISTORY_LEN as i64;
        assert_eq!(
            h.started(played(last + 1)),
            Changed::Added {
                id: PlayId::new(last + 1),
                dropped: Some(PlayId::new(5))
            }
        );
    }
}
