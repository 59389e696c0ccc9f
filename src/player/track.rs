//! One track in the engine: its converted source, decoded ahead into a buffer so that its end is
//! known before it is heard (not trusted from the container's duration), its levelling gain and
//! its crossfade curve.

use std::num::NonZero;

use super::decode::{self, Converted};
use super::ramp::{db_to_gain, EqualPower, Ramp};
use super::{silence, PlayItem};

/// A change of levelling gain while a track plays takes this long (no audible step).
const GAIN_RAMP_S: f32 = 0.3;
/// Decoding ahead never takes more than this many times the frames a step plays, so one step
/// never spends long decoding while the buffer grows to its target.
const FILL_RATE: usize = 4;
/// Decoding ahead starts this long (plus 5% of the track) before the end the container
/// announces. Only *when to start* comes from the container: the seam itself is placed by
/// what was decoded, so a container that is a little off costs nothing, and one that is far
/// off (too long) costs at worst a shorter crossfade. Until then a step decodes only what it
/// plays, into a buffer that stays in the cache.
const EARLY_S: u64 = 20;

pub struct Track {
    pub item: PlayItem,
    source: Converted,
    channels: usize,
    rate: u32,
    /// Decoded samples (ungained), not yet mixed, from `head` on.
    buf: Vec<f32>,
    head: usize,
    /// The source has nothing more: what is in `buf` is the rest of the track.
    eof: bool,
    /// Frames of the file already mixed (where the track is, for positions and resumes).
    pub frames: u64,
    tail_trimmed: bool,
    /// Frames of leading silence trimmed (counted in `frames`, but not music).
    head_trimmed: u64,
    gain: Ramp,
    fade: Option<EqualPower>,
    /// As the container says (for the crossfade's "long enough" rule only).
    pub duration_ms: Option<u64>,
}

impl Track {
    /// Opens `item` converted to `channels` × `rate`, at `item.start_ms`.
    pub fn open(
        item: PlayItem,
        channels: NonZero<u16>,
        rate: NonZero<u32>,
    ) -> Result<Track, String> {
        let opened = decode::open(&item, channels, rate)?;
        let rate = rate.get();
        Ok(Track {
            frames: opened.start_ms * u64::from(rate) / 1000,
            gain: Ramp::new(db_to_gain(item.gain_db)),
            item,
            source: opened.source,
            channels: usize::from(channels.get()),
            rate,
            buf: Vec::new(),
            head: 0,
            eof: false,
            tail_trimmed: false,
            head_trimmed: 0,
            fade: None,
            duration_ms: opened.duration_ms,
        })
    }

    pub fn key(&self) -> super::Key {
        self.item.key
    }

    pub fn position_ms(&self) -> u64 {
        self.frames * 1000 / u64::from(self.rate.max(1))
    }

    /// Decoded frames waiting.
    pub fn buffered(&self) -> usize {
        (self.buf.len() - self.head) / self.channels
    }

    /// Frames left in the track, once its end has been decoded.
    pub fn remaining(&self) -> Option<usize> {
        self.eof.then(|| self.buffered())
    }

    /// The track's whole length in frames, once its end has been decoded.
    pub fn total_frames(&self) -> Option<u64> {
        self.remaining().map(|r| self.frames + r as u64)
    }

    /// How long the music is, without the leading silence trimmed: the track's whole length
    /// once its end is decoded (and its tail trimmed), else the container's word for it.
    pub fn music_frames(&self) -> Option<u64> {
        let total = self
            .total_frames()
            .or_else(|| self.duration_ms.map(|ms| ms * u64::from(self.rate) / 1000))?;
        Some(total.saturating_sub(self.head_trimmed))
    }

    /// Decodes until `ahead` frames wait (or the end), but at most `FILL_RATE × step` frames
    /// now, and always at least `need` (what this step must mix).
    pub fn fill(&mut self, ahead: usize, step: usize, need: usize) {
        if self.eof {
            return;
        }
        let have = self.buffered();
        let rate = u64::from(self.rate);
        let far = self.duration_ms.is_some_and(|ms| {
            let total = ms * rate / 1000;
            let early = EARLY_S * rate + total / 20 + ahead as u64;
            self.frames + have as u64 + early < total
        });
        let ahead = if far { 0 } else { ahead };
        let want = ahead.min(have + FILL_RATE * step).max(need);
        if have >= want {
            return;
        }
        // Compact: keep the buffer one contiguous slice without growing forever. Each sample
        // moves at most once on average (only when half the buffer has been played).
        if self.head > 0 && self.head * 2 >= self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        let samples = (want - have) * self.channels;
        let before = self.buf.len();
        self.source.read(&mut self.buf, samples);
        let got = self.buf.len() - before;
        if got < samples {
            self.eof = true;
            // A decoder that ended mid-frame: whole frames only.
            let whole = (self.buf.len() - self.head) / self.channels * self.channels;
            self.buf.truncate(self.head + whole);
        }
    }

