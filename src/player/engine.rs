//! The audio thread: takes [`PlayerCommand`]s, mixes the current track (and, at a seam, the
//! next one), runs the output stages and writes to the output, and reports [`PlayerEvent`]s.
//! While the output asked for is missing or failed, the null output stands in, so the party's
//! timeline goes on, and the device is retried as its [`OutputError`] says.
//!
//! The sample loop, per chunk: each track's decoded samples × its levelling gain (ramped) ×
//! its crossfade curve, summed → [`Master`]: the limiter, the volume, the transport fade →
//! the output.
//!
//! Seams. A track is decoded ahead (`Track::fill`), so its end is known while it still has
//! `crossfade + TRIM_AHEAD` to play. Then the next item is opened; at a `Join::Mix` seam the
//! silence at both sides is trimmed and, when a crossfade is set and both tracks are long
//! enough, the two overlap with equal-power curves, reported as `Finished{A, next: B}` and
//! `Started{B}` when the overlap starts. A `Join::Gapless` seam is sample-exact: nothing
//! trimmed, nothing faded.
//!
//! Cuts. A skip (`Load`), `Pause`, `Seek` and `Stop` while music is heard fade out first
//! (`Pending` remembers what to do at the end of the fade); `Resume` fades in.

use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::master::Master;
use super::output::{self, AudioOut, NullOut, OutputError, Retry, FILE_CHANNELS, FILE_RATE};
use super::ramp::EqualPower;
use super::track::Track;
use super::{volume_gain, AudioStats, Join, Key, PlayItem, PlayerCommand, PlayerEvent};
use crate::config::OutputSpec;

/// Frames mixed and written per step; also bounds command latency (~23 ms).
const CHUNK_FRAMES: usize = 1024;
/// The first retry of a missing device, and the interval at which a missing card is polled.
const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest wait between retries of a device that fails to open.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The longest crossfade.
pub const CROSSFADE_MAX: Duration = Duration::from_secs(12);
/// A crossfade needs both tracks at least this many times its length.
const CROSSFADE_MIN_RATIO: u64 = 3;
/// How much of a track's end is decoded ahead beyond the crossfade: trailing silence up to
/// this long is trimmed at a `Mix` seam.
const TRIM_AHEAD: Duration = Duration::from_secs(3);
/// Leading silence up to this long is trimmed at a `Mix` seam and at a `Load`.
const TRIM_HEAD_MAX: Duration = Duration::from_secs(5);

type Events = tokio::sync::mpsc::UnboundedSender<PlayerEvent>;

/// What happens when the fade-out under way reaches silence.
#[derive(Debug, Default)]
struct Pending {
    load: Option<PlayItem>,
    seek: Option<u64>,
    pause: bool,
    stop: bool,
}

impl Pending {
    fn any(&self) -> bool {
        self.load.is_some() || self.seek.is_some() || self.pause || self.stop
    }
}

/// The preloaded item, opened ahead of its seam (or why it could not be).
struct Prepared {
    key: Key,
    track: Result<Track, String>,
}

/// How often the player reports its position while it plays.
const POSITION_EVERY: Duration = Duration::from_secs(1);
/// The first report after a start, seek or resume: past the output's lead (200 ms).
const FIRST_POSITION_AFTER: Duration = Duration::from_millis(250);

/// How long a shutdown waits for the fade-out (150 ms of audio, and the output's buffer).
const CLOSING_FADE_MAX: Duration = Duration::from_secs(1);

pub struct Engine {
    spec: OutputSpec,
    out: Box<dyn AudioOut>,
    retry_at: Option<Instant>,
    retry_every: Duration,
    events: Events,
    current: Option<Track>,
    /// The track fading out under `current` in a crossfade (already reported finished).
    tail: Option<Track>,
    next: Option<PlayItem>,
    prepared: Option<Prepared>,
    paused: bool,
    pending: Pending,
    volume: f32,
    crossfade: Duration,
    master: Master,
    /// When the next position report is due.
    position_due: Instant,
    mix: Vec<f32>,
    chunk: Vec<f32>,
    stats: Arc<AudioStats>,
}

