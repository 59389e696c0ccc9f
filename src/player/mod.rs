//! The player: a handle to a dedicated audio thread. The thread owns the decoder and the output
//! (rodio's device stream is not `Send`, and audio must never wait on the async runtime); it
//! takes commands over a channel and reports events over another. Nothing in the request path
//! waits on it.
//!
//! Samples flow decoder → format conversion → the track's levelling gain → the crossfade mix →
//! one limiter → the volume → the skip/pause/stop fades → an output. The parts, as in
//! librespot's `audio_backend/`:
//! - `output`: where samples go (an ALSA device, a WAV file, nothing), their typed errors, and
//!   the underruns and latency each one reports;
//! - `decode`: a file opened through one symphonia source (libopus registered for Opus, the
//!   OpusHead gain applied), converted to the output's format;
//! - `track`: one track decoded ahead (its end known early), its gain and crossfade curve;
//! - `silence`, `ramp`, `limiter`, `master`: the sample-loop stages, each with its tests;
//! - `engine`: the audio thread itself: commands, seams (gapless, trimmed, crossfaded), fades,
//!   events, device retries.

pub(crate) mod decode;
mod engine;
mod limiter;
mod master;
mod output;
mod ramp;
mod silence;
mod track;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::config::OutputSpec;

pub use output::devices;

/// Identifies one item handed to the player; chosen by the hub.
pub type Key = u64;

#[derive(Debug, Clone, PartialEq)]
pub struct PlayItem {
    pub key: Key,
    pub path: PathBuf,
    /// Where to start (a resumed play after a restart).
    pub start_ms: u64,
    /// The levelling gain of this play, in dB (0: as mastered); already clamped.
    pub gain_db: f32,
    /// How it joins the track before it, when it follows that one without a `Load`.
    pub join: Join,
}

/// How a preloaded item follows the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// The next track of the same album: sample-exact, no trim, no fade.
    Gapless,
    /// Anything else: silence at the seam trimmed, and crossfaded when a crossfade is set.
    Mix,
}

#[derive(Debug)]
pub enum PlayerCommand {
    /// Play this now, replacing whatever plays.
    Load(PlayItem),
    /// What follows the current track when it ends (joined as its `join` says); `None`
    /// clears it.
    Preload(Option<PlayItem>),
    Pause,
    Resume,
    Seek(u64),
    /// 0..=100.
    SetVolume(u32),
    /// The crossfade between tracks that `Join::Mix` (zero: none; at most 12 s).
    SetCrossfade(Duration),
    /// A new levelling gain for the loaded or preloaded item `key` (a measurement arrived, or
    /// the host changed the target); ramped when it is playing.
    SetGain {
        key: Key,
        gain_db: f32,
    },
    /// Stop playing (nothing left to play).
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlayerEvent {
    Started {
        key: Key,
        duration_ms: Option<u64>,
        /// Where it started (0 when a resume could not seek).
        position_ms: u64,
    },
    /// About once a second while playing, and after a seek.
    Position { key: Key, position_ms: u64 },
    /// The track played to its end; `next` is the preloaded item the player went on to
    /// (its `Started` or `Error` follows), or `None` when it has nothing left to play. In a
    /// crossfade both come when the overlap *starts*: from then on the play is `next`, while
    /// the end of this one fades out under it.
    Finished { key: Key, next: Option<Key> },
    /// The track could not be opened; the hub decides what plays instead.
    Error { key: Key, message: String },
    /// Which output is in use, and whether it is the one asked for.
    Output { description: String, ok: bool },
}

/// What the audio thread reports without an event: read at any time from any thread.
#[derive(Debug, Default)]
pub struct AudioStats {
    underruns: AtomicU64,
    latency_ms: AtomicU64,
}

impl AudioStats {
    /// Periods the output could not be fed in time, since start.
    pub fn underruns(&self) -> u64 {
        self.underruns.load(Ordering::Relaxed)
    }
    /// How long a sample written now takes to be heard.
    pub fn latency_ms(&self) -> u64 {
        self.latency_ms.load(Ordering::Relaxed)
    }
    pub(crate) fn add_underrun(&self) {
        self.underruns.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn set_latency_ms(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::Relaxed);
    }
}

/// The handle. Dropping it stops the audio thread after the current chunk and finalises the
/// output (the WAV header).
pub struct Player {
    tx: Option<mpsc::Sender<PlayerCommand>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<AudioStats>,
}

impl Player {
    pub fn spawn(
        spec: OutputSpec,
        events: tokio::sync::mpsc::UnboundedSender<PlayerEvent>,
    ) -> std::io::Result<Player> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(AudioStats::default());
        let engine_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("player".into())
            .spawn(move || engine::Engine::new(spec, events, engine_stats).run(rx))?;
        Ok(Player {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// The audio thread's counters.
    pub fn stats(&self) -> Arc<AudioStats> {
        self.stats.clone()
    }

    pub fn send(&self, cmd: PlayerCommand) {
        if let Some(tx) = &self.tx {
            if tx.send(cmd).is_err() {
                tracing::error!("the audio thread is gone; command dropped");
            }
        }
    }

    /// Stops the audio thread and waits for it (finalising the output).
    pub fn shutdown(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the audio thread panicked");
            }
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Volume 0..=100 to a gain: a squared curve, so the slider feels even to the ear.
pub fn volume_gain(v: u32) -> f32 {
    let x = v.min(100) as f32 / 100.0;
    x * x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_curve() {
        let table = [(0, 0.0), (50, 0.25), (100, 1.0), (250, 1.0)];
        for (v, want) in table {
            assert!((volume_gain(v) - want).abs() < 1e-6, "{v}");
        }
    }
}
