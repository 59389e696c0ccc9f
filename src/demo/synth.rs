//! The tunes: a melody with soft note envelopes over a quiet bass line and pad, rendered to
//! stereo samples. Deterministic: the same tune renders the same samples.

use std::f64::consts::TAU;

use super::SAMPLE_RATE;

/// Silence-to-fade tail after the last bar, in seconds.
const TAIL_SECS: f64 = 1.5;
/// Peak amplitude every track is normalized to (the requirement is ≤ 0.5).
const PEAK: f32 = 0.45;

/// Timbre of the melody: relative amplitudes of harmonics 1-4, and how fast
/// each note decays towards its sustain level.
pub(super) struct Voice {
    pub(super) harmonics: [f64; 4],
    pub(super) decay_secs: f64,
    pub(super) sustain: f64,
}

/// A little composition: a looping melody over a looping chord progression,
/// followed by one bar of the tonic and a fade-out tail.
pub(super) struct Tune {
    pub(super) bpm: f64,
    pub(super) beats_per_bar: u32,
    /// MIDI note number of the tonic of the melody's octave.
    pub(super) tonic: i32,
    /// Semitone offsets of the 7-note scale.
    pub(super) scale: &'static [i32; 7],
    /// Scale degree of the chord root for each bar (loops).
    pub(super) chords: &'static [i32],
    /// `(scale degree or REST, length in beats)` (loops).
    pub(super) melody: &'static [(i32, f64)],
    /// Number of bars before the final tonic bar.
    pub(super) bars: u32,
    pub(super) voice: Voice,
    /// Melody pan: -1 = left, 1 = right.
    pub(super) pan: f64,
}

/// Melody marker for a rest.
pub(super) const REST: i32 = i32::MIN;

pub(super) const MAJOR: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
pub(super) const MINOR: [i32; 7] = [0, 2, 3, 5, 7, 8, 10];
pub(super) const DORIAN: [i32; 7] = [0, 2, 3, 5, 7, 9, 10];

/// Frequency in Hz of a MIDI note number.
fn midi_hz(note: i32) -> f64 {
    440.0 * 2f64.powf(f64::from(note - 69) / 12.0)
}

impl Tune {
    fn frames_per_beat(&self) -> f64 {
        f64::from(SAMPLE_RATE) * 60.0 / self.bpm
    }

    /// Total length in frames: the bars, the final tonic bar and the tail.
    pub(super) fn total_frames(&self) -> usize {
        let beats = f64::from((self.bars + 1) * self.beats_per_bar);
        (beats * self.frames_per_beat() + TAIL_SECS * f64::from(SAMPLE_RATE)).round() as usize
    }

    pub(super) fn duration_secs(&self) -> f64 {
        self.total_frames() as f64 / f64::from(SAMPLE_RATE)
    }

    /// MIDI note of a scale degree (degree 0 = `tonic`, 7 = an octave up).
    fn note(&self, degree: i32) -> i32 {
        let octave = degree.div_euclid(7);
        let step = self.scale[degree.rem_euclid(7) as usize];
        self.tonic + 12 * octave + step
    }

    fn beat_frame(&self, beat: f64) -> usize {
        (beat * self.frames_per_beat()).round() as usize
    }

    /// Renders the tune as left/right channels, normalized to [`PEAK`].
    pub(super) fn render(&self) -> [Vec<f32>; 2] {
        let total = self.total_frames();
        let mut melody = vec![0.0f64; total];
        let mut backing = vec![0.0f64; total];
        let bar_beats = f64::from(self.beats_per_bar);
        let body_beats = f64::from(self.bars) * bar_beats;

        // Melody, looping until the final bar.
        let mut beat = 0.0;
        'outer: loop {
            for &(degree, len) in self.melody {
                if beat >= body_beats {
                    break 'outer;
                }
                let len = len.min(body_beats - beat);
                if degree != REST {
                    // Slightly detached notes breathe better.
                    let start = self.beat_frame(beat);
                    let end = self.beat_frame(beat + len * 0.92);
                    add_note(
                        &mut melody,
                        start,
                        end,
                        midi_hz(self.note(degree)),
                        0.5,
                        &self.voice,
                    );
                }
                beat += len;
            }
        }
        // Final tonic note, held through the tail.
        let final_start = self.beat_frame(body_beats);
        let long = Voice {
            harmonics: self.voice.harmonics,
            decay_secs: 1.5,
            sustain: 0.3,
        };
        add_note(
            &mut melody,
            final_start,
            total,
            midi_hz(self.note(7)),
            0.5,
            &long,
        );

