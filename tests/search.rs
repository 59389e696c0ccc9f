//! Full-text search on a real SQLite file: prefixes, accents and case, ranking, pagination,
//! and input that looks like FTS syntax.

mod common;

use std::path::PathBuf;

use jukebox::store::{ScannedTrack, Store};

fn track(i: usize, title: &str, artist: &str, album: &str) -> ScannedTrack {
    ScannedTrack {
        path: PathBuf::from(format!("/music/{i}.mp3")),
        size: 1,
        mtime_ns: 1,
        title: title.into(),
        artist: artist.into(),
        album: album.into(),
        track_no: None,
        duration_ms: 1000,
        has_art: false,
        tag_levels: Default::default(),
        details: Default::default(),
    }
}

fn titles(store: &Store, q: &str, limit: u32, offset: u32) -> Vec<String> {
    let q = q.to_string();
    store
        .read_blocking(move |db| db.search(&q, limit, offset))
        .unwrap()
        .into_iter()
        .map(|t| t.title)
        .collect()
}

#[test]
fn search_rules() {
    let dir = common::tempdir();
    let (store, _t) = Store::open(&dir.path().join("j.db")).unwrap();
    let rows = vec![
        track(1, "Dancing Queen", "ABBA", "Arrival"),
        track(2, "Halo", "Beyoncé", "I Am... Sasha Fierce"),
        track(3, "Crazy in Love", "Beyoncé", "Dangerously in Love"),
        track(4, "Queen of the Night", "Whitney Houston", "The Bodyguard"),
        track(5, "Bohemian Rhapsody", "Queen", "A Night at the Opera"),
        track(6, "Señorita", "Shawn Mendes", "Shawn Mendes"),
        track(7, "Über Alles", "Kraftwerk-ish", "Düsseldorf"),
        track(8, "AND OR NOT", "\"Quotes\"", "NEAR(x)"),
    ];
    store
        .write_blocking(move |db| {
            for r in &rows {
                db.upsert_track(r)?;
            }
            Ok(())
        })
        .unwrap();

    // (query, expected titles in order; None = just check membership of the first)
    let table: &[(&str, &[&str])] = &[
        // prefix matching on every word
        ("danc", &["Dancing Queen"]),
        ("dan que", &["Dancing Queen"]),
        // accents and case do not matter, in both directions
        ("beyonce", &["Crazy in Love", "Halo"]),
        ("BEYONCÉ halo", &["Halo"]),
        ("senorita", &["Señorita"]),
        ("uber", &["Über Alles"]),
        ("dusseldorf", &["Über Alles"]),
        // across title, artist and album
        ("arrival", &["Dancing Queen"]),
        ("sasha", &["Halo"]),
        // FTS syntax is just text
        ("AND OR NOT", &["AND OR NOT"]),
        ("near(", &["AND OR NOT"]),
        ("\"quotes", &["AND OR NOT"]),
        ("zzzz", &[]),
    ];
    for (q, want) in table {
        let mut got = titles(&store, q, 20, 0);
        if *q == "beyonce" {
            got.sort();
        }
        assert_eq!(&got, want, "query {q:?}");
    }

    // Nothing searchable (punctuation only) lists the library, like an empty box.
    assert_eq!(titles(&store, "***", 20, 0).len(), 8);

    // Ranking: a title match beats an artist match beats an album match.
    let q = titles(&store, "queen", 20, 0);
    assert_eq!(q.len(), 3, "{q:?}");
    assert!(
        q[..2].contains(&"Dancing Queen".to_string())
            && q[..2].contains(&"Queen of the Night".to_string()),
        "title matches first: {q:?}"
    );
    assert_eq!(q[2], "Bohemian Rhapsody", "artist match after: {q:?}");
    let night = titles(&store, "night", 20, 0);
    assert_eq!(
        night,
        vec!["Queen of the Night", "Bohemian Rhapsody"],
        "album match last"
    );
}

#[test]
fn pagination_is_stable_and_complete() {
    let dir = common::tempdir();
    let (store, _t) = Store::open(&dir.path().join("j.db")).unwrap();
    store
        .write_blocking(|db| {
            for i in 0..95 {
                db.upsert_track(&track(i, &format!("Love Song {i:03}"), "Band", "Hits"))?;
            }
            db.upsert_track(&track(1000, "Unrelated", "Other", "Else"))?;
            Ok(())
        })
        .unwrap();
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = titles(&store, "lov", 20, offset);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 20);
        offset += page.len() as u32;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 95);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 95, "no title twice across pages");
    // An empty query lists the library A-Z (by artist), also paginated.
    assert_eq!(titles(&store, "", 100, 0).len(), 96);
    assert_eq!(titles(&store, "  ", 10, 90).len(), 6);
    // Limits are clamped.
    assert_eq!(titles(&store, "", 100_000, 0).len(), 96);
    assert_eq!(titles(&store, "", 0, 0).len(), 1);
}
