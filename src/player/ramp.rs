//! Gains that change without a click: a linear [`Ramp`] (volume, levelling gain, the fades of a
//! skip, a pause and a resume) and the [`EqualPower`] curves of a crossfade.
//!
//! A gain that jumps from one sample to the next puts a step into the waveform, which the ear
//! hears as a click; spreading the change over tens of milliseconds makes it inaudible.

use std::f32::consts::FRAC_PI_2;

/// A gain moving linearly to its target, one step per frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    value: f32,
    target: f32,
    step: f32,
    left: u32,
}

impl Ramp {
    pub fn new(value: f32) -> Ramp {
        Ramp {
            value,
            target: value,
            step: 0.0,
            left: 0,
        }
    }

    /// Heads for `target`, reaching it in `frames` frames (at once when 0).
    pub fn to(&mut self, target: f32, frames: u32) {
        self.target = target;
        if frames == 0 {
            self.value = target;
            self.left = 0;
        } else {
            self.step = (target - self.value) / frames as f32;
            self.left = frames;
        }
    }

    /// The gain for the next frame. The last step lands exactly on the target (no rounding
    /// drift), so a fade to zero ends at zero.
    #[inline]
    pub fn next_gain(&mut self) -> f32 {
        if self.left > 0 {
            self.left -= 1;
            self.value = if self.left == 0 {
                self.target
            } else {
                self.value + self.step
            };
        }
        self.value
    }

    pub fn value(&self) -> f32 {
        self.value
    }

    pub fn target(&self) -> f32 {
        self.target
    }

    pub fn moving(&self) -> bool {
        self.left > 0
    }
}

/// One side of an equal-power crossfade over `len` frames: the fading-out track follows
/// cos(π/2·t), the fading-in one sin(π/2·t). cos² + sin² = 1, so two uncorrelated tracks keep
/// their combined power through the fade (a linear fade dips by 3 dB in the middle).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EqualPower {
    at: u32,
    len: u32,
    rising: bool,
}

impl EqualPower {
    pub fn fade_in(len: u32) -> EqualPower {
        EqualPower {
            at: 0,
            len: len.max(1),
            rising: true,
        }
    }

    pub fn fade_out(len: u32) -> EqualPower {
        EqualPower {
            at: 0,
            len: len.max(1),
            rising: false,
        }
    }

    /// The weight of the next frame; after `len` frames it stays at its end value (1 rising,
    /// 0 falling).
    #[inline]
    pub fn next_gain(&mut self) -> f32 {
        if self.at >= self.len {
            return if self.rising { 1.0 } else { 0.0 };
        }
        // Frame centres, so both sides are symmetric and neither starts or ends on a step.
        let t = (self.at as f32 + 0.5) / self.len as f32;
        self.at += 1;
        if self.rising {
            (t * FRAC_PI_2).sin()
        } else {
            (t * FRAC_PI_2).cos()
        }
    }

    #[cfg(test)]
    pub fn done(&self) -> bool {
        self.at >= self.len
    }
}

/// dB to a linear gain.
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_moves_in_equal_steps_and_lands_on_its_target() {
        let mut r = Ramp::new(1.0);
        r.to(0.0, 4);
        let got: Vec<f32> = (0..6).map(|_| r.next_gain()).collect();
        let want = [0.75, 0.5, 0.25, 0.0, 0.0, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        assert!(!r.moving());
        // Exactly zero at the end, even for a step that does not divide evenly.
        r.to(0.7, 3);
        r.to(0.0, 7);
        for _ in 0..7 {
            r.next_gain();
        }
        assert_eq!(r.value(), 0.0);
    }

    #[test]
    fn a_ramp_of_zero_frames_jumps() {
        let mut r = Ramp::new(0.2);
        r.to(0.9, 0);
        assert_eq!(r.next_gain(), 0.9);
        assert!(!r.moving());
    }

    #[test]
    fn a_ramp_changed_midway_continues_from_where_it_is() {
        let mut r = Ramp::new(0.0);
        r.to(1.0, 10);
        for _ in 0..5 {
            r.next_gain();
        }
        let mid = r.value();
        r.to(0.0, 10);
        let next = r.next_gain();
        // No jump: the next value is one small step from the current one.
        assert!((mid - next).abs() <= 0.1 + 1e-6, "{mid} -> {next}");
    }

    #[test]
    fn equal_power_keeps_the_sum_of_squares_and_is_monotonic() {
        let n = 1000;
        let (mut a, mut b) = (EqualPower::fade_out(n), EqualPower::fade_in(n));
        let (mut last_a, mut last_b) = (1.0f32, 0.0f32);
        for _ in 0..n {
            let (x, y) = (a.next_gain(), b.next_gain());
            assert!(((x * x + y * y) - 1.0).abs() < 1e-5, "{x} {y}");
            assert!(x <= last_a && y >= last_b);
            (last_a, last_b) = (x, y);
        }
        // Neither side starts or ends with a step bigger than one frame's worth.
        assert!(1.0 - EqualPower::fade_out(n).next_gain() < 1e-5);
        assert!(EqualPower::fade_in(n).next_gain() < 2.0 / n as f32);
        assert!(a.done() && b.done());
        assert_eq!((a.next_gain(), b.next_gain()), (0.0, 1.0));
    }

    #[test]
    fn decibels() {
        for (db, want) in [(0.0, 1.0), (-6.0206, 0.5), (12.0, 3.981)] {
            assert!((db_to_gain(db) - want).abs() < 1e-3, "{db}");
        }
    }
}
