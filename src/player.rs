//! The player: a handle to a dedicated audio thread. The thread owns the decoder and the output
//! (rodio's device stream is not `Send`, and audio must never wait on the async runtime); it
//! takes commands over a channel and reports events over another. Nothing in the request path
//! waits on it.
//!
//! Samples flow decoder → format conversion (rodio's `UniformSourceIterator`) → software volume
//! → an [`AudioOut`]: a device (rodio on ALSA), a WAV file, or nothing. The file and null
//! outputs are paced like a device, so a song takes as long as it plays. When a track ends and
//! the next one is known (the hub keeps it current with `Preload`), the next track's samples
//! follow in the same chunk: no gap.

use std::fs::File;
use std::io::BufReader;
use std::num::NonZero;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rodio::source::UniformSourceIterator;
use rodio::{Decoder, Source};

use crate::config::OutputSpec;

/// Identifies one item handed to the player; chosen by the hub.
pub type Key = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayItem {
    pub key: Key,
    pub path: PathBuf,
    /// Where to start (a resumed play after a restart).
    pub start_ms: u64,
}

#[derive(Debug)]
pub enum PlayerCommand {
    /// Play this now, replacing whatever plays.
    Load(PlayItem),
    /// What follows the current track when it ends (gapless); `None` clears it.
    Preload(Option<PlayItem>),
    Pause,
    Resume,
    Seek(u64),
    /// 0..=100.
    SetVolume(u32),
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
    /// (its `Started` or `Error` follows), or `None` when it has nothing left to play.
    Finished { key: Key, next: Option<Key> },
    /// The track could not be opened; the hub decides what plays instead.
    Error { key: Key, message: String },
    /// Which output is in use, and whether it is the one asked for.
    Output { description: String, ok: bool },
}

/// The output format of the wav and null outputs.
const FILE_RATE: u32 = 44_100;
const FILE_CHANNELS: u16 = 2;
/// Frames converted and written per step; also bounds command latency (~23 ms).
const CHUNK_FRAMES: usize = 1024;
/// How far ahead of real time a paced output may run, like a device's buffer.
const LEAD: Duration = Duration::from_millis(200);

/// A place samples go. `write` blocks to pace playback at real time.
trait AudioOut {
    fn channels(&self) -> u16;
    fn rate(&self) -> u32;
    fn write(&mut self, samples: &[f32]) -> Result<(), String>;
    /// Drop what is buffered and not yet heard (skip, seek, stop, pause).
    fn discard(&mut self) {}
    /// Called at each track end: make everything written so far durable and readable.
    fn track_end(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn describe(&self) -> String;
}

/// Sleeps so that writes follow real time, at most `LEAD` ahead.
struct Pacer {
    rate: u32,
    start: Instant,
    frames: u64,
}

impl Pacer {
    fn new(rate: u32) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
            frames: 0,
        }
    }
    fn reset(&mut self) {
        self.start = Instant::now();
        self.frames = 0;
    }
    fn advance(&mut self, frames: usize) {
        // After a pause or an idle spell, do not rush to catch up.
        let due = self.start + Duration::from_secs_f64(self.frames as f64 / f64::from(self.rate));
        if due + LEAD < Instant::now() {
            self.reset();
        }
        self.frames += frames as u64;
        let due = self.start + Duration::from_secs_f64(self.frames as f64 / f64::from(self.rate));
        let now = Instant::now();
        if due > now + LEAD {
            std::thread::sleep(due - now - LEAD);
        }
    }
}

/// Paced and discarded; also stands in, in the same format, for an output that failed.
struct NullOut {
    pacer: Pacer,
    channels: u16,
}

impl NullOut {
    fn new(channels: u16, rate: u32) -> NullOut {
        NullOut {
            pacer: Pacer::new(rate.max(1)),
            channels: channels.max(1),
        }
    }
}

impl AudioOut for NullOut {
    fn channels(&self) -> u16 {
        self.channels
    }
    fn rate(&self) -> u32 {
        self.pacer.rate
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), String> {
        self.pacer
            .advance(samples.len() / usize::from(self.channels));
        Ok(())
    }
    fn describe(&self) -> String {
        "null (paced, discarded)".into()
    }
}

/// The exact PCM (16-bit, 44.1 kHz, stereo) that would go to the device, paced in real time.
struct WavOut {
    path: PathBuf,
    writer: Option<hound::WavWriter<std::io::BufWriter<File>>>,
    pacer: Pacer,
    buf: Vec<i16>,
}

