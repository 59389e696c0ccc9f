//! The library as MPD clients browse it: folders and files under the music folder (`lsinfo`,
//! `listall`), tag lists (`list … group …`), searches (`find`, `search`, `count`), `stats`, and
//! cover art in MPD's binary chunks (`albumart`, `readpicture`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::ack::{Ack, Code};
use super::filter::{self, Filter};
use super::mirror::{song_of, Model, Song};
use super::song::{self, TagMask};
use super::Ctx;

/// Every song of the library, by path.
async fn songs(ctx: &Ctx, name: &str) -> Result<Vec<Song>, Ack> {
    let music = ctx.music.clone();
    ctx.state
        .store
        .read(move |db| db.all_described())
        .await
        .map(|ts| ts.iter().map(|t| song_of(t, &music)).collect())
        .map_err(|e| {
            tracing::error!("mpd: reading the library: {e}");
            Ack::new(Code::System, name, "the library cannot be read")
        })
}

/// `stats`, from the library and the party's clock.
pub async fn stats(ctx: &Ctx, m: &Model, out: &mut String) -> Result<(), Ack> {
    let all = songs(ctx, "stats").await?;
    let artists: BTreeSet<&str> = all.iter().map(|s| s.artist.as_str()).collect();
    let albums: BTreeSet<&str> = all.iter().map(|s| s.album.as_str()).collect();
    let db_ms: u64 = all.iter().map(|s| s.duration_ms).sum();
    let _ = write!(
        out,
        "uptime: {}\nplaytime: {}\nartists: {}\nalbums: {}\nsongs: {}\ndb_playtime: {}\n\
         db_update: {}\n",
        m.started.elapsed().as_secs(),
        m.play_time().as_secs(),
        artists.iter().filter(|a| !a.is_empty()).count(),
        albums.iter().filter(|a| !a.is_empty()).count(),
        all.len(),
        db_ms / 1000,
        m.db_update,
    );
    Ok(())
}

/// The songs at `uri`: that file, or every file under that folder (`""` is the root).
pub async fn under(ctx: &Ctx, name: &str, uri: &str) -> Result<Vec<Song>, Ack> {
    let uri = uri.trim_matches('/');
    let found: Vec<Song> = songs(ctx, name)
        .await?
        .into_iter()
        .filter(|s| uri.is_empty() || s.file == uri || s.file.starts_with(&format!("{uri}/")))
        .collect();
    if found.is_empty() {
        return Err(Ack::new(Code::NoExist, name, "No such directory"));
    }
    Ok(found)
}

/// `lsinfo [URI]` (what is directly in a folder), `listall` and `listallinfo` (everything
/// under it).
pub async fn browse(
    ctx: &Ctx,
    name: &str,
    uri: Option<&str>,
    tags: TagMask,
    out: &mut String,
) -> Result<(), Ack> {
    let base = uri.unwrap_or("").trim_matches('/');
    let all = songs(ctx, name).await?;
    let prefix = if base.is_empty() {
        String::new()
    } else {
        format!("{base}/")
    };
    // A file's own URI: lsinfo of a song prints that song.
    if let Some(s) = all.iter().find(|s| !base.is_empty() && s.file == base) {
        if name == "listall" {
            let _ = writeln!(out, "file: {}", s.file);
        } else {
            song::write(out, s, tags);
        }
        return Ok(());
    }
    let inside: Vec<&Song> = all.iter().filter(|s| s.file.starts_with(&prefix)).collect();
    if inside.is_empty() && !base.is_empty() {
        return Err(Ack::new(Code::NoExist, name, "No such directory"));
    }
    let mut dirs_seen = BTreeSet::new();
    let directory = |out: &mut String, dir: &str| {
        let _ = writeln!(out, "directory: {dir}");
        // MPD's listall names files and folders only.
        if name == "listall" {
            return;
        }
        if let Some(t) = modified(&ctx.music.join(dir)) {
            let _ = writeln!(out, "Last-Modified: {}", crate::export::rfc3339(t * 1000));
        }
    };
    if name != "lsinfo" && !base.is_empty() {
        directory(out, base);
    }
    for s in inside {
        let rest = &s.file[prefix.len()..];
        let parts: Vec<&str> = rest.split('/').collect();
        let deep = name != "lsinfo";
        // The folders on the way, each once.
        let folders = if deep {
            parts.len() - 1
        } else {
            parts.len().min(2) - 1
        };
        for i in 0..folders {
            let dir = format!("{prefix}{}", parts[..=i].join("/"));
            if dirs_seen.insert(dir.clone()) {
                directory(out, &dir);
            }
        }
        if parts.len() == 1 || deep {
            if name == "listall" {
                let _ = writeln!(out, "file: {}", s.file);
            } else {
                song::write(out, s, tags);
            }
        }
    }
    Ok(())
}

