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

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::num::NonZero;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

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
/// Silence is written this much at a time while nothing plays (the full pipe paces it).
const SILENCE: Duration = Duration::from_millis(40);
/// While playing, a chunk this late means the engine stalled: the writer fills in silence so
/// that snapserver's stream does not go idle. Shorter waits are left to the pipe and
/// snapserver's buffer, which hold far more: a chunk late for scheduling is not a gap.
const STALL: Duration = Duration::from_millis(500);
/// How far the engine runs ahead of real time: the queue to the writer. Less than a device's
/// lead, since the pipe behind it is a buffer too, and every millisecond here is heard late
/// in every room on a skip.
const LEAD: Duration = Duration::from_millis(100);
/// Looks for a reader before saying there is none (see `Writer::open`).
const NO_READER_LOOKS: u32 = 4;
const NO_READER_PAUSE: Duration = Duration::from_millis(100);
/// How often the writer looks again for a pipe that is missing or is not a pipe.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// From the engine to the writer.
enum Msg {
    /// PCM to write, 48000:16:2 little-endian.
    Pcm(Vec<u8>),
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
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            path: path.to_owned(),
            rx,
            shared: shared.clone(),
        };
        if let Err(e) = std::thread::Builder::new()
            .name("snapcast-writer".into())
            .spawn(move || writer.run())
        {
            tracing::error!("snapcast: cannot start the writer thread: {e}");
        }
        SnapcastOut {
            path: path.to_owned(),
            pacer: Pacer::with_lead(RATE, LEAD),
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
        Duration::from_micros(bytes * 1_000_000 / BYTES_PER_SECOND)
    }
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
            match tx.try_send(Msg::Pcm(bytes)) {
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
    NoReader,
    Open(String),
    Stopped,
}

struct Writer {
    path: PathBuf,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
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
            // Also the usual start: snapserver opens an idle pipe only now and then.
            Trouble::NoReader => {
                tracing::info!("snapcast: waiting for snapserver to read {p} (is it running?)")
            }
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
            // Without blocking first, to tell "no reader" (ENXIO) apart. A running snapserver
            // reopens an idle pipe every 100 ms, so a few looks over 300 ms tell it from one
            // that is not running; a blocking open then waits for it without polling.
            let nonblocking = (0..NO_READER_LOOKS).find_map(|i| {
                if i > 0 {
                    std::thread::sleep(NO_READER_PAUSE);
                }
                match OpenOptions::new()
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                    .open(&self.path)
                {
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                        None
                    }
                    other => Some(other),
                }
            });
            match &nonblocking {
                None => report.say(Trouble::NoReader),
                Some(Err(e)) => {
                    report.say(Trouble::Open(e.to_string()));
                    std::thread::sleep(LOOK_AGAIN);
                    continue;
                }
                Some(Ok(_)) => {}
            }
            // Blocking writes from here: the pipe paces the writer.
            let file = match OpenOptions::new().write(true).open(&self.path) {
                Ok(f) => f,
                Err(e) => {
                    report.say(Trouble::Open(e.to_string()));
                    std::thread::sleep(LOOK_AGAIN);
                    continue;
                }
            };
            drop(nonblocking);
            if !file.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
                continue; // replaced meanwhile: look again
            }
            let size = rustix::pipe::fcntl_setpipe_size(&file, PIPE_BYTES)
                .or_else(|_| rustix::pipe::fcntl_getpipe_size(&file))
                .unwrap_or(64 * 1024);
            self.shared.pipe_bytes.store(size as u64, Ordering::Relaxed);
            // What waited while the pipe was closed is stale.
            while self.rx.try_recv().is_ok() {}
            return Some(file);
        }
    }

    /// Writes what the engine sends, silence while nothing plays (or the engine stalled),
    /// until the pipe breaks (`Err`) or the output is dropped (`Ok`).
    fn feed(&self, mut pipe: File) -> std::io::Result<()> {
        let silence = vec![0u8; (BYTES_PER_SECOND * SILENCE.as_millis() as u64 / 1000) as usize];
        let mut idle = true;
        loop {
            let next = if idle {
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
                Ok(Msg::Pcm(bytes)) => {
                    idle = false;
                    pipe.write_all(&bytes)?;
                }
                Ok(Msg::Idle) => idle = true,
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
