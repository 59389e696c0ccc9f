//! Library search on the wire: the rules of a query and its paging, defined once for the
//! websocket's `search` and `GET /api/search`.

use super::ids::parse_cursor;

/// A search, checked: the one definition of its rules and paging, for the websocket's
/// `search` and `GET /api/search`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub q: String,
    /// Results a page (1 to 100; 20 unless asked).
    pub limit: u32,
    /// Where the page starts (from the `cursor` of the previous answer).
    pub offset: u32,
}

impl SearchQuery {
    /// Characters a query may have.
    pub const MAX_QUERY: usize = 200;

    /// Checks a search; `Err` names the field at fault and says why. No cursor (or an empty
    /// one) is the first page.
    pub fn new(
        q: String,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SearchQuery, (&'static str, &'static str)> {
        if q.chars().count() > Self::MAX_QUERY {
            return Err(("q", "at most 200 characters"));
        }
        let offset = match cursor {
            None | Some("") => 0,
            Some(c) => parse_cursor(c).ok_or(("cursor", "not a cursor from a previous answer"))?,
        };
        Ok(SearchQuery {
            q,
            limit: limit.unwrap_or(20).clamp(1, 100),
            offset,
        })
    }

    /// How many rows to fetch: one more than a page, to know whether another follows.
    pub fn fetch(&self) -> u32 {
        self.limit + 1
    }

    /// Trims `fetched` (asked for with [`SearchQuery::fetch`]) to the page; the offset of
    /// the next page, if there is one.
    pub fn page<T>(&self, fetched: &mut Vec<T>) -> Option<u32> {
        let more = fetched.len() > self.limit as usize;
        fetched.truncate(self.limit as usize);
        more.then_some(self.offset + self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_rules_and_paging() {
        let q = SearchQuery::new("abba".into(), None, None).unwrap();
        assert_eq!((q.limit, q.offset, q.fetch()), (20, 0, 21));
        assert_eq!(
            SearchQuery::new(String::new(), Some(0), Some(""))
                .unwrap()
                .limit,
            1
        );
        assert_eq!(
            SearchQuery::new(String::new(), Some(500), None)
                .unwrap()
                .limit,
            100
        );
        assert_eq!(
            SearchQuery::new("x".repeat(201), None, None).unwrap_err().0,
            "q"
        );
        assert_eq!(
            SearchQuery::new(String::new(), None, Some("zz"))
                .unwrap_err()
                .0,
            "cursor"
        );
        let q = SearchQuery::new(String::new(), Some(2), Some("c4")).unwrap();
        let mut rows = vec![1, 2, 3];
        assert_eq!(q.page(&mut rows), Some(6));
        assert_eq!(rows, [1, 2]);
        let mut rows = vec![1, 2];
        assert_eq!(q.page(&mut rows), None);
    }
}