impl WavOut {
    fn create(path: &Path) -> Result<WavOut, String> {
        let spec = hound::WavSpec {
            channels: FILE_CHANNELS,
            sample_rate: FILE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(WavOut {
            path: path.to_owned(),
            writer: Some(writer),
            pacer: Pacer::new(FILE_RATE),
            buf: Vec::with_capacity(CHUNK_FRAMES * 2),
        })
    }
}

impl AudioOut for WavOut {
    fn channels(&self) -> u16 {
        FILE_CHANNELS
    }
    fn rate(&self) -> u32 {
        FILE_RATE
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), String> {
        let w = self.writer.as_mut().ok_or("wav output is closed")?;
        self.buf.clear();
        self.buf.extend(
            samples
                .iter()
                .map(|s| (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16),
        );
        let mut iw = w.get_i16_writer(self.buf.len() as u32);
        for s in &self.buf {
            iw.write_sample(*s);
        }
        iw.flush()
            .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        self.pacer.advance(samples.len() / FILE_CHANNELS as usize);
        Ok(())
    }
    fn discard(&mut self) {
        // Nothing is buffered beyond the lead: what was written was "heard".
    }
    fn track_end(&mut self) -> Result<(), String> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()
                .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("wav file {}", self.path.display())
    }
}

impl Drop for WavOut {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::error!("finalising {}: {e}", self.path.display());
            }
        }
    }
}

/// A real device through rodio. Samples are appended to a rodio player in chunks; `write`
/// waits while more than a few chunks are queued, which paces us at the device's rate.
struct DeviceOut {
    name: String,
    // Kept alive: dropping it closes the device.
    _sink: rodio::MixerDeviceSink,
    player: rodio::Player,
    channels: u16,
    rate: u32,
}

impl DeviceOut {
    fn open(name: Option<&str>) -> Result<DeviceOut, String> {
        use rodio::cpal::traits::{DeviceTrait, HostTrait};
        let mut sink = match name {
            None => rodio::DeviceSinkBuilder::open_default_sink().map_err(|e| chain(&e))?,
            Some(n) => {
                let host = rodio::cpal::default_host();
                let devices = host.output_devices().map_err(|e| chain(&e))?;
                let mut found = None;
                for d in devices {
                    let id = d.id().map(|i| i.to_string()).unwrap_or_default();
                    let desc = d
                        .description()
                        .map(|x| x.name().to_string())
                        .unwrap_or_default();
                    if id == format!("alsa:{n}") || id == n || desc == n {
                        found = Some(d);
                        break;
                    }
                }
                let device = match found {
                    Some(d) => d,
                    None => {
                        let id: rodio::cpal::DeviceId = format!("alsa:{n}")
                            .parse()
                            .map_err(|e| format!("bad device name {n:?}: {e}"))?;
                        host.device_by_id(&id)
                            .ok_or_else(|| format!("no output device named {n:?}"))?
                    }
                };
                rodio::DeviceSinkBuilder::from_device(device)
                    .and_then(|b| b.open_stream())
                    .map_err(|e| chain(&e))?
            }
        };
        sink.log_on_drop(false);
        let channels = sink.config().channel_count().get();
        let rate = sink.config().sample_rate().get();
        let player = rodio::Player::connect_new(sink.mixer());
        Ok(DeviceOut {
            name: name.unwrap_or("default").to_string(),
            _sink: sink,
            player,
            channels,
            rate,
        })
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl AudioOut for DeviceOut {
    fn channels(&self) -> u16 {
        self.channels
    }
    fn rate(&self) -> u32 {
        self.rate
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), String> {
        let ch = NonZero::new(self.channels).ok_or("device has no channels")?;
        let rate = NonZero::new(self.rate).ok_or("device has no sample rate")?;
        self.player.play();
        self.player.append(rodio::buffer::SamplesBuffer::new(
            ch,
            rate,
            samples.to_vec(),
        ));
        // ~8 chunks of 1024 frames ≈ 190 ms at 44.1 kHz queued ahead of the device. A device
        // that stops taking samples (unplugged) must not hang the audio thread.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.player.len() > 8 {
            if Instant::now() > deadline {
                self.player.clear();
                return Err(format!("{} stopped taking samples", self.name));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
    fn discard(&mut self) {
        self.player.clear();
    }
    fn describe(&self) -> String {
        format!(
            "ALSA device {} ({} Hz, {} channels)",
            self.name, self.rate, self.channels
        )
    }
}

/// Opens the output that was asked for. A missing device is not fatal: the null output
/// stands in while the device is retried.
fn open_output(spec: &OutputSpec) -> (Box<dyn AudioOut>, Result<(), String>) {
    let null = || -> Box<dyn AudioOut> { Box::new(NullOut::new(FILE_CHANNELS, FILE_RATE)) };
    match spec {
        OutputSpec::Null => (null(), Ok(())),
        OutputSpec::Wav(p) => match WavOut::create(p) {
            Ok(w) => (Box::new(w), Ok(())),
            Err(e) => (null(), Err(e)),
        },
        OutputSpec::Default => match sound_card_absent() {
            Some(why) => (null(), Err(why)),
            None => match DeviceOut::open(None) {
                Ok(d) => (Box::new(d), Ok(())),
                Err(e) => (null(), Err(e)),
            },
        },
        OutputSpec::Alsa(n) => match DeviceOut::open(Some(n)) {
            Ok(d) => (Box::new(d), Ok(())),
            Err(e) => (null(), Err(e)),
        },
    }
}

/// Says why the default device surely cannot open: no sound card, and no ALSA configuration
/// that could route `default` elsewhere (PulseAudio, PipeWire, a file plugin). Checking first
/// keeps libasound from printing its errors on every retry on a machine without sound, and
/// makes a USB sound card plugged in later show up within seconds.
fn sound_card_absent() -> Option<String> {
    if std::env::var_os("ALSA_CONFIG_PATH").is_some() {
        return None;
    }
    let home_rc = std::env::var_os("HOME").map(|h| Path::new(&h).join(".asoundrc"));
    if Path::new("/etc/asound.conf").exists() || home_rc.is_some_and(|p| p.exists()) {
        return None;
    }
    let routed = std::fs::read_dir("/etc/alsa/conf.d").is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().to_lowercase();
            n.contains("pulse") || n.contains("pipewire")
        })
    });
    if routed {
        return None;
    }
    match std::fs::read_to_string("/proc/asound/cards") {
        Ok(cards) if cards.trim().is_empty() || cards.contains("no soundcards") => {
            Some("no sound card found (/proc/asound/cards lists none)".into())
        }
        Err(_) if !Path::new("/proc/asound").exists() => {
            Some("no sound support in this kernel (/proc/asound is missing)".into())
        }
        _ => None,
    }
}

