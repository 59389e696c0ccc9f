//! A track converted to the output's channels and rate, a block at a time.
//!
//! The rate goes through rubato's synchronous FFT resampler, made for fixed ratios such as
//! 48000 → 44100 (160:147): band-limited (its filter, a Blackman-Harris² windowed sinc as long
//! as a block, is flat past 20 kHz and cuts from the lower Nyquist on) and, measured here,
//! cheaper than the linear interpolation in rodio's converter that it replaces, which lost
//! 3 dB at 16 kHz and let a 23 kHz tone fold back to 21.1 kHz nearly whole.
//!
//! The resampler delays its output by half a block and needs input past the end to give back
//! its last frames. The stream is cut to what a perfect converter would give:
//! `round(frames_in × out_rate / in_rate)` frames, the first at the input's first, because the
//! engine's positions, lengths, trims and crossfades count output frames.

use std::num::NonZero;
use std::time::Duration;

use rodio::source::SeekError;
use rodio::Source;
use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::Native;

/// The resampler's block, in input frames, at least (rounded up to an even number of periods
/// of the ratio: 1280 at 48000 → 44100). Its filter is as long as a block, so longer is
/// sharper: 20 kHz measures flat to 0.001 dB. Blocks of 320 to 1024 frames cost the same per
/// frame here; 2048 costs 15% more, 4096 70% more.
const BLOCK: usize = 1024;

/// `native` in another rate or channel count.
pub struct Resampled {
    native: Native,
    in_ch: usize,
    /// Which resampled channel each output channel takes (`None`: silence).
    map: Box<[Option<usize>]>,
    /// `None` when only the channels differ.
    rate: Option<Rate>,
    /// Interleaved input as the decoder gives it (the channel-only path maps it at once).
    raw: Vec<f32>,
    /// Converted frames, interleaved in the output's channels, handed out from `ready_pos`.
    ready: Vec<f32>,
    ready_pos: usize,
    /// The decoder has nothing more.
    input_ended: bool,
}

/// The resampler and its bookkeeping, from the last start or seek.
struct Rate {
    fft: Fft<f32>,
    in_rate: u64,
    out_rate: u64,
    /// Input frames per whole period of the ratio (160 at 48000 → 44100): a stretch of that
    /// many input frames is a whole number of output frames.
    period_in: u64,
    /// The resampler's input block, in frames.
    block: usize,
    /// Frames of reflection before the first frame and after the last (half a block).
    pad: usize,
    /// Planar buffers, one per resampled channel (the fewer of the input's and output's):
    /// the input not yet resampled (`staged` frames, the first block of it next), and the
    /// output of the last block.
    stage: Vec<Vec<f32>>,
    staged: usize,
    output: Vec<Vec<f32>>,
    /// The reflection before the first frame is in place.
    primed: bool,
    /// Input frames decoded only so the filter has the history before a seek target.
    preroll: u64,
    /// Input frames fed since the last start or seek (preroll included).
    fed: u64,
    /// Output frames still to drop: the resampler's delay, plus the preroll's frames.
    skip: usize,
    /// Output frames handed out since the start or seek target.
    emitted: u64,
    /// Once the input has ended: how many frames the output has in all from the target.
    end: Option<u64>,
}

impl Resampled {
    pub fn new(
        native: Native,
        channels: NonZero<u16>,
        rate: NonZero<u32>,
    ) -> Result<Resampled, String> {
        let in_ch = usize::from(native.channels().get());
        let out_ch = usize::from(channels.get());
        // rodio's mapping, kept: mono goes to both sides; otherwise channel n to channel n,
        // extra output channels silent and extra input channels dropped (a multichannel file
        // keeps its front pair). A real downmix would need the layout, which `Native` does not
        // carry, and the decoders do not agree on the order past stereo.
        let map = (0..out_ch)
            .map(|c| match c {
                c if c < in_ch => Some(c),
                1 if in_ch == 1 => Some(0),
                _ => None,
            })
            .collect();
        let (in_rate, out_rate) = (native.sample_rate().get(), rate.get());
        let rate = (in_rate != out_rate)
            .then(|| Rate::new(in_rate, out_rate, in_ch.min(out_ch)))
            .transpose()?;
        let block = rate.as_ref().map_or(BLOCK, |r| r.fft.input_frames_max());
        let ready_frames = rate.as_ref().map_or(BLOCK, |r| r.fft.output_frames_max());
        Ok(Resampled {
            native,
            in_ch,
            map,
            rate,
            raw: Vec::with_capacity(block * in_ch),
            ready: Vec::with_capacity(ready_frames * out_ch),
            ready_pos: 0,
            input_ended: false,
        })
    }

    /// Appends `samples` samples to `out`, fewer only where the stream ends.
    pub fn read(&mut self, out: &mut Vec<f32>, samples: usize) {
        out.reserve(samples);
        let mut left = samples;
        while left > 0 {
            if self.ready_pos >= self.ready.len() && !self.convert() {
                return;
            }
            let n = left.min(self.ready.len() - self.ready_pos);
            out.extend_from_slice(&self.ready[self.ready_pos..self.ready_pos + n]);
            self.ready_pos += n;
            left -= n;
        }
    }