        // Bass and pad, one chord per bar, the last bar on the tonic.
        let pad_voice = Voice {
            harmonics: [1.0, 0.0, 0.0, 0.0],
            decay_secs: 4.0,
            sustain: 0.7,
        };
        let bass_voice = Voice {
            harmonics: [1.0, 0.25, 0.0, 0.0],
            decay_secs: 0.6,
            sustain: 0.5,
        };
        for bar in 0..=self.bars {
            let last = bar == self.bars;
            let root = if last {
                0
            } else {
                self.chords[bar as usize % self.chords.len()]
            };
            let bar_start = f64::from(bar) * bar_beats;
            let start = self.beat_frame(bar_start);
            let end = if last {
                total
            } else {
                self.beat_frame(bar_start + bar_beats)
            };
            // Triad on the chord root (root, third, fifth), an octave down.
            for step in [0, 2, 4] {
                let note = self.note(root + step) - 12;
                add_note(&mut backing, start, end, midi_hz(note), 0.06, &pad_voice);
            }
            // Bass: the root on the first beat, and again half-way for 4/4.
            let bass = midi_hz(self.note(root) - 24);
            if last || self.beats_per_bar % 2 == 1 {
                add_note(&mut backing, start, end, bass, 0.3, &bass_voice);
            } else {
                let mid = self.beat_frame(bar_start + bar_beats / 2.0);
                add_note(&mut backing, start, mid, bass, 0.3, &bass_voice);
                add_note(&mut backing, mid, end, bass, 0.25, &bass_voice);
            }
        }

        // Mix: melody panned, with a dotted-eighth echo on the other side.
        let delay = self.beat_frame(0.75);
        let left_gain = (1.0 - self.pan) / 2.0;
        let right_gain = (1.0 + self.pan) / 2.0;
        let mut left = Vec::with_capacity(total);
        let mut right = Vec::with_capacity(total);
        for i in 0..total {
            let dry = melody[i];
            let echo = if i >= delay {
                melody[i - delay] * 0.3
            } else {
                0.0
            };
            let (echo_l, echo_r) = if self.pan < 0.0 {
                (0.0, echo)
            } else {
                (echo, 0.0)
            };
            left.push(backing[i] + dry * left_gain + echo_l);
            right.push(backing[i] + dry * right_gain + echo_r);
        }

        // Fade out over the tail so the file ends in silence, then normalize.
        let tail = (TAIL_SECS * f64::from(SAMPLE_RATE)) as usize;
        for k in 0..tail.min(total) {
            let i = total - 1 - k;
            let g = 0.5 - 0.5 * (std::f64::consts::PI * k as f64 / tail as f64).cos();
            left[i] *= g;
            right[i] *= g;
        }
        let peak = left
            .iter()
            .chain(&right)
            .fold(0.0f64, |m, s| m.max(s.abs()));
        let gain = if peak > 0.0 {
            f64::from(PEAK) / peak
        } else {
            1.0
        };
        [left, right].map(|ch| ch.into_iter().map(|s| (s * gain) as f32).collect())
    }
}

/// Adds one note spanning frames `start..end` to `buf`, with a short attack,
/// a decay towards the voice's sustain level and a cosine release at the end,
/// so it starts and stops at zero amplitude (no clicks).
fn add_note(buf: &mut [f64], start: usize, end: usize, hz: f64, amp: f64, voice: &Voice) {
    let end = end.min(buf.len());
    if end <= start {
        return;
    }
    let rate = f64::from(SAMPLE_RATE);
    let len = end - start;
    let attack = ((0.012 * rate) as usize).min(len / 2).max(1);
    let release = ((0.08 * rate) as usize).min(len / 2).max(1);
    let norm: f64 = voice.harmonics.iter().sum();
    // One oscillator per audible harmonic, each a unit phasor (sin, cos)
    // rotated by a fixed step per sample: the same as `sin(2π·f·t)`, but much
    // cheaper than calling `sin` for every sample (this matters in debug builds).
    let mut oscillators: Vec<[f64; 5]> = voice
        .harmonics
        .iter()
        .enumerate()
        .map(|(h, &weight)| (weight, hz * (h + 1) as f64))
        .filter(|&(weight, f)| weight != 0.0 && f < rate / 2.0)
        .map(|(weight, f)| {
            let step = TAU * f / rate;
            [weight / norm, 0.0, 1.0, step.sin(), step.cos()]
        })
        .collect();
    let decay_step = (-1.0 / (voice.decay_secs * rate)).exp();
    let mut decay = 1.0;
    for (i, out) in buf[start..end].iter_mut().enumerate() {
        let mut env = voice.sustain + (1.0 - voice.sustain) * decay;
        decay *= decay_step;
        if i < attack {
            env *= 0.5 - 0.5 * (std::f64::consts::PI * i as f64 / attack as f64).cos();
        }
        let left_to_go = len - 1 - i;
        if left_to_go < release {
            env *= 0.5 - 0.5 * (std::f64::consts::PI * left_to_go as f64 / release as f64).cos();
        }
        let mut s = 0.0;
        for [weight, sin, cos, step_sin, step_cos] in &mut oscillators {
            s += *weight * *sin;
            (*sin, *cos) = (
                *sin * *step_cos + *cos * *step_sin,
                *cos * *step_cos - *sin * *step_sin,
            );
        }
        *out += amp * env * s;
    }
}