/// Lists the outputs of this machine as (`--output` value, description).
pub fn devices() -> Vec<(String, String)> {
    use rodio::cpal::traits::{DeviceTrait, HostTrait};
    let mut out = vec![
        (
            "default".to_string(),
            "the system's default ALSA device".to_string(),
        ),
        (
            "null".to_string(),
            "no sound, paced like a device".to_string(),
        ),
        (
            "wav:PATH".to_string(),
            "the exact PCM into a WAV file".to_string(),
        ),
    ];
    let host = rodio::cpal::default_host();
    if let Ok(devs) = host.output_devices() {
        for d in devs {
            let Ok(id) = d.id() else { continue };
            let desc = d
                .description()
                .map(|x| x.name().to_string())
                .unwrap_or_default();
            let spec = id.to_string();
            let spec = if spec.starts_with("alsa:") {
                spec
            } else {
                format!("alsa:{spec}")
            };
            out.push((spec, desc));
        }
    }
    out
}

type Converted = UniformSourceIterator<WholeSpan<Decoder<BufReader<File>>>>;

/// Reports one span for the whole stream. Some decoders (Ogg Vorbis) report a span length of 0
/// before their first packet, which rodio's converter takes as "ended"; a file does not change
/// its rate or channel count midway, so one span is the truth.
struct WholeSpan<S>(S);

