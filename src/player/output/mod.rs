//! Where samples go: the [`AudioOut`] side of the player, one file per kind of output (as in
//! librespot's `audio_backend/`). A device (rodio on ALSA), a WAV file, or nothing; the file and
//! null outputs are paced like a device, so a song takes as long as it plays.
//!
//! Failures are an [`OutputError`], and what the engine does about one (look again soon, back
//! off, or give up) is decided by its variant in [`OutputError::retry`], never by its text.

mod alsa;
mod null;
mod snapcast;
mod wav;

use std::num::NonZero;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::OutputSpec;

pub use alsa::devices;
pub use null::NullOut;

/// The output format of the wav and null outputs.
pub const FILE_RATE: NonZero<u32> = NonZero::new(44_100).unwrap();
pub const FILE_CHANNELS: NonZero<u16> = NonZero::new(2).unwrap();
/// How far ahead of real time a paced output may run, like a device's buffer.
const LEAD: Duration = Duration::from_millis(200);

/// A place samples go. `write` blocks to pace playback at real time.
pub trait AudioOut {
    fn channels(&self) -> NonZero<u16>;
    fn rate(&self) -> NonZero<u32>;
    /// Interleaved samples, whole frames of `channels()`.
    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError>;
    /// Drop what is buffered and not yet heard (skip, seek, stop, pause).
    fn discard(&mut self) {}
    /// Called at each track end: make everything written so far durable and readable.
    fn track_end(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    /// The stream stops here (paused, stopped, nothing to play): the next write starts a new
    /// one, so the wait before it is no underrun.
    fn idle(&mut self) {}
    /// Periods that could not be fed in time (the output ran dry while playing) since the
    /// last call.
    fn take_underruns(&mut self) -> u64 {
        0
    }
    /// How long a sample written now takes to be heard.
    fn latency(&self) -> Duration;
    fn describe(&self) -> String;
}

/// Why an output could not be opened or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// No sound card, and no ALSA configuration that could route `default` elsewhere.
    #[error("{why}")]
    NoSoundCard { why: &'static str },
    /// No device by that name (or none at all); one may be plugged in later.
    #[error("no output device {device:?}")]
    NoDevice { device: String },
    /// Another program holds the device.
    #[error("output device {device:?} is busy ({cause})")]
    Busy { device: String, cause: String },
    /// The device exists and would not open (permissions, configuration, format).
    #[error("cannot open output device {device:?}: {cause}")]
    Open { device: String, cause: String },
    /// The device stopped taking samples (unplugged mid-song).
    #[error("{device} stopped taking samples")]
    Stalled { device: String },
    /// The WAV file could not be created.
    #[error("cannot create {}: {cause}", path.display())]
    Create { path: PathBuf, cause: String },
    /// Writing the WAV file failed (a full disk, an I/O error).
    #[error("writing {}: {cause}", path.display())]
    Write { path: PathBuf, cause: String },
}

/// What to do after an [`OutputError`], while the null output stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Look again at the same short interval: looking is cheap, and a USB card plugged in
    /// later should be heard within seconds.
    Poll,
    /// Try again less and less often: the device is there but opening it fails, and every
    /// failed open costs (and makes libasound print).
    Backoff,
    /// Do not try again: a file output that failed stays failed until the host fixes it.
    Never,
}

impl OutputError {
    pub fn retry(&self) -> Retry {
        match self {
            OutputError::NoSoundCard { .. } => Retry::Poll,
            OutputError::NoDevice { .. }
            | OutputError::Busy { .. }
            | OutputError::Open { .. }
            | OutputError::Stalled { .. } => Retry::Backoff,
            OutputError::Create { .. } | OutputError::Write { .. } => Retry::Never,
        }
    }
}

/// Opens the output that was asked for. A missing device is not fatal: the null output
/// stands in (the error says whether and how to retry).
pub fn open(spec: &OutputSpec) -> Result<Box<dyn AudioOut>, OutputError> {
    Ok(match spec {
        OutputSpec::Null => Box::new(NullOut::new(FILE_CHANNELS, FILE_RATE)),
        OutputSpec::Wav(p) => Box::new(wav::WavOut::create(p)?),
        OutputSpec::Default => {
            if let Some(why) = alsa::sound_card_absent() {
                return Err(OutputError::NoSoundCard { why });
            }
            Box::new(alsa::DeviceOut::open(None)?)
        }
        OutputSpec::Alsa(n) => Box::new(alsa::DeviceOut::open(Some(n))?),
        OutputSpec::Snapcast { path, buffer_ms } => Box::new(snapcast::SnapcastOut::open(
            path,
            Duration::from_millis(u64::from(*buffer_ms)),
        )),
    })
}

/// A sample as 16-bit PCM: the exact inverse of the decoders' `i16 / 32768`, so a 16-bit file
/// played at unity gain comes out bit for bit as it went in.
pub fn to_i16(s: f32) -> i16 {
    // `as` saturates: +1.0 becomes 32767.
    (s * 32_768.0).round() as i16
}

/// Sleeps so that writes follow real time, at most `LEAD` ahead, like a device's buffer; and
/// notices, like a device would, when the writer fell so far behind that the buffer ran dry.
pub struct Pacer {
    rate: NonZero<u32>,
    lead: Duration,
    /// A buffer after this one that is kept full (snapcast's pipe): a writer this late has
    /// not yet run it dry, and catches up instead.
    slack: Duration,
    start: Instant,
    frames: u64,
    /// The stream stopped (or has not begun): the next write starts a new one.
    idle: bool,
    underruns: u64,
}

