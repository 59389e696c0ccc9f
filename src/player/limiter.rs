//! The one limiter on the output stream: a look-ahead brick wall at −1 dBFS, linked across
//! channels, so that no sample ever clips whatever the levelling gain (+12 dB on a −1 dBFS
//! transient is a peak of +11 dBFS before it).
//!
//! Why not rodio's `limit()`: it is a feed-forward compressor with a soft knee and no
//! look-ahead, so it lets the first milliseconds of a transient through above its threshold
//! while its envelope attacks. A brick wall must see a peak coming.
//!
//! How it works, per frame t (every step keeps the gain at or below what frame t−L+1 needs, so
//! that frame leaves at or below the threshold):
//! 1. `need[t]` = threshold / peak of frame t (1 when it is below the threshold);
//! 2. `held[t]` = the minimum of `need` over the last L frames (a monotonic queue);
//! 3. `released[t]` follows `held` down at once and back up with an exponential release, so it
//!    is never above `held`;
//! 4. the gain is the mean of `released` over the last L frames: a smooth ramp down over the L
//!    frames before a peak instead of a step. Every term of that mean is the minimum of a window
//!    holding frame t−L+1, so the mean is at most `need[t−L+1]`;
//! 5. frame t−L+1 (L−1 frames of delay) leaves multiplied by that gain.
//!
//! The frames before the first one count as silence, and the delay is primed rather than
//! padded: the first L−1 frames in produce nothing, and `drain` lets the last ones out, so the
//! output holds exactly the frames that went in.

use std::collections::VecDeque;
use std::num::NonZero;

/// Where the wall is: −1 dBFS. The output never exceeds it, so a 16-bit file peaks at 29205.
pub const THRESHOLD: f32 = 0.891_250_9;
/// How far ahead the limiter looks, which is also its attack time.
const LOOKAHEAD_S: f32 = 0.005;
/// How fast the gain recovers after a peak: a time constant.
const RELEASE_S: f32 = 0.1;

pub struct Limiter {
    channels: usize,
    lookahead: usize,
    release: f32,
    /// The last L frames in, oldest at `pos + 1`.
    delay: Vec<f32>,
    /// `released` of the last L frames, and their sum (f64, so the running sum does not drift).
    released: Vec<f32>,
    sum: f64,
    pos: usize,
    /// (frame number, need) with increasing need: the front is the window's minimum.
    minimum: VecDeque<(u64, f32)>,
    last_released: f32,
    /// Frames taken since the last reset.
    taken: u64,
    /// Consecutive frames that needed no gain and left at gain 1: once the whole window is
    /// calm, a chunk below the threshold is only delayed (the fast path).
    calm: usize,
}

impl Limiter {
    pub fn new(channels: NonZero<u16>, rate: NonZero<u32>) -> Limiter {
        let channels = usize::from(channels.get());
        let rate = rate.get() as f32;
        let lookahead = ((LOOKAHEAD_S * rate).round() as usize).max(1);
        let mut l = Limiter {
            channels,
            lookahead,
            release: (-1.0 / (RELEASE_S * rate)).exp(),
            delay: vec![0.0; lookahead * channels],
            released: vec![1.0; lookahead],
            sum: lookahead as f64,
            pos: 0,
            minimum: VecDeque::with_capacity(lookahead + 1),
            last_released: 1.0,
            taken: 0,
            calm: 0,
        };
        l.reset();
        l
    }

    /// Frames held back: what goes in comes out this much later.
    pub fn delay_frames(&self) -> usize {
        self.lookahead - 1
    }

    /// Forgets everything held (after a fade to silence, a stop): the next frame in starts a
    /// new stream.
    pub fn reset(&mut self) {
        self.delay.fill(0.0);
        self.released.fill(1.0);
        self.sum = self.lookahead as f64;
        self.pos = 0;
        self.minimum.clear();
        self.last_released = 1.0;
        self.taken = 0;
        self.calm = 0;
    }

