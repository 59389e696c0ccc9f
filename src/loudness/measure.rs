//! Measuring one track: EBU R128 integrated loudness and sample peak (the `ebur128` crate)
//! over the track decoded exactly as the player decodes it (`decode::open_native`), so what is
//! measured is what is played. No true peak: it doubles the cost, and the output's limiter
//! catches what a sample peak misses.

use std::path::Path;

use ebur128::{Channel, EbuR128, Mode};
use rodio::Source;

use crate::player::decode;

/// Frames fed to the meter at a time; also how often the pass may pause or stop a measurement.
const CHUNK_FRAMES: usize = 4096;

/// One track's measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Integrated loudness, LUFS.
    pub lufs: f32,
    /// Largest sample magnitude of any channel (1.0 = full scale; decoders may exceed it).
    pub peak: f32,
    /// Frames decoded.
    pub frames: u64,
    /// Their rate, Hz.
    pub rate: u32,
}

impl Measured {
    /// The length measured.
    pub fn duration_ms(&self) -> u64 {
        self.frames.saturating_mul(1000) / u64::from(self.rate.max(1))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MeasureError {
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("no audio could be decoded")]
    Empty,
    #[error("silent: nothing above the R128 gate (-70 LUFS)")]
    Silent,
    #[error("loudness meter: {0}")]
    Meter(String),
    /// The caller asked to stop midway: not a property of the file.
    #[error("measurement stopped")]
    Stopped,
}

impl MeasureError {
    /// Whether the file itself is at fault, so that measuring it again is pointless until it
    /// changes.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, MeasureError::Stopped)
    }
}

/// Measures the file at `path`.
pub fn measure(path: &Path) -> Result<Measured, MeasureError> {
    measure_with(path, &mut || true)
}

/// [`measure`], calling `keep_going` between chunks (every few thousand frames): it may block
/// (to let more urgent work run first) and returns `false` to abandon the measurement.
pub fn measure_with(
    path: &Path,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Measured, MeasureError> {
    let source = decode::open_native(path).map_err(MeasureError::Decode)?;
    measure_source(source, keep_going)
}

/// Measures any decoded source (its own rate and channels).
pub fn measure_source<S: Source>(
    mut source: S,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Measured, MeasureError> {
    let channels = u32::from(source.channels().get());
    let rate = source.sample_rate().get();
    let meter_err = |e: ebur128::Error| MeasureError::Meter(e.to_string());
    let mut meter = EbuR128::new(channels, rate, Mode::I | Mode::SAMPLE_PEAK).map_err(meter_err)?;
    if channels == 1 {
        // The player sends a mono file to both speakers, which is 3 dB louder than one
        // channel: R128's dual-mono weighting measures what is heard.
        meter.set_channel(0, Channel::DualMono).map_err(meter_err)?;
    }
    let width = channels as usize;
    let mut buf: Vec<f32> = Vec::with_capacity(CHUNK_FRAMES * width);
    let mut frames: u64 = 0;
    loop {
        buf.clear();
        buf.extend(source.by_ref().take(CHUNK_FRAMES * width));
        // A torn last frame (a decoder cut short) is left out.
        let whole = buf.len() - buf.len() % width;
        if whole > 0 {
            meter.add_frames_f32(&buf[..whole]).map_err(meter_err)?;
            frames += (whole / width) as u64;
        }
        if buf.len() < CHUNK_FRAMES * width {
            break;
        }
        if !keep_going() {
            return Err(MeasureError::Stopped);
        }
    }
    if frames == 0 {
        return Err(MeasureError::Empty);
    }
    let lufs = meter.loudness_global().map_err(meter_err)?;
    if !lufs.is_finite() {
        return Err(MeasureError::Silent);
    }
    let mut peak = 0f64;
    for ch in 0..channels {
        peak = peak.max(meter.sample_peak(ch).map_err(meter_err)?);
    }
    Ok(Measured {
        lufs: lufs as f32,
        peak: peak as f32,
        frames,
        rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rodio::buffer::SamplesBuffer;
    use std::num::NonZero;

    fn sine(channels: u16, rate: u32, secs: f32, amp: f32) -> SamplesBuffer {
        let n = (rate as f32 * secs) as usize;
        let mut v = Vec::with_capacity(n * channels as usize);
        for i in 0..n {
            let s = amp * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin();
            for _ in 0..channels {
                v.push(s);
            }
        }
        SamplesBuffer::new(
            NonZero::new(channels).unwrap(),
            NonZero::new(rate).unwrap(),
            v,
        )
    }

    #[test]
    fn a_sine_on_both_channels_measures_its_level() {
        // EBU Tech 3341 case 1: a 1 kHz sine at -23 dBFS on both channels measures -23 LUFS
        // (so 0 dBFS measures 0 LUFS).
        let m = measure_source(sine(2, 48_000, 5.0, 1.0), &mut || true).unwrap();
        assert!(m.lufs.abs() < 0.1, "{}", m.lufs);
        let quiet = 10f32.powf(-23.0 / 20.0);
        let q = measure_source(sine(2, 48_000, 20.0, quiet), &mut || true).unwrap();
        assert!((q.lufs + 23.0).abs() < 0.1, "{}", q.lufs);
        assert!((m.peak - 1.0).abs() < 1e-3);
        assert_eq!(m.frames, 240_000);
        assert_eq!(m.duration_ms(), 5000);
    }

    #[test]
    fn mono_is_measured_as_it_is_heard_on_two_speakers() {
        let mono = measure_source(sine(1, 44_100, 5.0, 0.5), &mut || true).unwrap();
        let stereo = measure_source(sine(2, 44_100, 5.0, 0.5), &mut || true).unwrap();
        assert!(
            (mono.lufs - stereo.lufs).abs() < 0.05,
            "{mono:?} {stereo:?}"
        );
    }

    #[test]
    fn silence_and_nothing_are_errors() {
        let silent = SamplesBuffer::new(
            NonZero::new(2).unwrap(),
            NonZero::new(44_100).unwrap(),
            vec![0.0; 44_100 * 2 * 3],
        );
        assert_eq!(
            measure_source(silent, &mut || true),
            Err(MeasureError::Silent)
        );
        let empty = SamplesBuffer::new(
            NonZero::new(2).unwrap(),
            NonZero::new(44_100).unwrap(),
            Vec::<f32>::new(),
        );
        assert_eq!(
            measure_source(empty, &mut || true),
            Err(MeasureError::Empty)
        );
        assert!(MeasureError::Silent.is_permanent());
    }

    #[test]
    fn a_measurement_can_be_stopped_between_chunks() {
        let mut calls = 0;
        let r = measure_source(sine(2, 44_100, 5.0, 0.5), &mut || {
            calls += 1;
            calls < 3
        });
        assert_eq!(r, Err(MeasureError::Stopped));
        assert_eq!(calls, 3);
        assert!(!MeasureError::Stopped.is_permanent());
    }

    #[test]
    fn a_file_that_is_not_audio_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noise.mp3");
        std::fs::write(&p, b"this is not an mp3 file at all, just some text").unwrap();
        match measure(&p) {
            Err(MeasureError::Decode(msg)) => assert!(msg.contains("noise.mp3"), "{msg}"),
            Err(MeasureError::Empty) => {}
            other => panic!("{other:?}"),
        }
        let missing = dir.path().join("missing.flac");
        assert!(matches!(measure(&missing), Err(MeasureError::Decode(_))));
    }
}
