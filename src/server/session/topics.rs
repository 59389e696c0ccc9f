//! The topics a session follows.

use crate::protocol::Topic;

/// A set of topics as bits: one byte per session instead of a tree node.
#[derive(Clone, Copy, Default)]
pub(super) struct TopicSet(u8);

impl TopicSet {
    fn bit(t: Topic) -> u8 {
        1 << (t as u8)
    }

    pub(super) fn contains(self, t: Topic) -> bool {
        self.0 & Self::bit(t) != 0
    }

    /// True when `t` was not in the set.
    pub(super) fn insert(&mut self, t: Topic) -> bool {
        let new = !self.contains(t);
        self.0 |= Self::bit(t);
        new
    }

    pub(super) fn remove(&mut self, t: Topic) {
        self.0 &= !Self::bit(t);
    }

    pub(super) fn to_vec(self) -> Vec<Topic> {
        Topic::ALL
            .into_iter()
            .filter(|t| self.contains(*t))
            .collect()
    }
}

impl FromIterator<Topic> for TopicSet {
    fn from_iter<I: IntoIterator<Item = Topic>>(topics: I) -> TopicSet {
        let mut set = TopicSet::default();
        for t in topics {
            set.insert(t);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_its_own_bit() {
        const { assert!(Topic::ALL.len() <= 8, "a TopicSet is one byte") };
        let mut set = TopicSet::default();
        for t in Topic::ALL {
            assert!(set.insert(t), "{t:?} was not in the set yet");
            assert!(!set.insert(t), "{t:?} is in it now");
        }
        assert_eq!(set.to_vec(), Topic::ALL.to_vec());
        set.remove(Topic::ALL[0]);
        assert!(!set.contains(Topic::ALL[0]) && set.contains(Topic::ALL[1]));
        let two: TopicSet = [Topic::ALL[1], Topic::ALL[1], Topic::ALL[2]]
            .into_iter()
            .collect();
        assert_eq!(two.to_vec(), Topic::ALL[1..3].to_vec());
    }
}
