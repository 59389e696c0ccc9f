//! A guard in front of the MP4 demuxer. symphonia 0.5 sizes the sample tables of an MP4 file
//! (`stts`, `stsc`, `stsz`, `stco`, `co64`) by the entry count the file claims, before it has
//! read one entry, so one corrupt count asks for up to 51 GB at once. A failed allocation
//! aborts the process (no `catch_unwind` stops it): one bad file in the music folder would
//! take the whole party down, and again at every restart. So a table whose count needs more
//! bytes than its box holds is refused here, and no table can be sized beyond its file.
//! (Found by the `audio_file` fuzz target.)

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// How far into a file symphonia's probe looks for the `ftyp` that marks MP4.
const PROBE_WINDOW: usize = 1 << 20;

/// Boxes that hold the sample tables, at any depth (fragments too).
const CONTAINERS: [&[u8; 4]; 8] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"moof", b"traf",
];

/// Boxes nest no deeper than this in a file we would play.
const MAX_DEPTH: u32 = 16;

/// Checks `file` (from its start) if it is MP4, and leaves it at its start. `Err` names the
/// table that claims more than its box holds.
pub fn check(file: &mut File) -> Result<(), String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut head = Vec::new();
    file.by_ref()
        .take(PROBE_WINDOW as u64)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let verdict = match head.windows(4).position(|w| w == b"ftyp") {
        Some(at) if at >= 4 => walk(file, at as u64 - 4, len, 0),
        _ => Ok(()),
    };
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    verdict
}

fn read_u32(file: &mut File) -> std::io::Result<u32> {
    let mut b = [0; 4];
    file.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// The boxes between `start` and `end`; what cannot be read ends the walk (the demuxer then
/// says what is wrong with the file, and the tables it never reaches are never sized).
fn walk(file: &mut File, start: u64, end: u64, depth: u32) -> Result<(), String> {
    let mut at = start;
    // A 64-bit box size takes `at` as far as u64 goes: nothing here may overflow.
    while end.saturating_sub(at) >= 8 {
        if file.seek(SeekFrom::Start(at)).is_err() {
            return Ok(());
        }
        let mut h = [0u8; 8];
        if file.read_exact(&mut h).is_err() {
            return Ok(());
        }
        let kind: [u8; 4] = [h[4], h[5], h[6], h[7]];
        let (size, header) = match u32::from_be_bytes([h[0], h[1], h[2], h[3]]) {
            0 => (end - at, 8),
            1 => {
                let mut b = [0; 8];
                if file.read_exact(&mut b).is_err() {
                    return Ok(());
                }
                (u64::from_be_bytes(b), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header {
            return Ok(());
        }
        // A box cut short (a truncated download) holds what is there.
        let box_end = at.saturating_add(size).min(end);
        if CONTAINERS.contains(&&kind) && depth < MAX_DEPTH {
            walk(file, at + header, box_end, depth + 1)?;
        } else {
            table(file, &kind, at + header, box_end)?;
        }
        at = at.saturating_add(size);
    }
    Ok(())
}

/// Checks one sample table's count against the bytes of its box (`payload` to `end`).
fn table(file: &mut File, kind: &[u8; 4], payload: u64, end: u64) -> Result<(), String> {
    // The bytes before the entries (version and flags, then the count), and each entry's.
    let (fixed, entry) = match kind {
        b"stts" => (8, 8),
        b"stsc" => (8, 12),
        b"stco" => (8, 4),
        b"co64" => (8, 8),
        // The sample size comes before the count; a table follows only when it is 0.
        b"stsz" => (12, 4),
        _ => return Ok(()),
    };
    if file.seek(SeekFrom::Start(payload + 4)).is_err() {
        return Ok(());
    }
    let count = if kind == b"stsz" {
        let (Ok(sample_size), Ok(count)) = (read_u32(file), read_u32(file)) else {
            return Ok(());
        };
        if sample_size != 0 {
            return Ok(());
        }
        count
    } else {
        let Ok(count) = read_u32(file) else {
            return Ok(());
        };
        count
    };
    let needed = fixed + u64::from(count) * entry;
    let holds = end.saturating_sub(payload);
    if needed > holds {
        return Err(format!(
            "a damaged MP4 file: its {} table claims {count} entries, which {holds} bytes cannot hold",
            String::from_utf8_lossy(kind)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    /// An MP4 whose sample table is `kind` with `count` claimed and `entries` bytes present.
    fn mp4(kind: &[u8; 4], count: u32, entries: usize) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0];
        if kind == b"stsz" {
            body.extend_from_slice(&0u32.to_be_bytes());
        }
        body.extend_from_slice(&count.to_be_bytes());
        body.extend(std::iter::repeat_n(0, entries));
        let stbl = boxed(b"stbl", &boxed(kind, &body));
        let moov = boxed(
            b"moov",
            &boxed(b"trak", &boxed(b"mdia", &boxed(b"minf", &stbl))),
        );
        let mut file = boxed(b"ftyp", b"M4A \0\0\0\0isom");
        file.extend(moov);
        file
    }

    fn checked(bytes: &[u8]) -> Result<(), String> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let r = check(&mut f);
        assert_eq!(f.stream_position().unwrap(), 0, "left at its start");
        r
    }

    #[test]
    fn a_count_beyond_its_box_is_refused_and_one_within_passes() {
        for (kind, entry) in [
            (b"stts", 8),
            (b"stsc", 12),
            (b"stsz", 4),
            (b"stco", 4),
            (b"co64", 8),
        ] {
            assert_eq!(checked(&mp4(kind, 3, 3 * entry)), Ok(()));
            let err = checked(&mp4(kind, u32::MAX, 3 * entry)).unwrap_err();
            assert!(err.contains(std::str::from_utf8(kind).unwrap()), "{err}");
            assert!(
                checked(&mp4(kind, 4, 3 * entry)).is_err(),
                "one entry short"
            );
        }
    }

    #[test]
    fn what_is_not_mp4_or_cannot_be_walked_is_left_to_the_demuxer() {
        assert_eq!(checked(b"fLaC\0\0\0\x22"), Ok(()));
        assert_eq!(checked(b""), Ok(()));
        // A box that claims less than its header, and one cut short.
        assert_eq!(checked(b"\0\0\0\x10ftypM4A \0\0\0\x03moov"), Ok(()));
        let mut cut = mp4(b"stts", 3, 24);
        cut.truncate(cut.len() - 10);
        assert!(
            checked(&cut).is_err(),
            "the table no longer fits its cut box"
        );
        // A 64-bit size that takes the walk to the end of u64 (the fuzz target's find).
        let mut huge = boxed(b"ftyp", b"M4A \0\0\0\0isom");
        huge.extend_from_slice(&1u32.to_be_bytes());
        huge.extend_from_slice(b"free");
        huge.extend_from_slice(&(u64::MAX - 3).to_be_bytes());
        huge.extend_from_slice(&[0; 32]);
        assert_eq!(checked(&huge), Ok(()));
    }
}
