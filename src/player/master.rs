//! The output stream's last stages, in one pass over each chunk: the limiter, then the volume,
//! then the transport fade (skip, pause, stop fade out; resume fades in).

use std::num::NonZero;

use super::limiter::Limiter;
use super::ramp::Ramp;

/// A volume change takes this long, so moving the slider never clicks.
const VOLUME_RAMP_S: f32 = 0.05;
/// Skip, pause and stop fade out over this long before cutting; resume fades in over it.
pub const FADE_S: f32 = 0.15;

pub struct Master {
    limiter: Limiter,
    volume: Ramp,
    fade: Ramp,
    rate: u32,
}

impl Master {
    pub fn new(channels: NonZero<u16>, rate: NonZero<u32>, volume: f32) -> Master {
        Master {
            limiter: Limiter::new(channels, rate),
            volume: Ramp::new(volume),
            fade: Ramp::new(1.0),
            rate: rate.get(),
        }
    }

    /// Frames the limiter holds back (part of the latency).
    pub fn delay_frames(&self) -> usize {
        self.limiter.delay_frames()
    }

    pub fn set_volume(&mut self, gain: f32, playing: bool) {
        let frames = if playing {
            self.frames(VOLUME_RAMP_S)
        } else {
            0
        };
        self.volume.to(gain, frames);
    }

    /// Starts fading out (to a cut).
    pub fn fade_out(&mut self) {
        self.fade.to(0.0, self.frames(FADE_S));
    }

    /// Fades (back) in from wherever the fade is.
    pub fn fade_in(&mut self) {
        self.fade.to(1.0, self.frames(FADE_S));
    }

    /// Full level at once (a track that starts from its beginning, after a cut).
    pub fn unmute(&mut self) {
        self.fade.to(1.0, 0);
    }

    /// Starts silent, to fade in (a resume, a track loaded midway).
    pub fn silence(&mut self) {
        self.fade.to(0.0, 0);
    }

    /// Heading to silence and not there yet.
    #[cfg(test)]
    pub fn fading_out(&self) -> bool {
        self.fade.target() == 0.0 && self.fade.value() > 0.0
    }

    /// Faded all the way out: what was asked for at the fade's end may happen now.
    pub fn faded_out(&self) -> bool {
        self.fade.target() == 0.0 && self.fade.value() == 0.0
    }

    /// Limits, sets the volume of and fades `mix`, appending the result to `out`.
    pub fn process(&mut self, mix: &[f32], out: &mut Vec<f32>) {
        if !self.volume.moving() && !self.fade.moving() {
            // The usual case: one constant gain after the limiter, in one flat pass.
            let g = self.volume.value() * self.fade.value();
            let start = out.len();
            self.limiter.process_plain(mix, out);
            if g != 1.0 {
                out[start..].iter_mut().for_each(|s| *s *= g);
            }
            return;
        }
        let (volume, fade) = (&mut self.volume, &mut self.fade);
        self.limiter
            .process(mix, out, || volume.next_gain() * fade.next_gain());
    }

    /// Lets the limiter's last frames out (nothing follows).
    pub fn drain(&mut self, out: &mut Vec<f32>) {
        let (volume, fade) = (&mut self.volume, &mut self.fade);
        self.limiter
            .drain(out, || volume.next_gain() * fade.next_gain());
    }

    /// After a cut: forget what the limiter held (it would have left at zero gain).
    pub fn reset(&mut self) {
        self.limiter.reset();
    }

    fn frames(&self, secs: f32) -> u32 {
        (secs * self.rate as f32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> Master {
        Master::new(NonZero::new(2).unwrap(), NonZero::new(44_100).unwrap(), 1.0)
    }

    #[test]
    fn a_fade_out_reaches_silence_in_about_150_ms_without_a_step() {
        let mut m = master();
        let mut out = Vec::new();
        let loud = vec![0.8f32; 2 * 44_100];
        m.process(&loud[..2 * 4410], &mut out);
        m.fade_out();
        assert!(m.fading_out());
        let at = out.len();
        m.process(&loud[2 * 4410..], &mut out);
        assert!(m.faded_out());
        let left: Vec<f32> = out[at..].iter().step_by(2).copied().collect();
        let zero_at = left.iter().position(|s| *s == 0.0).unwrap();
        let ms = zero_at as f32 / 44.1;
        assert!((145.0..=155.0).contains(&ms), "{ms} ms");
        let step = left
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        // 0.8 over 6615 frames: about 1.2e-4 per frame.
        assert!(step < 2e-4, "{step}");
    }

    #[test]
    fn a_resume_fades_in_from_silence() {
        let mut m = master();
        m.silence();
        m.fade_in();
        let mut out = Vec::new();
        m.process(&vec![0.5f32; 2 * 10_000], &mut out);
        assert!(out[0] < 0.01);
        assert!((out[out.len() - 1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn the_volume_ramps_and_the_limiter_comes_first() {
        let mut m = master();
        m.set_volume(0.25, true);
        let mut out = Vec::new();
        // Twice full scale: limited to −1 dBFS, then a quarter of that.
        m.process(&vec![2.0f32; 2 * 20_000], &mut out);
        m.drain(&mut out);
        assert_eq!(out.len(), 2 * 20_000);
        let last = out[out.len() - 1];
        assert!(
            (last - 0.25 * super::super::limiter::THRESHOLD).abs() < 1e-4,
            "{last}"
        );
        assert!(out
            .iter()
            .all(|s| s.abs() <= super::super::limiter::THRESHOLD));
    }
}
