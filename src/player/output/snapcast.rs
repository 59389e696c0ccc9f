//! `snapcast:PATH`: the party's audio as 48000 Hz / 16-bit / stereo little-endian PCM into
//! snapserver's pipe source, for every room's snapclient to play in sync.
//!
//! The engine's side is paced by the clock like the null output, so the party's timeline goes
//! on whatever snapserver does; the bytes go through a bounded queue to a writer thread of
//! their own, which alone ever waits on the pipe. A snapserver that is missing, stalled, killed
//! or restarting costs the audio written meanwhile (dropped when the queue is full), never a
//! wait anywhere else. The writer reopens the pipe by itself, says once why it cannot, and
//! waits in a blocking `open` (no polling loop) while no snapserver reads. Between tracks and
//! while paused it writes silence, so that snapserver's stream does not flap to idle (and, on
//! snapserver 0.28+, does not resync).
//!
//! Two clocks meet at the pipe: the engine's, and snapserver's reads (one chunk per tick of its
//! own). They run at one rate, so what waits between them stays what the engine leads by plus
//! a full pipe, which is the latency the output reports, unless snapserver finds the pipe empty
//! and fills in silence: its timeline then runs that far ahead of ours for good. The writer
//! notices by how long the audio waited in the queue, and drops that much to stay in time with
//! what the phones show.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::num::NonZero;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{to_i16, AudioOut, OutputError, Pacer};

/// The format snapserver's source is configured for (`sampleformat=48000:16:2`).
pub const RATE: NonZero<u32> = NonZero::new(48_000).unwrap();
pub const CHANNELS: NonZero<u16> = NonZero::new(2).unwrap();
const BYTES_PER_SECOND: u64 = 48_000 * 2 * 2;
/// The pipe's capacity, set when it is opened: the kernel's default (64 KiB, 341 ms) is
/// latency every room hears on every skip; 16 KiB (85 ms) still rides out the writer's
/// scheduling.
const PIPE_BYTES: usize = 16 * 1024;
/// The queue between the engine and the writer, in chunks (an engine step is ~20 ms): more
/// than the engine's lead, so a healthy pipe never drops a chunk.
const QUEUE_CHUNKS: usize = 32;
/// Silence is written this much at a time while nothing plays (the full pipe paces it);
/// music that comes meanwhile waits behind at most this much more than the full pipe.
const SILENCE: Duration = Duration::from_millis(20);
/// While playing, a chunk this late means the engine stalled: the writer fills in silence so
/// that snapserver's stream does not go idle. Shorter waits are left to the pipe and
/// snapserver's buffer, which hold far more: a chunk late for scheduling is not a gap.
const STALL: Duration = Duration::from_millis(500);
/// How far the engine runs ahead of real time: the queue to the writer. Far less than a
/// device's lead: the full pipe behind it is the buffer that rides out a late engine (the
/// pacer's slack) or a late writer, and every millisecond here is heard late in every room on
/// a skip; the queue only has to cover one engine step.
const LEAD: Duration = Duration::from_millis(40);
/// How long the output waits, when it is opened, for snapserver to take the pipe: the
/// party's first track should reach the rooms from its first note. A running snapserver
/// looks for a writer every 100 ms.
const FIRST_OPEN: Duration = Duration::from_millis(1000);
/// Audio that waited in the queue longer than the engine's lead and this, for `BEHIND_FOR`
/// on end, is behind snapserver's timeline rather than held up by a late writer.
const BEHIND_SLACK: Duration = Duration::from_millis(60);
const BEHIND_FOR: Duration = Duration::from_millis(500);
/// How often the writer looks again for a pipe that is missing or is not a pipe.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// From the engine to the writer.
enum Msg {
    /// PCM to write, 48000:16:2 little-endian, and when it was queued.
    Pcm(Vec<u8>, Instant),
    /// Nothing plays from here on (paused, stopped, between plays): write silence.
    Idle,
}