/// A folder's modification time (Unix seconds), as MPD's `Last-Modified` of a directory.
fn modified(dir: &std::path::Path) -> Option<i64> {
    let t = std::fs::metadata(dir).ok()?.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// The songs `find`/`search` (and `findadd`/`searchadd`) select, with `sort` and `window`.
pub async fn matching(ctx: &Ctx, name: &str, args: &[String]) -> Result<Vec<Song>, Ack> {
    let fold = name.starts_with("search");
    let (f, rest) = filter::parse(args, fold).map_err(|e| Ack::arg(name, e))?;
    let mut found: Vec<Song> = songs(ctx, name)
        .await?
        .into_iter()
        .filter(|s| f.matches(s, fold))
        .collect();
    let mut rest = rest.iter();
    while let Some(k) = rest.next() {
        let v = rest
            .next()
            .ok_or_else(|| Ack::arg(name, format!("Missing argument after {k}")))?;
        match k.as_str() {
            "sort" => {
                let (tag, down) = match v.strip_prefix('-') {
                    Some(t) => (t, true),
                    None => (v.as_str(), false),
                };
                let key = |s: &Song| {
                    song::tag(s, tag)
                        .map(|v| v.into_owned())
                        .unwrap_or_default()
                };
                found.sort_by_key(key);
                if down {
                    found.reverse();
                }
            }
            "window" => {
                let (s, e) = v
                    .split_once(':')
                    .and_then(|(s, e)| Some((s.parse::<usize>().ok()?, e.parse::<usize>().ok()?)))
                    .ok_or_else(|| Ack::arg(name, "Bad window"))?;
                let e = e.min(found.len());
                found = found.drain(s.min(e)..e).collect();
            }
            other => return Err(Ack::arg(name, format!("Unknown argument: {other}"))),
        }
    }
    Ok(found)
}

/// `count FILTER [group TAG]`: songs and their play time.
pub async fn count(ctx: &Ctx, args: &[String], out: &mut String) -> Result<(), Ack> {
    let name = "count";
    let (f, rest) = filter::parse(args, false).map_err(|e| Ack::arg(name, e))?;
    let all: Vec<Song> = songs(ctx, name)
        .await?
        .into_iter()
        .filter(|s| f.matches(s, false))
        .collect();
    match rest {
        [] => {
            let ms: u64 = all.iter().map(|s| s.duration_ms).sum();
            let _ = write!(out, "songs: {}\nplaytime: {}\n", all.len(), ms / 1000);
        }
        [g, tag] if g == "group" => {
            let tag = canonical_tag(tag).ok_or_else(|| Ack::arg(name, "Unknown tag type"))?;
            let mut groups: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
            for s in &all {
                let k = song::tag(s, tag)
                    .map(|v| v.into_owned())
                    .unwrap_or_default();
                let e = groups.entry(k).or_default();
                e.0 += 1;
                e.1 += s.duration_ms;
            }
            for (k, (n, ms)) in groups {
                let _ = write!(out, "{tag}: {k}\nsongs: {n}\nplaytime: {}\n", ms / 1000);
            }
        }
        _ => return Err(Ack::arg(name, "Bad arguments")),
    }
    Ok(())
}

/// `list TAG [FILTER] [group TAG]…`: each value once; a group's value printed when it changes,
/// outermost first.
pub async fn list(ctx: &Ctx, args: &[String], out: &mut String) -> Result<(), Ack> {
    let name = "list";
    let tag = canonical_tag(&args[0]).ok_or_else(|| Ack::arg(name, "Unknown tag type"))?;
    let rest = &args[1..];
    // The old form: `list album ARTIST`.
    let (f, rest): (Filter, &[String]) =
        if tag == "Album" && rest.len() == 1 && !rest[0].starts_with('(') {
            (
                Filter::Tag {
                    tag: "Artist".into(),
                    op: filter::Op::Eq,
                    value: rest[0].clone(),
                },
                &[],
            )
        } else {
            filter::parse(rest, false).map_err(|e| Ack::arg(name, e))?
        };
    let mut groups = Vec::new();
    let mut it = rest.iter();
    while let Some(k) = it.next() {
        match (k.as_str(), it.next()) {
            ("group", Some(g)) => {
                groups.push(canonical_tag(g).ok_or_else(|| Ack::arg(name, "Unknown tag type"))?)
            }
            _ => return Err(Ack::arg(name, "Bad arguments")),
        }
    }
    let all = songs(ctx, name).await?;
    // Rows of (outermost group … innermost group, value), sorted and without repeats.
    let value = |s: &Song, t: &str| song::tag(s, t).map(|v| v.into_owned()).unwrap_or_default();
    let rows: BTreeSet<Vec<String>> = all
        .iter()
        .filter(|s| f.matches(s, false))
        .map(|s| {
            groups
                .iter()
                .rev()
                .map(|g| value(s, g))
                .chain([value(s, tag)])
                .collect()
        })
        .collect();
    let mut last: Vec<String> = Vec::new();
    let names: Vec<&str> = groups.iter().rev().copied().chain([tag]).collect();
    for row in rows {
        // Groups from the first that changed; the value every time.
        let from = row
            .iter()
            .zip(&last)
            .position(|(a, b)| a != b)
            .unwrap_or(last.len().min(row.len() - 1));
        // Songs without the tag are one more value, the empty one, as MPD lists them.
        for (i, v) in row.iter().enumerate().skip(from.min(row.len() - 1)) {
            let _ = writeln!(out, "{}: {v}", names[i]);
        }
        last = row;
    }
    Ok(())
}

fn canonical_tag(t: &str) -> Option<&'static str> {
    song::TAGS
        .iter()
        .chain(&["file"])
        .find(|x| x.eq_ignore_ascii_case(t))
        .copied()
}