    /// Drops digital silence at the start, looking at most `limit` frames ahead.
    pub fn trim_head(&mut self, limit: usize, step: usize) {
        let min_run = self.min_run();
        self.fill(min_run + 1, min_run + 1, min_run + 1);
        let lead = silence::leading(&self.buf[self.head..], self.channels);
        if lead < min_run && lead < self.buffered() {
            return; // the music starts at once
        }
        let mut skipped = 0;
        while skipped < limit {
            if self.buffered() == 0 {
                self.fill(step, step, step);
                if self.buffered() == 0 {
                    break;
                }
            }
            let quiet =
                silence::leading(&self.buf[self.head..], self.channels).min(limit - skipped);
            self.head += quiet * self.channels;
            skipped += quiet;
            if self.buffered() > 0 {
                break; // a loud frame is next
            }
        }
        self.frames += skipped as u64;
        self.head_trimmed += skipped as u64;
        if skipped > 0 {
            tracing::debug!(
                "{}: {} ms of leading silence trimmed",
                self.item.path.display(),
                skipped as u64 * 1000 / u64::from(self.rate)
            );
        }
    }

    /// Drops digital silence at the end (once its end is decoded; at most what is buffered).
    pub fn trim_tail(&mut self) {
        if !self.eof || self.tail_trimmed {
            return;
        }
        self.tail_trimmed = true;
        let quiet = silence::trailing(&self.buf[self.head..], self.channels);
        if quiet < self.min_run() && quiet < self.buffered() {
            return;
        }
        self.buf.truncate(self.buf.len() - quiet * self.channels);
    }

    fn min_run(&self) -> usize {
        (silence::MIN_RUN_S * self.rate as f32) as usize
    }

    /// A new levelling gain: ramped while playing, at once when not yet heard.
    pub fn set_gain_db(&mut self, db: f32, playing: bool) {
        self.item.gain_db = db;
        let frames = if playing {
            (GAIN_RAMP_S * self.rate as f32) as u32
        } else {
            0
        };
        self.gain.to(db_to_gain(db), frames);
    }

    pub fn set_fade(&mut self, fade: Option<EqualPower>) {
        self.fade = fade;
    }

    /// Mixes up to `dst.len()` samples of buffered audio, gained (and faded), into `dst`:
    /// written when `add` is false, summed when true. Returns the frames it mixed.
    pub fn mix_into(&mut self, dst: &mut [f32], add: bool) -> usize {
        let ch = self.channels;
        let frames = (dst.len() / ch).min(self.buffered());
        let n = frames * ch;
        let src = &self.buf[self.head..self.head + n];
        let dst = &mut dst[..n];
        if self.fade.is_none() && !self.gain.moving() {
            // The common case: one constant gain, a loop the compiler vectorises.
            let g = self.gain.value();
            if add {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s * g);
            } else {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d = s * g);
            }
        } else {
            for (d, s) in dst.chunks_exact_mut(ch).zip(src.chunks_exact(ch)) {
                let mut g = self.gain.next_gain();
                if let Some(f) = self.fade.as_mut() {
                    g *= f.next_gain();
                }
                for (d, s) in d.iter_mut().zip(s) {
                    *d = if add { *d + s * g } else { s * g };
                }
            }
        }
        self.head += n;
        self.frames += frames as u64;
        frames
    }

    /// Moves to `ms` in the file, dropping what was decoded ahead.
    pub fn seek(&mut self, ms: u64) -> Result<(), String> {
        self.source
            .try_seek(std::time::Duration::from_millis(ms))
            .map_err(|e| e.to_string())?;
        self.buf.clear();
        self.head = 0;
        self.eof = false;
        self.tail_trimmed = false;
        self.frames = ms * u64::from(self.rate) / 1000;
        Ok(())
    }
}