/// The writer's state, shared with the engine's side.
#[derive(Default)]
struct Shared {
    /// Chunks the engine gave that could not be queued (the pipe is not being read).
    dropped: AtomicU64,
    /// The pipe's capacity as the kernel set it, in bytes (0 until opened).
    pipe_bytes: AtomicU64,
    /// The writer is in a blocking `open`, waiting for snapserver.
    waiting_reader: AtomicBool,
}

pub struct SnapcastOut {
    path: PathBuf,
    pacer: Pacer,
    /// snapserver's own buffer (its `buffer` setting): heard this long after it reads.
    buffer: Duration,
    tx: Option<SyncSender<Msg>>,
    shared: Arc<Shared>,
    reported_drops: u64,
}

impl SnapcastOut {
    pub fn open(path: &Path, buffer: Duration) -> SnapcastOut {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            path: path.to_owned(),
            rx,
            shared: shared.clone(),
            opened: opened_tx,
        };
        match std::thread::Builder::new()
            .name("snapcast-writer".into())
            .spawn(move || writer.run())
        {
            Err(e) => tracing::error!("snapcast: cannot start the writer thread: {e}"),
            Ok(_) => {
                if opened_rx.recv_timeout(FIRST_OPEN).is_err()
                    && shared.waiting_reader.load(Ordering::Relaxed)
                {
                    tracing::info!(
                        "snapcast: snapserver is not reading {} (is it running?); the rooms get \
                         the party as soon as it does",
                        path.display()
                    );
                }
            }
        }
        SnapcastOut {
            path: path.to_owned(),
            pacer: Pacer::with_slack(RATE, LEAD, pipe_duration(PIPE_BYTES as u64)),
            buffer,
            tx: Some(tx),
            shared,
            reported_drops: 0,
        }
    }

    fn pipe_latency(&self) -> Duration {
        // Until the pipe is open, the size it will be given.
        let bytes = match self.shared.pipe_bytes.load(Ordering::Relaxed) {
            0 => PIPE_BYTES as u64,
            n => n,
        };
        pipe_duration(bytes)
    }
}

/// How long `bytes` of the pipe's format last.
fn pipe_duration(bytes: u64) -> Duration {
    Duration::from_micros(bytes * 1_000_000 / BYTES_PER_SECOND)
}

impl AudioOut for SnapcastOut {
    fn channels(&self) -> NonZero<u16> {
        CHANNELS
    }
    fn rate(&self) -> NonZero<u32> {
        RATE
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError> {
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&to_i16(*s).to_le_bytes());
        }
        if let Some(tx) = &self.tx {
            match tx.try_send(Msg::Pcm(bytes, Instant::now())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    // Said once per outage (the writer says why), counted meanwhile.
                    if self.reported_drops == 0 {
                        tracing::debug!("snapcast: the pipe is not being read; dropping audio");
                    }
                    self.reported_drops = n;
                }
                Err(TrySendError::Disconnected(_)) => {
                    tracing::error!("snapcast: the writer thread stopped; no more audio");
                    self.tx = None;
                }
            }
        }
        self.pacer
            .advance(samples.len() / usize::from(CHANNELS.get()));
        Ok(())
    }
    fn idle(&mut self) {
        self.pacer.idle();
        if let Some(tx) = &self.tx {
            // Queued behind the last PCM; lost only when the queue is full, and then the
            // writer's stall wait fills in silence all the same.
            let _ = tx.try_send(Msg::Idle);
        }
    }
    fn take_underruns(&mut self) -> u64 {
        self.pacer.take_underruns()
    }
    /// The engine's lead, the pipe's fill (it is kept full: with silence when nothing plays)
    /// and snapserver's buffer.
    fn latency(&self) -> Duration {
        self.pacer.latency() + self.pipe_latency() + self.buffer
    }
    fn describe(&self) -> String {
        format!(
            "snapcast pipe {} (48000 Hz, 16-bit, stereo; snapserver buffer {} ms)",
            self.path.display(),
            self.buffer.as_millis()
        )
    }
}