impl Engine {
    pub fn new(spec: OutputSpec, events: Events, stats: Arc<AudioStats>) -> Engine {
        let opened = output::open(&spec);
        let volume = volume_gain(70);
        let mut e = Engine {
            spec,
            out: Box::new(NullOut::new(FILE_CHANNELS, FILE_RATE)),
            retry_at: None,
            retry_every: RETRY_FIRST,
            events,
            current: None,
            tail: None,
            next: None,
            prepared: None,
            paused: false,
            pending: Pending::default(),
            volume,
            crossfade: Duration::ZERO,
            master: Master::new(FILE_CHANNELS, FILE_RATE, volume),
            position_due: Instant::now(),
            mix: Vec::with_capacity(CHUNK_FRAMES * 8),
            chunk: Vec::with_capacity(CHUNK_FRAMES * 8),
            stats,
        };
        match opened {
            Ok(out) => {
                e.out = out;
                e.output_opened();
            }
            Err(error) => e.open_failed(&error),
        }
        e.update_latency();
        e
    }

    fn output_opened(&mut self) {
        self.retry_at = None;
        self.master = Master::new(self.out.channels(), self.out.rate(), self.volume);
        if self.pending.any() {
            // A fade-out was under way on the old output: the new one is silent already, so
            // whatever the fade was for happens at the next step.
            self.master.silence();
        }
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

    /// Music is being produced (possibly fading out).
    fn active(&self) -> bool {
        self.current.is_some() && !self.paused
    }

    pub fn run(mut self, rx: mpsc::Receiver<PlayerCommand>) {
        // Set once the player is shut down while music plays: it fades out as a host stop
        // does, so `systemctl stop` does not end the party with a click.
        let mut closing: Option<Instant> = None;
        loop {
            if let Some(since) = closing {
                if !self.active() || since.elapsed() > CLOSING_FADE_MAX {
                    break;
                }
                self.step();
                continue;
            }
            // Nothing to play: sleep until a command comes, or until a device retry is due;
            // no periodic wake-ups.
            let cmd = if self.active() {
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        self.handle(PlayerCommand::Stop);
                        closing = Some(Instant::now());
                        continue;
                    }
                }
            } else if let Some(at) = self.retry_at {
                match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvError) => break,
                }
            };
            if let Some(c) = cmd {
                self.handle(c);
                continue;
            }
            self.retry_device();
            if self.active() {
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
                self.output_opened();
                self.reopen_current();
                self.update_latency();
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

    /// A track in progress continues where it was, converted to the new output's format
    /// (what was decoded ahead for the old format is dropped, and so is a crossfade's tail).
    fn reopen_current(&mut self) {
        self.tail = None;
        self.prepared = None;
        let Some(cur) = self.current.take() else {
            return;
        };
        let position_ms = cur.position_ms();
        let item = PlayItem {
            start_ms: position_ms,
            ..cur.item
        };
        match Track::open(item.clone(), self.out.channels(), self.out.rate()) {
            Ok(t) => {
                self.master.silence();
                self.master.fade_in();
                self.current = Some(t);
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
                // The play being replaced is not "finished": the hub already knows why.
                self.next = None;
                self.prepared = None;
                if self.active() {
                    self.pending = Pending {
                        load: Some(item),
                        ..Pending::default()
                    };
                    self.master.fade_out();
                } else {
                    self.cut();
                    self.paused = false;
                    self.start(item);
                }
            }
            PlayerCommand::Preload(item) => {
                if self.prepared.as_ref().map(|p| p.key) != item.as_ref().map(|i| i.key) {
                    self.prepared = None;
                }
                self.next = item;
            }
            PlayerCommand::Pause => {
                if self.active() {
                    self.pending.pause = true;
                    self.master.fade_out();
                } else {
                    self.paused = true;
                }
            }
            PlayerCommand::Resume => {
                if self.pending.pause {
                    self.pending.pause = false;
                    if !self.pending.any() {
                        self.master.fade_in();
                    }
                } else if self.paused {
                    self.paused = false;
                    self.master.silence();
                    self.master.fade_in();
                    self.report_position_soon();
                }
            }
            PlayerCommand::Seek(ms) => {
                if self.active() {
                    self.pending.seek = Some(ms);
                    self.master.fade_out();
                } else {
                    self.seek(ms);
                }
            }
            PlayerCommand::SetVolume(v) => {
                self.volume = volume_gain(v);
                self.master.set_volume(self.volume, self.active());
            }
            PlayerCommand::SetCrossfade(d) => self.crossfade = d.min(CROSSFADE_MAX),
            PlayerCommand::SetGain { key, gain_db } => {
                let playing = self.active();
                if let Some(cur) = self.current.as_mut().filter(|c| c.key() == key) {
                    cur.set_gain_db(gain_db, playing);
                }
                if let Some(Prepared { track: Ok(t), .. }) =
                    self.prepared.as_mut().filter(|p| p.key == key)
                {
                    t.set_gain_db(gain_db, false);
                }
                for item in [self.next.as_mut(), self.pending.load.as_mut()]
                    .into_iter()
                    .flatten()
                    .filter(|i| i.key == key)
                {
                    item.gain_db = gain_db;
                }
            }
            PlayerCommand::Stop => {
                self.next = None;
                self.prepared = None;
                if self.active() {
                    self.pending = Pending {
                        stop: true,
                        ..Pending::default()
                    };
                    self.master.fade_out();
                } else {
                    self.stop_now();
                }
            }
        }
    }

    /// Drops what plays, at once (nothing is heard: paused, faded out, or nothing playing).
    fn cut(&mut self) {
        self.current = None;
        self.tail = None;
        self.pending = Pending::default();
        self.master.reset();
        self.out.idle();
    }

    fn stop_now(&mut self) {
        self.cut();
        self.next = None;
        self.prepared = None;
        if let Err(e) = self.out.track_end() {
            self.output_failed(&e);
        }
    }

    fn seek(&mut self, ms: u64) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        self.tail = None;
        self.out.discard();
        if let Err(e) = cur.seek(ms) {
            tracing::warn!("seek failed: {e}");
        }
        let (key, position_ms) = (cur.key(), cur.position_ms());
        self.emit(PlayerEvent::Position { key, position_ms });
        self.report_position_soon();
    }

    /// The fade-out has reached silence: do what it was for.
    fn fade_done(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.master.reset();
        if pending.stop {
            self.stop_now();
            return;
        }
        if let Some(item) = pending.load {
            self.cut();
            self.start(item);
        } else if let Some(ms) = pending.seek {
            self.seek(ms);
            if !pending.pause {
                self.master.fade_in();
            }
        }
        if pending.pause {
            self.paused = true;
            self.master.silence();
            self.out.idle();
        }
    }

    /// Opens `item` and makes it current; on failure reports it (the hub decides what next).
    fn start(&mut self, item: PlayItem) {
        let midway = item.start_ms > 0;
        match Track::open(item.clone(), self.out.channels(), self.out.rate()) {
            Ok(mut t) => {
                if midway {
                    // Starting mid-waveform would click.
                    self.master.silence();
                    self.master.fade_in();
                } else {
                    t.trim_head(self.frames(TRIM_HEAD_MAX), CHUNK_FRAMES);
                    self.master.unmute();
                }
                self.make_current(t);
            }
            Err(message) => self.cannot_play(item.key, message),
        }
    }

    /// A report once the output has taken its lead after a start, seek or resume: the hub
    /// counts the heard position from the written one, and only the player knows whether the
    /// output was idle (an empty buffer: heard at once) or running (heard a latency later).
    fn report_position_soon(&mut self) {
        self.position_due = Instant::now() + FIRST_POSITION_AFTER;
    }

    /// `t` plays from here: the hub hears where it starts.
    fn make_current(&mut self, t: Track) {
        self.report_position_soon();
        self.emit(PlayerEvent::Started {
            key: t.key(),
            duration_ms: t.duration_ms,
            position_ms: t.position_ms(),
        });
        self.current = Some(t);
    }

    /// `key` did not open: logged, and reported to the hub, which decides what plays instead.
    fn cannot_play(&mut self, key: Key, message: String) {
        tracing::warn!("cannot play: {message}");
        self.emit(PlayerEvent::Error { key, message });
    }

    /// Opens the preloaded item ahead of its seam (trimming its leading silence at a `Mix`
    /// seam), once the current track's end is in sight.
    fn prepare_next(&mut self) {
        let Some(item) = self.next.as_ref() else {
            return;
        };
        if self.prepared.as_ref().is_some_and(|p| p.key == item.key) {
            return;
        }
        let key = item.key;
        let mix = item.join == Join::Mix;
        let mut track = Track::open(item.clone(), self.out.channels(), self.out.rate());
        if let Ok(t) = track.as_mut() {
            if mix && t.item.start_ms == 0 {
                t.trim_head(self.frames(TRIM_HEAD_MAX), CHUNK_FRAMES);
            }
        }
        self.prepared = Some(Prepared { key, track });
    }

    fn frames(&self, d: Duration) -> usize {
        (d.as_secs_f64() * f64::from(self.out.rate().get())) as usize
    }

    /// How many frames the current track (`current_frames` of music) and the prepared one
    /// overlap (0: none). Both are counted without the silence trimmed from them: the rule is
    /// about how long the music is.
    fn overlap(&self, current_frames: Option<u64>) -> usize {
        let fade = self.frames(self.crossfade);
        if fade == 0 {
            return 0;
        }
        let Some(Prepared {
            track: Ok(next), ..
        }) = &self.prepared
        else {
            return 0;
        };
        if next.item.join != Join::Mix {
            return 0;
        }
        let min = fade as u64 * CROSSFADE_MIN_RATIO;
        let next_len = next.music_frames().unwrap_or(0);
        if current_frames.unwrap_or(0) < min || next_len < min {
            return 0;
        }
        fade
    }

    /// Mixes, finishes and writes one chunk, crossing into the next track without a gap (or
    /// overlapping it).
    fn step(&mut self) {
        let ch = usize::from(self.out.channels().get());
        let n = CHUNK_FRAMES;
        let ahead = self.frames(self.crossfade + TRIM_AHEAD);
        // Fading out to a cut: no seam may start (a skip's new track is not the next one).
        let holding = self.pending.any();
        let mut mix = std::mem::take(&mut self.mix);
        mix.clear();
        mix.resize(n * ch, 0.0);
        let mut pos = 0;
        let mut ran_out = false;
        while pos < n {
            let Some(cur) = self.current.as_mut() else {
                break;
            };
            let need = n - pos;
            cur.fill(ahead, n, need);
            let span = &mut mix[pos * ch..];
            if let Some(tail) = self.tail.as_mut() {
                // In a crossfade: both tracks, each on its curve, until the tail ends.
                let k = need.min(tail.remaining().unwrap_or(0));
                let span = &mut span[..k * ch];
                cur.mix_into(span, false);
                tail.mix_into(span, true);
                pos += k;
                if tail.remaining().unwrap_or(0) == 0 {
                    self.tail = None;
                    cur.set_fade(None);
                }
                continue;
            }
            if holding {
                let got = cur.mix_into(span, false);
                pos += got;
                if got == 0 {
                    // The track ended under the fade: nothing left to fade.
                    ran_out = true;
                    break;
                }
                continue;
            }
            if cur.remaining().is_some() {
                // The end is in sight: open what follows and plan the seam.
                let key = cur.key();
                self.prepare_next();
                let has_next = self.next.is_some();
                let gapless = self.next.as_ref().is_some_and(|n| n.join == Join::Gapless);
                let Some(cur) = self.current.as_mut() else {
                    break;
                };
                if !gapless {
                    cur.trim_tail();
                }
                let rem = cur.remaining().unwrap_or(0);
                let music = cur.music_frames();
                let overlap = if has_next { self.overlap(music) } else { 0 };
                if overlap > 0 && rem > 0 && rem <= overlap {
                    self.begin_crossfade(rem);
                    continue;
                }
                if rem == 0 {
                    self.track_ended(key);
                    continue;
                }
                let k = need.min(rem - overlap);
                let Some(cur) = self.current.as_mut() else {
                    break;
                };
                pos += cur.mix_into(&mut mix[pos * ch..(pos + k) * ch], false);
                continue;
            }
            pos += cur.mix_into(span, false);
        }
        mix.truncate(pos * ch);

        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.clear();
        self.master.process(&mix, &mut chunk);
        self.mix = mix;
        let ended = self.current.is_none() && !holding;
        if ended {
            // The music ended with nothing after it: let the limiter's last frames out.
            self.master.drain(&mut chunk);
        }
        if !chunk.is_empty() {
            if let Err(e) = self.out.write(&chunk) {
                self.output_failed(&e);
            }
        }
        self.chunk = chunk;
        let late = self.out.take_underruns();
        for _ in 0..late {
            self.stats.add_underrun();
        }
        if late > 0 {
            tracing::warn!(
                "audio output ran dry: {late} periods late ({} since start)",
                self.stats.underruns()
            );
        }
        if ended {
            self.out.idle();
        }
        if holding && (ran_out || self.master.faded_out()) {
            self.fade_done();
        }
        if Instant::now() >= self.position_due {
            self.position_due = Instant::now() + POSITION_EVERY;
            if let Some(cur) = &self.current {
                self.emit(PlayerEvent::Position {
                    key: cur.key(),
                    position_ms: cur.position_ms(),
                });
            }
        }
    }

    /// The current track has `overlap` frames left: the prepared one starts under it, and
    /// the play changes now.
    fn begin_crossfade(&mut self, overlap: usize) {
        let (
            Some(mut a),
            Some(Prepared {
                track: Ok(mut b), ..
            }),
        ) = (self.current.take(), self.prepared.take())
        else {
            return;
        };
        self.next = None;
        let len = overlap as u32;
        a.set_fade(Some(EqualPower::fade_out(len)));
        b.set_fade(Some(EqualPower::fade_in(len)));
        if let Err(e) = self.out.track_end() {
            self.output_failed(&e);
        }
        self.emit(PlayerEvent::Finished {
            key: a.key(),
            next: Some(b.key()),
        });
        self.emit(PlayerEvent::Started {
            key: b.key(),
            duration_ms: b.duration_ms,
            position_ms: b.position_ms(),
        });
        self.report_position_soon();
        self.tail = Some(a);
        self.current = Some(b);
    }

    /// The current track played its last frame: the next one (prepared, or opened now)
    /// follows in the same chunk.
    fn track_ended(&mut self, key: Key) {
        self.current = None;
        if let Err(e) = self.out.track_end() {
            self.output_failed(&e);
        }
        let next = self.next.take();
        let prepared = self.prepared.take();
        self.emit(PlayerEvent::Finished {
            key,
            next: next.as_ref().map(|n| n.key),
        });
        let Some(item) = next else {
            return;
        };
        let track = match prepared {
            Some(p) if p.key == item.key => p.track,
            _ => {
                // Preloaded too late to prepare: open it now.
                self.next = Some(item.clone());
                self.prepare_next();
                self.next = None;
                match self.prepared.take() {
                    Some(p) => p.track,
                    None => return,
                }
            }
        };
        match track {
            Ok(t) => {
                self.make_current(t);
            }
            Err(message) => self.cannot_play(item.key, message),
        }
    }

    fn update_latency(&self) {
        let rate = u64::from(self.out.rate().get());
        let limiter_ms = self.master.delay_frames() as u64 * 1000 / rate;
        self.stats
            .set_latency_ms(self.out.latency().as_millis() as u64 + limiter_ms);
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
        self.update_latency();
        self.emit(PlayerEvent::Output {
            description: format!("null (after an error on {}: {error})", self.spec),
            ok: false,
        });
    }
}