    /// Moves to `pos` of the track, where a straight read would be at that time: the
    /// resampler restarts empty, so the decoder seeks a block earlier to give its filter the
    /// history it had there, and what that block makes is dropped.
    pub fn try_seek(&mut self, pos: Duration) -> Result<(), SeekError> {
        self.ready.clear();
        self.ready_pos = 0;
        self.input_ended = false;
        let Some(r) = self.rate.as_mut() else {
            return self.native.try_seek(pos);
        };
        let target = (pos.as_nanos() * u128::from(r.in_rate) / 1_000_000_000) as u64;
        // Whole periods only, so that the dropped output is a whole number of frames and the
        // output's frames fall where a straight read's do.
        let preroll = (target / r.period_in * r.period_in).min(r.fft.input_frames_max() as u64);
        r.restart(preroll);
        self.native
            .try_seek(frames_to_duration(target - preroll, r.in_rate))
    }

    /// Converts the next block into `ready`; `false` when the stream has ended.
    fn convert(&mut self) -> bool {
        self.ready.clear();
        self.ready_pos = 0;
        let Some(r) = self.rate.as_mut() else {
            // Only the channels differ: map what the decoder gives.
            if self.input_ended {
                return false;
            }
            self.raw.clear();
            self.native.read(&mut self.raw, BLOCK * self.in_ch);
            let whole = self.raw.len() / self.in_ch * self.in_ch;
            if whole < BLOCK * self.in_ch {
                self.input_ended = true;
            }
            for frame in self.raw[..whole].chunks_exact(self.in_ch) {
                self.ready
                    .extend(self.map.iter().map(|m| m.map_or(0.0, |c| frame[c])));
            }
            return whole > 0;
        };
        while self.ready.is_empty() {
            if r.end.is_some_and(|end| r.emitted >= end) {
                return false;
            }
            // A block, and past it the frames the end's reflection needs.
            let want = r.block + r.pad + 1;
            while !self.input_ended && r.staged < want {
                self.raw.clear();
                self.native
                    .read(&mut self.raw, (want - r.staged) * self.in_ch);
                let got = self.raw.len() / self.in_ch;
                deinterleave(&self.raw, self.in_ch, &mut r.stage, r.staged);
                r.staged += got;
                r.fed += got as u64;
                if r.staged < want {
                    self.input_ended = true;
                    // What a perfect converter makes of the frames after the preroll.
                    let frames = r.fed.saturating_sub(r.preroll);
                    r.end = Some((frames * r.out_rate + r.in_rate / 2) / r.in_rate);
                    r.reflect_tail();
                }
            }
            if !r.primed {
                r.reflect_head();
            }
            let made = match r.process() {
                Ok(made) => made,
                Err(e) => {
                    // Buffers sized wrong: a bug, but one that costs the track, not the thread.
                    tracing::warn!("resampling failed ({e}); the track ends here");
                    r.end = Some(r.emitted);
                    return false;
                }
            };
            let skip = r.skip.min(made);
            r.skip -= skip;
            let mut take = made - skip;
            if let Some(end) = r.end {
                take = take.min((end - r.emitted) as usize);
            }
            r.emitted += take as u64;
            interleave(&r.output, skip..skip + take, &self.map, &mut self.ready);
        }
        true
    }
}

impl Rate {
    fn new(in_rate: u32, out_rate: u32, channels: usize) -> Result<Rate, String> {
        let gcd = gcd(u64::from(in_rate), u64::from(out_rate));
        let period_in = u64::from(in_rate) / gcd;
        // The filter is centred on the block's middle input frame: that is a whole output
        // frame only if both blocks are even, that is an even number of periods (the two
        // periods are coprime, so one is odd). 7 periods at 48000 → 44100 would put every
        // output frame half a frame late.
        let periods = (BLOCK as u64).div_ceil(period_in).next_multiple_of(2);
        // A fixed input and output block (`Both`): one FFT per call, no buffering inside.
        let fft = Fft::<f32>::new(
            in_rate as usize,
            out_rate as usize,
            (periods * period_in) as usize,
            channels,
            FixedSync::Both,
        )
        .map_err(|e| format!("cannot resample {in_rate} Hz to {out_rate} Hz: {e}"))?;
        debug_assert!(fft.fft_size_in() % 2 == 0 && fft.fft_size_out() % 2 == 0);
        let block = fft.input_frames_max();
        let mut r = Rate {
            block,
            pad: block / 2,
            // At most a block, the reflection's frame and both reflections.
            stage: vec![vec![0.0; 2 * block + 1]; channels],
            staged: 0,
            output: vec![vec![0.0; fft.output_frames_max()]; channels],
            primed: false,
            fft,
            in_rate: u64::from(in_rate),
            out_rate: u64::from(out_rate),
            period_in,
            preroll: 0,
            fed: 0,
            skip: 0,
            emitted: 0,
            end: None,
        };
        r.restart(0);
        Ok(r)
    }

