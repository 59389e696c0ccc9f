//! The audio thread: takes [`PlayerCommand`]s, pulls samples from the current track (and, at its
//! end, the preloaded one, in the same chunk: no gap), applies the volume, writes them to the
//! output, and reports [`PlayerEvent`]s. While the output asked for is missing or failed, the
//! null output stands in, so the party's timeline goes on, and the device is retried as its
//! [`OutputError`] says.

use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rodio::Source;

use super::decode::{self, Converted};
use super::output::{self, AudioOut, NullOut, OutputError, Retry, FILE_CHANNELS, FILE_RATE};
use super::{volume_gain, AudioStats, PlayItem, PlayerCommand, PlayerEvent};
use crate::config::OutputSpec;
use std::sync::Arc;

/// Frames converted and written per step; also bounds command latency (~23 ms).
const CHUNK_FRAMES: usize = 1024;
/// The first retry of a missing device, and the interval at which a missing card is polled.
const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest wait between retries of a device that fails to open.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Idle wait for a command (nothing playing, or paused): bounds how late a retry runs.
const IDLE_WAIT: Duration = Duration::from_millis(500);

type Events = tokio::sync::mpsc::UnboundedSender<PlayerEvent>;

/// The track being played.
struct Current {
    item: PlayItem,
    source: Converted,
    /// The output rate `source` converts to.
    rate: u32,
    /// Frames of this track already written to the output.
    frames: u64,
    /// Its levelling gain, linear.
    gain: f32,
}

pub struct Engine {
    spec: OutputSpec,
    out: Box<dyn AudioOut>,
    retry_at: Option<Instant>,
    retry_every: Duration,
    events: Events,
    current: Option<Current>,
    next: Option<PlayItem>,
    paused: bool,
    gain: f32,
    last_position: Instant,
    chunk: Vec<f32>,
    stats: Arc<AudioStats>,
}

impl Engine {
    pub fn new(spec: OutputSpec, events: Events, stats: Arc<AudioStats>) -> Engine {
        let opened = output::open(&spec);
        let mut e = Engine {
            spec,
            out: Box::new(NullOut::new(FILE_CHANNELS, FILE_RATE)),
            retry_at: None,
            retry_every: RETRY_FIRST,
            events,
            current: None,
            next: None,
            paused: false,
            gain: volume_gain(70),
            last_position: Instant::now(),
            chunk: Vec::with_capacity(CHUNK_FRAMES * 8),
            stats,
        };
        e.stats.set_latency_ms(0);
        match opened {
            Ok(out) => {
                e.out = out;
                e.output_opened();
            }
            Err(error) => e.open_failed(&error),
        }
        e
    }

    fn output_opened(&mut self) {
        self.retry_at = None;
        tracing::info!("audio output: {}", self.out.describe());
        self.emit(PlayerEvent::Output {
            description: self.out.describe(),
            ok: true,
        });
    }

    /// The output asked for could not open at start: the null output (already in place)
    /// stands in, and the device is retried unless the error says not to.
    fn open_failed(&mut self, error: &OutputError) {
        let retry = error.retry() != Retry::Never;
        tracing::warn!(
            "audio output {} unavailable ({error}); playing to the null output instead{}",
            self.spec,
            if retry {
                ", retrying the device in the background"
            } else {
                ""
            }
        );
        if retry {
            self.retry_at = Some(Instant::now() + self.retry_every);
        }
        self.emit(PlayerEvent::Output {
            description: format!("null (standing in for {})", self.spec),
            ok: false,
        });
    }

    fn emit(&self, e: PlayerEvent) {
        // The hub being gone means we are shutting down; nothing to do.
        let _ = self.events.send(e);
    }

    pub fn run(mut self, rx: mpsc::Receiver<PlayerCommand>) {
        loop {
            let active = self.current.is_some() && !self.paused;
            let cmd = if active {
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.recv_timeout(IDLE_WAIT) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            if let Some(c) = cmd {
                self.handle(c);
                continue;
            }
            self.retry_device();
            if self.current.is_some() && !self.paused {
                self.step();
            }
        }
        // Dropping the output finalises the WAV file.
        if let Err(e) = self.out.track_end() {
            tracing::error!("audio output: {e}");
        }
    }

    fn retry_device(&mut self) {
        let Some(at) = self.retry_at else { return };
        if Instant::now() < at {
            return;
        }
        match output::open(&self.spec) {
            Ok(out) => {
                self.out = out;
                self.reopen_current();
                self.output_opened();
            }
            Err(error) => {
                match error.retry() {
                    // Looking for a card is cheap: keep looking at the same pace.
                    Retry::Poll => {}
                    Retry::Backoff => self.retry_every = (self.retry_every * 2).min(RETRY_MAX),
                    Retry::Never => {
                        tracing::warn!("audio output {} gave up: {error}", self.spec);
                        self.retry_at = None;
                        return;
                    }
                }
                self.retry_at = Some(Instant::now() + self.retry_every);
                tracing::debug!(
                    "audio device still unavailable ({error}); next try in {:?}",
                    self.retry_every
                );
            }
        }
    }

    /// A track in progress continues where it was, converted to the new output's format.
    fn reopen_current(&mut self) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let item = PlayItem {
            start_ms: frames_to_ms(cur.frames, cur.rate),
            ..cur.item
        };
        match decode::open(&item, self.out.channels(), self.out.rate()) {
            Ok(opened) => {
                self.current = Some(Current {
                    frames: opened.start_ms * u64::from(self.out.rate().get()) / 1000,
                    rate: self.out.rate().get(),
                    gain: db_to_gain(item.gain_db),
                    item,
                    source: opened.source,
                })
            }
            Err(message) => self.emit(PlayerEvent::Error {
                key: item.key,
                message,
            }),
        }
    }