impl Drop for SnapcastOut {
    fn drop(&mut self) {
        // The writer ends at its next look at the queue; one waiting for a reader in `open`
        // is released by a reader of our own, opened and closed at once.
        self.tx = None;
        let _ = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&self.path);
    }
}

/// Why the pipe cannot be written now; each is said once until it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Trouble {
    Missing,
    NotAPipe,
    Open(String),
    Stopped,
}

struct Writer {
    path: PathBuf,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    /// Told each time the pipe is open.
    opened: SyncSender<()>,
}

/// Says why the pipe cannot be written, once for each new reason.
struct Reporter {
    path: PathBuf,
    said: Option<Trouble>,
}

impl Reporter {
    fn say(&mut self, t: Trouble) {
        if self.said.as_ref() == Some(&t) {
            return;
        }
        let p = self.path.display();
        match &t {
            Trouble::Missing => tracing::warn!(
                "snapcast: {p} does not exist yet; waiting for snapserver to create it \
                 (its source must be pipe://{p}?…&mode=create)"
            ),
            Trouble::NotAPipe => tracing::warn!(
                "snapcast: {p} is not a pipe (a plain file?); not writing into it. Remove it and \
                 let snapserver create its pipe there"
            ),
            Trouble::Open(e) => {
                tracing::warn!("snapcast: cannot open {p}: {e}; trying again every second")
            }
            Trouble::Stopped => tracing::warn!(
                "snapcast: snapserver stopped reading {p}; waiting for it to come back"
            ),
        }
        self.said = Some(t);
    }
}

impl Writer {
    fn run(self) {
        let mut report = Reporter {
            path: self.path.clone(),
            said: None,
        };
        loop {
            let Some(pipe) = self.open(&mut report) else {
                return;
            };
            tracing::info!(
                "snapcast: writing to {} (pipe of {} bytes)",
                self.path.display(),
                self.shared.pipe_bytes.load(Ordering::Relaxed)
            );
            report.said = None;
            match self.feed(pipe) {
                Ok(()) => return,
                Err(e) if e.kind() == ErrorKind::BrokenPipe => report.say(Trouble::Stopped),
                Err(e) => {
                    report.say(Trouble::Open(e.to_string()));
                    std::thread::sleep(LOOK_AGAIN);
                }
            }
        }
    }