    /// Resamples the next block of `stage` (zeros past what it holds) into `output`; the
    /// frames it made.
    fn process(&mut self) -> Result<usize, String> {
        let frames = self.staged.min(self.block);
        let partial = (frames < self.block).then(|| Indexing::new().partial_len(frames));
        let channels = self.stage.len();
        let out_frames = self.fft.output_frames_max();
        let input = SequentialSliceOfVecs::new(&self.stage, channels, self.block)
            .map_err(|e| e.to_string())?;
        let mut output = SequentialSliceOfVecs::new_mut(&mut self.output, channels, out_frames)
            .map_err(|e| e.to_string())?;
        let (_, made) = self
            .fft
            .process_into_buffer(&input, &mut output, partial.as_ref())
            .map_err(|e| e.to_string())?;
        for plane in &mut self.stage {
            plane.copy_within(frames..self.staged, 0);
        }
        self.staged -= frames;
        Ok(made)
    }

    /// The track's edges. The filter reaches half a block past each: silence there (what the
    /// resampler assumes) would make every edge a step, and the band-limited step rings and
    /// halves the edge frame, a click wherever two tracks are joined gaplessly. So the input
    /// goes on as its own odd reflection (`2·x[edge] − x[edge ∓ k]`), which continues the
    /// waveform's value and slope: the two halves of a join then each end close to what one
    /// stream would have had there. That half block is resampled and its frames dropped.
    fn reflect_head(&mut self) {
        let (pad, real) = (self.pad, self.staged - self.pad);
        for plane in &mut self.stage {
            let x0 = if real > 0 { plane[pad] } else { 0.0 };
            for k in 1..=pad {
                let mirror = if real > 0 {
                    plane[pad + k.min(real - 1)]
                } else {
                    0.0
                };
                plane[pad - k] = 2.0 * x0 - mirror;
            }
        }
        self.primed = true;
    }

    /// See `reflect_head`: after the last frame staged.
    fn reflect_tail(&mut self) {
        let (pad, last) = (self.pad, self.staged.saturating_sub(1));
        for plane in &mut self.stage {
            let x = plane[last];
            for k in 1..=pad {
                plane[last + k] = 2.0 * x - plane[last.saturating_sub(k)];
            }
        }
        self.staged = last + 1 + pad;
    }

    /// Empties the resampler for input that starts `preroll` frames before the target.
    fn restart(&mut self, preroll: u64) {
        self.fft.reset();
        self.preroll = preroll;
        self.fed = 0;
        // Room for the reflection before the first frame.
        self.staged = self.pad;
        self.primed = false;
        // All whole output frames: the delay is half an even block (see `new`), the preroll
        // and the reflection whole periods of the ratio.
        let dropped = preroll + self.pad as u64;
        self.skip = self.fft.output_delay() + (dropped * self.out_rate / self.in_rate) as usize;
        self.emitted = 0;
        self.end = None;
    }
}

/// The first `planes.len()` channels of interleaved `raw` into `planes`, from frame `at`.
fn deinterleave(raw: &[f32], channels: usize, planes: &mut [Vec<f32>], at: usize) {
    if let ([l, r], 2) = (&mut *planes, channels) {
        // The usual case, in one pass.
        let (l, r) = (&mut l[at..], &mut r[at..]);
        for ((l, r), f) in l.iter_mut().zip(r.iter_mut()).zip(raw.chunks_exact(2)) {
            (*l, *r) = (f[0], f[1]);
        }
        return;
    }
    for (c, plane) in planes.iter_mut().enumerate() {
        for (s, frame) in plane[at..].iter_mut().zip(raw.chunks_exact(channels)) {
            *s = frame[c];
        }
    }
}

/// Frames `range` of `planes`, mapped to the output's channels, onto `out`.
fn interleave(
    planes: &[Vec<f32>],
    range: std::ops::Range<usize>,
    map: &[Option<usize>],
    out: &mut Vec<f32>,
) {
    if let ([l, r], [Some(0), Some(1)]) = (planes, map) {
        // Stereo to stereo, in one pass.
        let (l, r) = (&l[range.clone()], &r[range]);
        out.extend(l.iter().zip(r).flat_map(|(l, r)| [*l, *r]));
        return;
    }
    for j in range {
        out.extend(map.iter().map(|m| m.map_or(0.0, |c| planes[c][j])));
    }
}

/// The time of frame `frame` at `rate`, a nanosecond late: symphonia truncates a time to a
/// timestamp, so a time exactly on the frame could land one frame early after rounding.
fn frames_to_duration(frame: u64, rate: u64) -> Duration {
    let nanos = (frame % rate) * 1_000_000_000 / rate + 1;
    Duration::new(frame / rate, nanos as u32)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