/// One chunk of a song's cover art: `albumart` (a cover image in its folder, else the
/// embedded picture) or `readpicture` (the embedded picture, with its type). The same
/// `size`/`type` lines head every chunk, as clients check.
pub async fn picture(
    ctx: &Ctx,
    name: &str,
    uri: &str,
    offset: usize,
    limit: usize,
    bin: &mut Vec<u8>,
) -> Result<(), Ack> {
    let all = songs(ctx, name).await?;
    let Some(s) = all.iter().find(|s| s.file == uri) else {
        return Err(Ack::new(Code::NoExist, name, "No such file"));
    };
    let path = ctx.music.join(&s.file);
    let folder_first = name == "albumart";
    let art = tokio::task::spawn_blocking(move || {
        if folder_first {
            if let Some(a) = folder_cover(&path) {
                return Some(a);
            }
        }
        crate::library::cover_art(&path)
    })
    .await
    .ok()
    .flatten();
    let Some((bytes, mime)) = art else {
        // MPD: no file for albumart is an error; no picture for readpicture is an empty OK.
        return if name == "albumart" {
            Err(Ack::new(Code::NoExist, name, "No file exists"))
        } else {
            Ok(())
        };
    };
    if offset > bytes.len() {
        return Err(Ack::arg(name, "Offset too large"));
    }
    let chunk = &bytes[offset..(offset + limit).min(bytes.len())];
    let mut head = format!("size: {}\n", bytes.len());
    if name == "readpicture" {
        let _ = writeln!(head, "type: {mime}");
    }
    let _ = writeln!(head, "binary: {}", chunk.len());
    bin.extend_from_slice(head.as_bytes());
    bin.extend_from_slice(chunk);
    bin.push(b'\n');
    Ok(())
}

/// A cover image beside the file, as MPD looks for it.
fn folder_cover(path: &std::path::Path) -> Option<(Vec<u8>, String)> {
    let dir = path.parent()?;
    for (file, mime) in [
        ("cover.png", "image/png"),
        ("cover.jpg", "image/jpeg"),
        ("cover.webp", "image/webp"),
    ] {
        if let Ok(b) = std::fs::read(dir.join(file)) {
            return Some((b, mime.to_string()));
        }
    }
    None
}