    /// Limits the interleaved frames of `input`, appending to `out` the frames that leave
    /// (fewer while the delay fills), each multiplied by `post()` (the volume and fades that
    /// follow the limiter, evaluated once per frame in the same pass).
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>, mut post: impl FnMut() -> f32) {
        self.run(input, out, Some(&mut post));
    }

    /// The same with nothing after the limiter (the volume and fades are still, and applied
    /// by the caller in one flat pass).
    pub fn process_plain(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.run(input, out, None::<&mut fn() -> f32>);
    }

    fn run<F: FnMut() -> f32>(
        &mut self,
        input: &[f32],
        out: &mut Vec<f32>,
        mut post: Option<&mut F>,
    ) {
        let ch = self.channels;
        let l = self.lookahead;
        out.reserve(input.len());
        let frames = input.len() / ch;
        // |s| as its bit pattern: the same order for every non-NaN float, and an integer
        // maximum, which the compiler vectorises (a float `max` it does not).
        let loudest = input
            .iter()
            .map(|s| s.to_bits() & 0x7fff_ffff)
            .max()
            .unwrap_or(0);
        let calm = loudest <= THRESHOLD.to_bits();
        if self.calm >= l && calm && frames >= l && self.taken >= l as u64 {
            self.delay_only(input, out, post);
            return;
        }
        for frame in input.chunks_exact(ch) {
            let t = self.taken;
            self.taken += 1;
            let peak = frame.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            let need = if peak > THRESHOLD {
                THRESHOLD / peak
            } else {
                1.0
            };
            while self.minimum.back().is_some_and(|&(_, g)| g >= need) {
                self.minimum.pop_back();
            }
            self.minimum.push_back((t, need));
            while self
                .minimum
                .front()
                .is_some_and(|&(i, _)| i + (l as u64) <= t)
            {
                self.minimum.pop_front();
            }
            // The window's minimum; frames before the first are silence (need 1).
            let held = self.minimum.front().map_or(1.0, |&(_, g)| g);
            // Down at once; up with the release, settling on `held` when close enough so
            // that a calm stream reaches exactly 1.
            let released = if held < self.last_released || held - self.last_released < 1e-6 {
                held
            } else {
                held - (held - self.last_released) * self.release
            };
            self.last_released = released;
            if need == 1.0 && released == 1.0 {
                self.calm += 1;
            } else {
                self.calm = 0;
            }
            self.sum += f64::from(released) - f64::from(self.released[self.pos]);
            self.released[self.pos] = released;
            let gain = (self.sum / l as f64) as f32;

            let slot = self.pos * ch;
            self.delay[slot..slot + ch].copy_from_slice(frame);
            self.pos = (self.pos + 1) % l;
            if t + 1 < l as u64 {
                continue; // still priming: frame t−L+1 does not exist yet
            }
            let oldest = self.pos * ch;
            let post = post.as_mut().map_or(1.0, |f| f());
            for s in &self.delay[oldest..oldest + ch] {
                // The clamp only catches float rounding in the running mean: the gain
                // already keeps the frame at or below the threshold.
                out.push((s * gain).clamp(-THRESHOLD, THRESHOLD) * post);
            }
        }
    }

    /// The fast path, for a chunk below the threshold while the whole window is calm (every
    /// gain in it is exactly 1): the frames held come out, then all but the last L−1 of the
    /// chunk, which are held in their place. Exactly what the frame-by-frame path would do.
    fn delay_only<F: FnMut() -> f32>(
        &mut self,
        input: &[f32],
        out: &mut Vec<f32>,
        post: Option<&mut F>,
    ) {
        let ch = self.channels;
        let l = self.lookahead;
        let held = l - 1;
        let start = out.len();
        // The held frames, oldest first: slots pos+1 … pos+L−1 (mod L).
        for i in 1..l {
            let slot = (self.pos + i) % l * ch;
            out.extend_from_slice(&self.delay[slot..slot + ch]);
        }
        let frames = input.len() / ch;
        let keep = (frames - held) * ch;
        out.extend_from_slice(&input[..keep]);
        // The last L−1 frames wait in slots 1 … L−1; slot 0 is the next to be overwritten.
        self.delay[ch..].copy_from_slice(&input[keep..frames * ch]);
        self.pos = 0;
        self.minimum.clear();
        self.sum = l as f64;
        self.taken += frames as u64;
        self.calm += frames;
        if let Some(post) = post {
            for frame in out[start..].chunks_exact_mut(ch) {
                let g = post();
                for s in frame {
                    *s *= g;
                }
            }
        }
    }

    /// Lets out the frames still held (the end of the music), then starts afresh.
    pub fn drain(&mut self, out: &mut Vec<f32>, post: impl FnMut() -> f32) {
        if self.taken > 0 {
            // L−1 frames of silence push the last real frame out (and nothing else).
            let silence = vec![0.0; self.delay_frames() * self.channels];
            self.process(&silence, out, post);
        }
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo() -> Limiter {
        Limiter::new(NonZero::new(2).unwrap(), NonZero::new(44_100).unwrap())
    }

    fn run(l: &mut Limiter, input: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        for chunk in input.chunks(2048) {
            l.process(chunk, &mut out, || 1.0);
        }
        l.drain(&mut out, || 1.0);
        out
    }

    /// A reproducible noise source (xorshift), so a failing case can be replayed.
    fn noise(seed: u32) -> impl FnMut() -> f32 {
        let mut x = seed.max(1);
        move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        }
    }

    #[test]
    fn quiet_audio_passes_untouched_and_exactly_as_long() {
        let mut l = stereo();
        let input: Vec<f32> = (0..10_000).map(|i| 0.5 * (i as f32 * 0.01).sin()).collect();
        let out = run(&mut l, &input);
        assert_eq!(out.len(), input.len());
        assert_eq!(out, input);
    }

    #[test]
    fn twelve_db_on_a_full_scale_transient_never_passes_the_threshold() {
        // A −1 dBFS click every 500 ms over quiet noise, all raised by +12 dB (×3.98).
        let mut n = noise(7);
        let gain = 3.981;
        let input: Vec<f32> = (0..88_200)
            .map(|i| {
                let frame = i / 2;
                let s = if frame % 22_050 < 3 {
                    0.891
                } else {
                    0.05 * n()
                };
                s * gain
            })
            .collect();
        let mut l = stereo();
        let out = run(&mut l, &input);
        assert_eq!(out.len(), input.len());
        let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak <= THRESHOLD, "peak {peak}");
        // The wall does its job at the click, not by squashing everything: 350 ms after a
        // click (3.5 release time constants) the noise is back to nearly its level.
        let quiet_in = &input[2 * 15_400..2 * 17_400];
        let quiet_out = &out[2 * 15_400..2 * 17_400];
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        let kept = rms(quiet_out) / rms(quiet_in);
        assert!(kept > 0.95, "over-limited: {kept}");
    }

    #[test]
    fn random_loud_material_never_exceeds_the_threshold() {
        for seed in 1..20 {
            let mut n = noise(seed);
            let scale = 1.0 + seed as f32; // up to +26 dB over full scale
            let input: Vec<f32> = (0..20_000).map(|_| n() * scale).collect();
            let mut l = stereo();
            let out = run(&mut l, &input);
            assert_eq!(out.len(), input.len());
            let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            assert!(peak <= THRESHOLD, "seed {seed}: {peak}");
        }
    }

    #[test]
    fn the_gain_ramps_down_ahead_of_a_peak_instead_of_stepping() {
        // A steady tone that jumps to twice the threshold: the gain reduction starts before
        // the jump and is spread over the look-ahead, so no frame-to-frame gain step exceeds
        // 1/L of the reduction.
        let mut l = Limiter::new(NonZero::new(1).unwrap(), NonZero::new(44_100).unwrap());
        let input: Vec<f32> = (0..4000)
            .map(|i| if i < 2000 { 0.5 } else { 1.8 })
            .collect();
        let out = run(&mut l, &input);
        let gains: Vec<f32> = out.iter().zip(&input).map(|(o, i)| o / i).collect();
        let lookahead = l.lookahead as f32;
        let reduction = 1.0 - THRESHOLD / 1.8;
        let worst = gains
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= reduction / lookahead * 1.01, "step {worst}");
        assert!(gains[1995] < 1.0, "no look-ahead: {}", gains[1995]);
        assert!(out.iter().all(|s| s.abs() <= THRESHOLD));
    }

    #[test]
    fn the_fast_path_gives_what_the_frame_by_frame_path_gives() {
        // Quiet stretches (the fast path) around loud bursts (frame by frame), in chunks of
        // several sizes, against the same stream fed one frame at a time (never fast).
        let mut n = noise(3);
        let input: Vec<f32> = (0..120_000)
            .map(|i| {
                let burst = (i / 2) % 20_000 > 19_000;
                n() * if burst { 2.5 } else { 0.4 }
            })
            .collect();
        let mut slow = stereo();
        let mut want = Vec::new();
        for frame in input.chunks(2) {
            slow.process(frame, &mut want, || 0.5);
        }
        slow.drain(&mut want, || 0.5);
        for size in [1024, 4096, 500] {
            let mut fast = stereo();
            let mut got = Vec::new();
            for chunk in input.chunks(size * 2) {
                fast.process(chunk, &mut got, || 0.5);
            }
            fast.drain(&mut got, || 0.5);
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "chunks of {size}: {worst}");
        }
    }

    #[test]
    fn reset_forgets_a_past_peak() {
        let mut l = stereo();
        let mut out = Vec::new();
        l.process(&[5.0; 2000], &mut out, || 1.0);
        l.reset();
        out.clear();
        let quiet = [0.25f32; 4000];
        l.process(&quiet, &mut out, || 1.0);
        assert!(out.iter().all(|s| (s - 0.25).abs() < 1e-6));
    }

    #[test]
    fn the_post_gain_applies_once_per_frame() {
        let mut l = stereo();
        let mut frames = 0;
        let mut out = Vec::new();
        l.process(&[0.5; 1000], &mut out, || {
            frames += 1;
            0.5
        });
        l.drain(&mut out, || 0.5);
        assert_eq!(frames, 500 - l.delay_frames());
        assert!(out.iter().all(|s| (s - 0.25).abs() < 1e-6));
        assert_eq!(out.len(), 1000);
    }
}