    /// Opens the pipe, waiting as long as it takes; `None` when the output was dropped.
    fn open(&self, report: &mut Reporter) -> Option<File> {
        loop {
            if self.closed() {
                return None;
            }
            match std::fs::metadata(&self.path) {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    report.say(Trouble::Missing);
                    std::thread::sleep(LOOK_AGAIN);
                    continue;
                }
                Err(e) => {
                    report.say(Trouble::Open(e.to_string()));
                    std::thread::sleep(LOOK_AGAIN);
                    continue;
                }
                Ok(m) if !m.file_type().is_fifo() => {
                    report.say(Trouble::NotAPipe);
                    std::thread::sleep(LOOK_AGAIN);
                    continue;
                }
                Ok(_) => {}
            }
            // A blocking open: it returns when snapserver next looks for a writer (every
            // 100 ms while it runs), and waits without polling while it does not. A
            // non-blocking open would fail with ENXIO in between its looks.
            self.shared.waiting_reader.store(true, Ordering::Relaxed);
            let opened = OpenOptions::new().write(true).open(&self.path);
            self.shared.waiting_reader.store(false, Ordering::Relaxed);
            let file = match opened {
                Ok(f) => f,
                Err(e) => {
                    report.say(Trouble::Open(e.to_string()));
                    std::thread::sleep(LOOK_AGAIN);
                    continue;
                }
            };
            if !file.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
                continue; // replaced meanwhile: look again
            }
            let size = rustix::pipe::fcntl_setpipe_size(&file, PIPE_BYTES)
                .or_else(|_| rustix::pipe::fcntl_getpipe_size(&file))
                .unwrap_or(64 * 1024);
            self.shared.pipe_bytes.store(size as u64, Ordering::Relaxed);
            let _ = self.opened.try_send(());
            return Some(file);
        }
    }

    /// Writes what the engine sends, silence while nothing plays (or the engine stalled),
    /// until the pipe breaks (`Err`) or the output is dropped (`Ok`).
    fn feed(&self, mut pipe: File) -> std::io::Result<()> {
        let silence = vec![0u8; (BYTES_PER_SECOND * SILENCE.as_millis() as u64 / 1000) as usize];
        // A full pipe ahead of the music, as the latency counts it, even when the music is
        // already waiting.
        let fill = self.shared.pipe_bytes.load(Ordering::Relaxed) as usize;
        pipe.write_all(&vec![0u8; fill])?;
        let mut idle = true;
        // The engine's audio runs out this long after it says it is idle (its lead): until
        // then the music may go on (a skip cuts and starts the next track at once), and
        // silence in between would put it late.
        let mut silence_from: Option<Instant> = None;
        // What waited while the pipe was closed is stale, and goes at once.
        let mut behind = Behind::stale();
        loop {
            let wait = silence_from.map(|t| t.saturating_duration_since(Instant::now()));
            let next = if let Some(wait) = wait.filter(|w| idle && !w.is_zero()) {
                self.rx.recv_timeout(wait)
            } else if idle {
                // Keep the pipe full of silence (the blocking write paces this loop) and look
                // for the music in between.
                match self.rx.try_recv() {
                    Ok(m) => Ok(m),
                    Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            } else {
                self.rx.recv_timeout(STALL)
            };
            match next {
                Ok(Msg::Pcm(bytes, queued)) => {
                    idle = false;
                    silence_from = None;
                    if behind.drop(queued.elapsed(), bytes.len()) {
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    pipe.write_all(&bytes)?;
                }
                Ok(Msg::Idle) => {
                    idle = true;
                    silence_from = Some(Instant::now() + LEAD);
                }
                Err(RecvTimeoutError::Timeout) if wait.is_some_and(|w| !w.is_zero()) => {
                    silence_from = None;
                }
                Err(RecvTimeoutError::Timeout) => pipe.write_all(&silence)?,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn closed(&self) -> bool {
        // A disconnected queue with nothing left in it.
        matches!(
            self.rx.recv_timeout(Duration::ZERO),
            Err(RecvTimeoutError::Disconnected)
        )
    }
}

/// Tells audio that is behind snapserver's timeline (see the module's comment) from audio
/// held up for a moment, and how much of it to drop.
#[derive(Default)]
struct Behind {
    /// Since when every chunk waited too long.
    since: Option<Instant>,
    /// Drop what waited too long without waiting to see if it lasts.
    at_once: bool,
    /// Bytes dropped in this spell.
    dropped: u64,
}

impl Behind {
    fn stale() -> Behind {
        Behind {
            at_once: true,
            ..Behind::default()
        }
    }

    /// Whether to drop a chunk of `len` bytes that waited `waited` in the queue.
    fn drop(&mut self, waited: Duration, len: usize) -> bool {
        if waited <= LEAD + BEHIND_SLACK {
            if self.dropped > 0 && !self.at_once {
                tracing::info!(
                    "snapcast: back in time with snapserver after dropping {} ms of audio",
                    self.dropped * 1000 / BYTES_PER_SECOND
                );
            }
            *self = Behind::default();
            return false;
        }
        if self.at_once {
            self.dropped += len as u64;
            return true;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() < BEHIND_FOR {
            return false;
        }
        if self.dropped == 0 {
            tracing::warn!(
                "snapcast: the audio is {} ms behind snapserver's timeline (it found the pipe \
                 empty and played silence); dropping that much to stay in time",
                (waited - LEAD).as_millis()
            );
        }
        self.dropped += len as u64;
        true
    }
}