impl Pacer {
    pub fn new(rate: NonZero<u32>) -> Pacer {
        Pacer::with_lead(rate, LEAD)
    }
    /// A pacer that runs at most `lead` ahead of real time.
    pub fn with_lead(rate: NonZero<u32>, lead: Duration) -> Pacer {
        Pacer::with_slack(rate, lead, Duration::ZERO)
    }
    /// A pacer `lead` ahead of real time in front of a full buffer of `slack`.
    pub fn with_slack(rate: NonZero<u32>, lead: Duration, slack: Duration) -> Pacer {
        Pacer {
            rate,
            lead,
            slack,
            start: Instant::now(),
            frames: 0,
            idle: true,
            underruns: 0,
        }
    }
    pub fn rate(&self) -> NonZero<u32> {
        self.rate
    }
    pub fn latency(&self) -> Duration {
        self.lead
    }
    pub fn idle(&mut self) {
        self.idle = true;
    }
    pub fn take_underruns(&mut self) -> u64 {
        std::mem::take(&mut self.underruns)
    }
    fn due(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.frames as f64 / f64::from(self.rate.get()))
    }
    pub fn advance(&mut self, frames: usize) {
        let now = Instant::now();
        if self.idle {
            // After a pause or an idle spell, do not rush to catch up; after a moment's
            // (a skip's cut), what was written before is still ahead, and the new audio
            // follows it.
            self.idle = false;
            self.start = self.due().max(now);
            self.frames = 0;
        } else if self.due() + self.slack < now {
            // Everything written so far would have been heard before now: the buffer ran dry
            // for `now - due - slack`. Count the periods of this size that were missing, and
            // start afresh from here (a device restarts after an underrun too).
            let late = (now - self.due() - self.slack).as_secs_f64();
            let period = (frames.max(1) as f64) / f64::from(self.rate.get());
            self.underruns += (late / period).ceil().max(1.0) as u64;
            self.start = now;
            self.frames = 0;
        }
        self.frames += frames as u64;
        let due = self.due();
        let now = Instant::now();
        if due > now + self.lead {
            std::thread::sleep(due - now - self.lead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_follows_real_time() {
        let mut p = Pacer::new(NonZero::new(10_000).unwrap());
        let t = Instant::now();
        for _ in 0..50 {
            p.advance(100); // 0.5 s of audio in total
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    #[test]
    fn a_writer_that_falls_behind_is_an_underrun_and_an_idle_spell_is_not() {
        let rate = NonZero::new(10_000).unwrap();
        let mut p = Pacer::new(rate);
        // A late first write (the stream starts) and steady writes: none.
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..10 {
            p.advance(100);
        }
        assert_eq!(p.take_underruns(), 0);
        // The writer stalls for longer than the lead: the 10 ms periods missed are counted.
        std::thread::sleep(LEAD + Duration::from_millis(200));
        p.advance(100);
        let late = p.take_underruns();
        assert!((10..=60).contains(&late), "{late}");
        assert_eq!(p.take_underruns(), 0, "taken once");
        // Paused: the same wait is no underrun.
        p.idle();
        std::thread::sleep(LEAD + Duration::from_millis(200));
        p.advance(100);
        p.advance(100);
        assert_eq!(p.take_underruns(), 0);
    }

    #[test]
    fn lateness_within_the_slack_is_caught_up_and_not_an_underrun() {
        let rate = NonZero::new(10_000).unwrap();
        let mut p = Pacer::with_slack(rate, Duration::from_millis(20), Duration::from_millis(300));
        p.advance(100);
        std::thread::sleep(Duration::from_millis(150));
        // 150 ms late with 300 ms of slack: no underrun, and no sleep until caught up.
        let t = Instant::now();
        for _ in 0..10 {
            p.advance(100);
        }
        assert!(t.elapsed() < Duration::from_millis(60), "{:?}", t.elapsed());
        assert_eq!(p.take_underruns(), 0);
        // Later than the slack: counted.
        std::thread::sleep(Duration::from_millis(500));
        p.advance(100);
        assert!(p.take_underruns() > 0);
    }

    #[test]
    fn retry_policy_follows_the_kind_of_failure() {
        let device = || "hw:1".to_string();
        let path = || PathBuf::from("/tmp/out.wav");
        let cause = || "x".to_string();
        let table = [
            (OutputError::NoSoundCard { why: "none" }, Retry::Poll),
            (OutputError::NoDevice { device: device() }, Retry::Backoff),
            (
                OutputError::Busy {
                    device: device(),
                    cause: cause(),
                },
                Retry::Backoff,
            ),
            (
                OutputError::Open {
                    device: device(),
                    cause: cause(),
                },
                Retry::Backoff,
            ),
            (OutputError::Stalled { device: device() }, Retry::Backoff),
            (
                OutputError::Create {
                    path: path(),
                    cause: cause(),
                },
                Retry::Never,
            ),
            (
                OutputError::Write {
                    path: path(),
                    cause: cause(),
                },
                Retry::Never,
            ),
        ];
        for (error, want) in table {
            assert_eq!(error.retry(), want, "{error}");
        }
    }

    #[test]
    fn an_uncreatable_wav_file_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let spec = OutputSpec::Wav(dir.path().join("missing-dir").join("out.wav"));
        let err = open(&spec).err().expect("no such directory");
        assert!(matches!(err, OutputError::Create { .. }), "{err:?}");
        assert_eq!(err.retry(), Retry::Never);
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