    fn handle(&mut self, cmd: PlayerCommand) {
        match cmd {
            PlayerCommand::Load(item) => {
                self.out.discard();
                // The play being replaced is not "finished": the hub already knows why.
                self.current = None;
                self.paused = false;
                self.next = None;
                self.start(item);
            }
            PlayerCommand::Preload(item) => self.next = item,
            PlayerCommand::Pause => {
                self.paused = true;
                self.out.discard();
            }
            PlayerCommand::Resume => self.paused = false,
            PlayerCommand::Seek(ms) => {
                let rate = self.out.rate().get();
                if let Some(cur) = self.current.as_mut() {
                    self.out.discard();
                    match cur.source.try_seek(Duration::from_millis(ms)) {
                        Ok(()) => cur.frames = ms * u64::from(rate) / 1000,
                        Err(e) => tracing::warn!("seek failed: {e}"),
                    }
                    let (key, position_ms) = (cur.item.key, frames_to_ms(cur.frames, rate));
                    self.emit(PlayerEvent::Position { key, position_ms });
                }
            }
            PlayerCommand::SetVolume(v) => self.gain = volume_gain(v),
            PlayerCommand::SetCrossfade(d) => tracing::debug!("crossfade {d:?}: not mixed yet"),
            PlayerCommand::SetGain { key, gain_db } => {
                if let Some(cur) = self.current.as_mut().filter(|c| c.item.key == key) {
                    cur.item.gain_db = gain_db;
                    cur.gain = db_to_gain(gain_db);
                }
                if let Some(next) = self.next.as_mut().filter(|n| n.key == key) {
                    next.gain_db = gain_db;
                }
            }
            PlayerCommand::Stop => {
                self.out.discard();
                self.current = None;
                self.next = None;
                let _ = self.out.track_end();
            }
        }
    }

    /// Opens `item` and makes it current; on failure reports it (the hub decides what next).
    fn start(&mut self, it: PlayItem) {
        match decode::open(&it, self.out.channels(), self.out.rate()) {
            Ok(opened) => {
                let key = it.key;
                let rate = self.out.rate().get();
                self.current = Some(Current {
                    frames: opened.start_ms * u64::from(rate) / 1000,
                    rate,
                    gain: db_to_gain(it.gain_db),
                    item: it,
                    source: opened.source,
                });
                self.last_position = Instant::now();
                self.emit(PlayerEvent::Started {
                    key,
                    duration_ms: opened.duration_ms,
                    position_ms: opened.start_ms,
                });
            }
            Err(message) => {
                tracing::warn!("cannot play: {message}");
                self.emit(PlayerEvent::Error {
                    key: it.key,
                    message,
                });
            }
        }
    }

    /// Converts and writes one chunk, crossing into the next track without a gap.
    fn step(&mut self) {
        let channels = usize::from(self.out.channels().get());
        let want = CHUNK_FRAMES * channels;
        self.chunk.clear();
        while self.chunk.len() < want {
            let Some(cur) = self.current.as_mut() else {
                break;
            };
            let before = self.chunk.len();
            let track_gain = cur.gain;
            self.chunk.extend(
                cur.source
                    .by_ref()
                    .take(want - before)
                    .map(|s| s * track_gain),
            );
            let got = self.chunk.len() - before;
            cur.frames += (got / channels) as u64;
            if self.chunk.len() < want {
                // The track ended (or stopped decoding): finish it and move on.
                let key = cur.item.key;
                if let Err(e) = self.out.track_end() {
                    self.output_failed(&e);
                }
                self.current = None;
                let next = self.next.take();
                self.emit(PlayerEvent::Finished {
                    key,
                    next: next.as_ref().map(|n| n.key),
                });
                if let Some(next) = next {
                    self.start(next);
                }
            }
        }
        // Keep whole frames only (a decoder that ended mid-frame).
        let whole = self.chunk.len() / channels * channels;
        self.chunk.truncate(whole);
        if self.chunk.is_empty() {
            return;
        }
        let gain = self.gain;
        if (gain - 1.0).abs() > f32::EPSILON {
            for s in &mut self.chunk {
                *s *= gain;
            }
        }
        let chunk = std::mem::take(&mut self.chunk);
        if let Err(e) = self.out.write(&chunk) {
            self.output_failed(&e);
        }
        self.chunk = chunk;
        if self.last_position.elapsed() >= Duration::from_secs(1) {
            self.last_position = Instant::now();
            if let Some(cur) = &self.current {
                let position_ms = frames_to_ms(cur.frames, self.out.rate().get());
                self.emit(PlayerEvent::Position {
                    key: cur.item.key,
                    position_ms,
                });
            }
        }
    }

    /// A write failed (disk full, device unplugged): say so, keep the music "playing" on the
    /// null output (in the same format, so the track goes on converting as it was) so the
    /// party's timeline goes on, and retry the device unless the error says not to.
    fn output_failed(&mut self, error: &OutputError) {
        tracing::error!("audio output failed: {error}");
        self.out = Box::new(NullOut::new(self.out.channels(), self.out.rate()));
        if error.retry() != Retry::Never {
            self.retry_at = Some(Instant::now() + self.retry_every);
        }
        self.emit(PlayerEvent::Output {
            description: format!("null (after an error on {}: {error})", self.spec),
            ok: false,
        });
    }
}

fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

fn frames_to_ms(frames: u64, rate: u32) -> u64 {
    frames * 1000 / u64::from(rate.max(1))
}