impl<S: Source> Iterator for WholeSpan<S> {
    type Item = rodio::Sample;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<S: Source> Source for WholeSpan<S> {
    fn current_span_len(&self) -> Option<usize> {
        None
    }
    fn channels(&self) -> rodio::ChannelCount {
        self.0.channels()
    }
    fn sample_rate(&self) -> rodio::SampleRate {
        self.0.sample_rate()
    }
    fn total_duration(&self) -> Option<Duration> {
        self.0.total_duration()
    }
    fn try_seek(&mut self, pos: Duration) -> Result<(), rodio::source::SeekError> {
        self.0.try_seek(pos)
    }
}

struct Current {
    item: PlayItem,
    source: Converted,
    /// The output rate `source` converts to.
    rate: u32,
    /// Frames of this track already written to the output.
    frames: u64,
}

/// Opens a track converted to the output format; returns it, its length, and where it starts.
fn open_track(
    item: &PlayItem,
    channels: u16,
    rate: u32,
) -> Result<(Converted, Option<u64>, u64), String> {
    let file = File::open(&item.path).map_err(|e| format!("{}: {e}", item.path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut builder = Decoder::builder()
        .with_data(BufReader::new(file))
        .with_byte_len(len)
        .with_seekable(true)
        .with_gapless(true);
    if let Some(ext) = item.path.extension().and_then(|e| e.to_str()) {
        builder = builder.with_hint(ext);
    }
    let decoder = builder
        .build()
        .map_err(|e| format!("{}: {e}", item.path.display()))?;
    let duration = decoder.total_duration().map(|d| d.as_millis() as u64);
    let (Some(ch), Some(r)) = (NonZero::new(channels), NonZero::new(rate)) else {
        return Err("output has no channels or rate".into());
    };
    let mut source = UniformSourceIterator::new(WholeSpan(decoder), ch, r);
    let mut start_ms = item.start_ms;
    if start_ms > 0 {
        if let Err(e) = source.try_seek(Duration::from_millis(start_ms)) {
            // Better the whole song than none of it.
            tracing::warn!(
                "{}: cannot seek to {start_ms} ms ({e}); playing from the start",
                item.path.display()
            );
            start_ms = 0;
        }
    }
    Ok((source, duration, start_ms))
}

/// The handle. Dropping it stops the audio thread after the current chunk and finalises the
/// output (the WAV header).
pub struct Player {
    tx: Option<mpsc::Sender<PlayerCommand>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Player {
    pub fn spawn(
        spec: OutputSpec,
        events: tokio::sync::mpsc::UnboundedSender<PlayerEvent>,
    ) -> std::io::Result<Player> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("player".into())
            .spawn(move || Engine::new(spec, events).run(rx))?;
        Ok(Player {
            tx: Some(tx),
            thread: Some(thread),
        })
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

struct Engine {
    spec: OutputSpec,
    out: Box<dyn AudioOut>,
    /// False while a stand-in null output plays instead of the device asked for.
    out_ok: bool,
    retry_at: Option<Instant>,
    retry_every: Duration,
    events: tokio::sync::mpsc::UnboundedSender<PlayerEvent>,
    current: Option<Current>,
    next: Option<PlayItem>,
    paused: bool,
    gain: f32,
    last_position: Instant,
    chunk: Vec<f32>,
}

impl Engine {
    fn new(spec: OutputSpec, events: tokio::sync::mpsc::UnboundedSender<PlayerEvent>) -> Engine {
        let (out, res) = open_output(&spec);
        let mut e = Engine {
            spec,
            out,
            out_ok: true,
            retry_at: None,
            retry_every: Duration::from_secs(2),
            events,
            current: None,
            next: None,
            paused: false,
            gain: volume_gain(70),
            last_position: Instant::now(),
            chunk: Vec::with_capacity(CHUNK_FRAMES * 8),
        };
        e.report_output(res);
        e
    }

    fn report_output(&mut self, res: Result<(), String>) {
        match res {
            Ok(()) => {
                self.out_ok = true;
                self.retry_at = None;
                tracing::info!("audio output: {}", self.out.describe());
            }
            Err(e) => {
                self.out_ok = false;
                let retry = !matches!(self.spec, OutputSpec::Wav(_) | OutputSpec::Null);
                tracing::warn!(
                    "audio output {} unavailable ({e}); playing to the null output instead{}",
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
            }
        }
        self.emit(PlayerEvent::Output {
            description: if self.out_ok {
                self.out.describe()
            } else {
                format!("null (standing in for {})", self.spec)
            },
            ok: self.out_ok,
        });
    }

    fn emit(&self, e: PlayerEvent) {
        // The hub being gone means we are shutting down; nothing to do.
        let _ = self.events.send(e);
    }

    fn run(mut self, rx: mpsc::Receiver<PlayerCommand>) {
        loop {
            let active = self.current.is_some() && !self.paused;
            let cmd = if active {
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.recv_timeout(Duration::from_millis(500)) {
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
        let (out, res) = open_output(&self.spec);
        if res.is_ok() {
            self.out = out;
            // A track in progress continues where it was, converted to the device's format.
            if let Some(cur) = self.current.take() {
                let item = PlayItem {
                    start_ms: frames_to_ms(cur.frames, cur.rate),
                    ..cur.item
                };
                match open_track(&item, self.out.channels(), self.out.rate()) {
                    Ok((source, _, start_ms)) => {
                        self.current = Some(Current {
                            frames: start_ms * u64::from(self.out.rate()) / 1000,
                            rate: self.out.rate(),
                            item,
                            source,
                        })
                    }
                    Err(message) => self.emit(PlayerEvent::Error {
                        key: item.key,
                        message,
                    }),
                }
            }
            self.report_output(Ok(()));
        } else {
            // Looking for a card is cheap: keep looking every 2 s. A card that exists but
            // fails to open is retried less and less often.
            let no_card = res
                .as_ref()
                .err()
                .is_some_and(|e| e.starts_with("no sound"));
            if !no_card {
                self.retry_every = (self.retry_every * 2).min(Duration::from_secs(60));
            }
            self.retry_at = Some(Instant::now() + self.retry_every);
            tracing::debug!(
                "audio device still unavailable; next try in {:?}",
                self.retry_every
            );
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
                if let Some(cur) = self.current.as_mut() {
                    self.out.discard();
                    match cur.source.try_seek(Duration::from_millis(ms)) {
                        Ok(()) => cur.frames = ms * u64::from(self.out.rate()) / 1000,
                        Err(e) => tracing::warn!("seek failed: {e}"),
                    }
                    let (key, position_ms) =
                        (cur.item.key, frames_to_ms(cur.frames, self.out.rate()));
                    self.emit(PlayerEvent::Position { key, position_ms });
                }
            }
            PlayerCommand::SetVolume(v) => self.gain = volume_gain(v),
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
        match open_track(&it, self.out.channels(), self.out.rate()) {
            Ok((source, duration_ms, position_ms)) => {
                let key = it.key;
                self.current = Some(Current {
                    frames: position_ms * u64::from(self.out.rate()) / 1000,
                    rate: self.out.rate(),
                    item: it,
                    source,
                });
                self.last_position = Instant::now();
                self.emit(PlayerEvent::Started {
                    key,
                    duration_ms,
                    position_ms,
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
        let channels = usize::from(self.out.channels());
        let want = CHUNK_FRAMES * channels;
        self.chunk.clear();
        while self.chunk.len() < want {
            let Some(cur) = self.current.as_mut() else {
                break;
            };
            let before = self.chunk.len();
            self.chunk.extend(cur.source.by_ref().take(want - before));
            let got = self.chunk.len() - before;
            cur.frames += (got / channels) as u64;
            if self.chunk.len() < want {
                // The track ended (or stopped decoding): finish it and move on.
                let key = cur.item.key;
                if let Err(e) = self.out.track_end() {
                    self.output_failed(e);
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
            self.output_failed(e);
        }
        self.chunk = chunk;
        if self.last_position.elapsed() >= Duration::from_secs(1) {
            self.last_position = Instant::now();
            if let Some(cur) = &self.current {
                let position_ms = frames_to_ms(cur.frames, self.out.rate());
                self.emit(PlayerEvent::Position {
                    key: cur.item.key,
                    position_ms,
                });
            }
        }
    }

    /// A write failed (disk full, device unplugged): say so, keep the music "playing" on the
    /// null output so the party's timeline goes on, and retry devices.
    fn output_failed(&mut self, e: String) {
        tracing::error!("audio output failed: {e}");
        self.out = Box::new(NullOut::new(self.out.channels(), self.out.rate()));
        self.out_ok = false;
        if !matches!(self.spec, OutputSpec::Wav(_) | OutputSpec::Null) {
            self.retry_at = Some(Instant::now() + self.retry_every);
        }
        self.emit(PlayerEvent::Output {
            description: format!("null (after an error on {}: {e})", self.spec),
            ok: false,
        });
    }
}

fn frames_to_ms(frames: u64, rate: u32) -> u64 {
    frames * 1000 / u64::from(rate.max(1))
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

    #[test]
    fn pacer_follows_real_time() {
        let mut p = Pacer::new(10_000);
        let t = Instant::now();
        for _ in 0..50 {
            p.advance(100); // 0.5 s of audio in total
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }
}
