//! `jukebox export`: tonight's plays, with who requested each and its likes, as M3U or CSV.
//! "Tonight" is the latest party: the plays since the last gap of `--gap-hours` without music.
//! Reads the database read-only, so it can run beside a playing jukebox.

use std::io::Write;
use std::path::Path;

use crate::config::ExportFormat;
use crate::store::{Db, PlayEnd, PlayReport, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the export: {0}")]
    Csv(#[from] csv::Error),
}

/// The plays of the latest party, oldest first.
pub fn tonight(db: &Db, gap_hours: u32) -> Result<Vec<PlayReport>, StoreError> {
    let gap_ms = i64::from(gap_hours) * 3600 * 1000;
    match db.party_start(gap_ms)? {
        Some(start) => db.plays_since(start),
        None => Ok(Vec::new()),
    }
}

pub fn run(
    db_path: &Path,
    format: ExportFormat,
    gap_hours: u32,
    out: &mut dyn Write,
) -> Result<usize, ExportError> {
    let db = Db::open_readonly(db_path)?;
    let plays = tonight(&db, gap_hours)?;
    match format {
        ExportFormat::M3u => write_m3u(&plays, out)?,
        ExportFormat::Csv => write_csv(&plays, out)?,
    }
    Ok(plays.len())
}

pub fn write_m3u(plays: &[PlayReport], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "#EXTM3U")?;
    for p in plays {
        let secs = p.track.duration_ms.div_ceil(1000);
        let who = p.requested_by.as_deref().unwrap_or("auto-DJ");
        // Comment lines are ignored by players but keep who asked and how it was liked.
        let dedication = p
            .dedication
            .as_deref()
            .map(|d| format!("; for {}", one_line(d)))
            .unwrap_or_default();
        writeln!(
            out,
            "# requested by {}; {} likes{dedication}",
            one_line(who),
            p.likes
        )?;
        let label = if p.track.artist.is_empty() {
            p.track.title.clone()
        } else {
            format!("{} - {}", p.track.artist, p.track.title)
        };
        writeln!(out, "#EXTINF:{secs},{}", one_line(&label))?;
        writeln!(out, "{}", p.track.path.display())?;
    }
    Ok(())
}

pub fn write_csv(plays: &[PlayReport], out: &mut dyn Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "started_at",
        "title",
        "artist",
        "album",
        "duration_s",
        "requested_by",
        "votes",
        "likes",
        "ended",
        "path",
        "dedication",
    ])?;
    for p in plays {
        w.write_record([
            rfc3339(p.started_ms),
            cell(&p.track.title),
            cell(&p.track.artist),
            cell(&p.track.album),
            p.track.duration_ms.div_ceil(1000).to_string(),
            cell(p.requested_by.as_deref().unwrap_or_default()),
            p.votes.to_string(),
            p.likes.to_string(),
            p.end_reason.map_or("playing", PlayEnd::as_str).to_string(),
            cell(&p.track.path.display().to_string()),
            cell(p.dedication.as_deref().unwrap_or_default()),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// A text cell a spreadsheet will not run: guest names and tags are anyone's text, and
/// `=HYPERLINK(...)` in a name must stay text when the host opens the export (OWASP's CSV
/// injection advice: a leading `'` before `= + - @`, tab or carriage return).
fn cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ` (also MPD's `Last-Modified`).
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_stay_text() {
        let table = [
            (
                "=HYPERLINK(\"http://x\",\"a\")",
                "'=HYPERLINK(\"http://x\",\"a\")",
            ),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("Mia", "Mia"),
            ("a=b", "a=b"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(cell(input), want, "{input:?}");
        }
    }

    #[test]
    fn utc_times() {
        let table = [
            (0, "1970-01-01T00:00:00Z"),
            (1_718_040_081_200, "2024-06-10T17:21:21Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
        ];
        for (ms, want) in table {
            assert_eq!(rfc3339(ms), want);
        }
    }
}
