//! A real device through rodio (cpal's ALSA host), and the list of this machine's devices.

use std::num::NonZero;
use std::path::Path;
use std::time::{Duration, Instant};

use rodio::cpal::traits::{DeviceTrait, HostTrait};

use super::{AudioOut, OutputError};
use crate::chain::chain;

/// Chunks queued ahead of the device: ~8 chunks of 1024 frames ≈ 190 ms at 44.1 kHz.
const QUEUED_CHUNKS: usize = 8;
/// A device that takes no samples for this long is gone (unplugged): the audio thread must not
/// hang on it.
const STALL: Duration = Duration::from_secs(2);

/// Samples are appended to a rodio player in chunks; `write` waits while more than a few
/// chunks are queued, which paces us at the device's rate.
pub struct DeviceOut {
    name: String,
    // Kept alive: dropping it closes the device.
    _sink: rodio::MixerDeviceSink,
    player: rodio::Player,
    channels: NonZero<u16>,
    rate: NonZero<u32>,
    /// The stream stopped (or has not begun): an empty queue is expected, not an underrun.
    idle: bool,
    underruns: u64,
    /// The frames of the last chunk, to turn the queue's length into time.
    chunk_frames: usize,
    /// The device's own buffer behind the queue, in frames.
    device_frames: usize,
}

impl DeviceOut {
    /// Opens the named device (`None`: the system's default).
    pub fn open(name: Option<&str>) -> Result<DeviceOut, OutputError> {
        let device = name.unwrap_or("default").to_string();
        let mut sink = match name {
            None => rodio::DeviceSinkBuilder::open_default_sink()
                .map_err(|e| sink_error(&device, &e))?,
            Some(n) => rodio::DeviceSinkBuilder::from_device(find(n)?)
                .and_then(|b| b.open_stream())
                .map_err(|e| sink_error(&device, &e))?,
        };
        sink.log_on_drop(false);
        let channels = sink.config().channel_count();
        let rate = sink.config().sample_rate();
        // cpal gives a fixed period size a buffer of two periods (double buffering); rodio
        // asks for a period of about 50 ms. With the driver's own choice it is unknown.
        let device_frames = match sink.config().buffer_size() {
            rodio::cpal::BufferSize::Fixed(period) => 2 * *period as usize,
            rodio::cpal::BufferSize::Default => 0,
        };
        let player = rodio::Player::connect_new(sink.mixer());
        Ok(DeviceOut {
            name: device,
            _sink: sink,
            player,
            channels,
            rate,
            idle: true,
            underruns: 0,
            chunk_frames: 1024,
            device_frames,
        })
    }
}

/// The device whose id (`alsa:NAME` or `NAME`) or description is `name`; else the ALSA PCM
/// of that name, which need not be listed (`hw:1,0`, a plugin from asound.conf).
fn find(name: &str) -> Result<rodio::cpal::Device, OutputError> {
    let host = rodio::cpal::default_host();
    let devices = host.output_devices().map_err(|e| cpal_error(name, &e))?;
    for d in devices {
        let id = d.id().map(|i| i.to_string()).unwrap_or_default();
        let desc = d
            .description()
            .map(|x| x.name().to_string())
            .unwrap_or_default();
        if id == format!("alsa:{name}") || id == name || desc == name {
            return Ok(d);
        }
    }
    let id: rodio::cpal::DeviceId =
        format!("alsa:{name}")
            .parse()
            .map_err(|e| OutputError::Open {
                device: name.to_string(),
                cause: format!("not a device name: {e}"),
            })?;
    host.device_by_id(&id).ok_or_else(|| OutputError::NoDevice {
        device: name.to_string(),
    })
}

/// Sorts rodio's refusal by what it means for a retry.
fn sink_error(device: &str, e: &rodio::DeviceSinkError) -> OutputError {
    use rodio::DeviceSinkError as E;
    match e {
        E::NoDevice => OutputError::NoDevice {
            device: device.to_string(),
        },
        E::PlayError(c)
        | E::DefaultSinkConfigError(c)
        | E::BuildError(c)
        | E::SupportedConfigsError(c) => match cpal_error(device, c) {
            OutputError::Open { device, .. } => OutputError::Open {
                device,
                cause: chain(e),
            },
            typed => typed,
        },
        E::UnsupportedSampleFormat => OutputError::Open {
            device: device.to_string(),
            cause: chain(e),
        },
    }
}

fn cpal_error(device: &str, e: &rodio::cpal::Error) -> OutputError {
    use rodio::cpal::ErrorKind as K;
    let device = device.to_string();
    match e.kind() {
        K::DeviceBusy => OutputError::Busy {
            device,
            cause: chain(e),
        },
        K::DeviceNotAvailable | K::HostUnavailable => OutputError::NoDevice { device },
        _ => OutputError::Open {
            device,
            cause: chain(e),
        },
    }
}

impl AudioOut for DeviceOut {
    fn channels(&self) -> NonZero<u16> {
        self.channels
    }
    fn rate(&self) -> NonZero<u32> {
        self.rate
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError> {
        // Everything queued was played before this chunk came: the device ran dry (rodio's
        // mixer filled the gap with silence).
        if self.player.empty() && !self.idle {
            self.underruns += 1;
        }
        self.idle = false;
        self.chunk_frames = samples.len() / usize::from(self.channels.get());
        self.player.play();
        self.player.append(rodio::buffer::SamplesBuffer::new(
            self.channels,
            self.rate,
            samples.to_vec(),
        ));
        let deadline = Instant::now() + STALL;
        while self.player.len() > QUEUED_CHUNKS {
            if Instant::now() > deadline {
                self.player.clear();
                return Err(OutputError::Stalled {
                    device: self.name.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
    fn discard(&mut self) {
        self.player.clear();
        self.idle = true;
    }
    fn idle(&mut self) {
        self.idle = true;
    }
    fn take_underruns(&mut self) -> u64 {
        std::mem::take(&mut self.underruns)
    }
    fn latency(&self) -> Duration {
        // What `write` keeps queued ahead of the device, and the device's buffer.
        let frames = QUEUED_CHUNKS * self.chunk_frames + self.device_frames;
        Duration::from_secs_f64(frames as f64 / f64::from(self.rate.get()))
    }
    fn describe(&self) -> String {
        format!(
            "ALSA device {} ({} Hz, {} channels)",
            self.name, self.rate, self.channels
        )
    }
}

/// Says why the default device surely cannot open: no sound card, and no ALSA configuration
/// that could route `default` elsewhere (PulseAudio, PipeWire, a file plugin). Checking first
/// keeps libasound from printing its errors on every retry on a machine without sound, and
/// makes a USB sound card plugged in later show up within seconds.
pub fn sound_card_absent() -> Option<&'static str> {
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
            Some("no sound card found (/proc/asound/cards lists none)")
        }
        Err(_) if !Path::new("/proc/asound").exists() => {
            Some("no sound support in this kernel (/proc/asound is missing)")
        }
        _ => None,
    }
}

/// Lists the outputs of this machine as (`--output` value, description).
pub fn devices() -> Vec<(String, String)> {
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
        (
            "snapcast:PATH".to_string(),
            "snapserver's pipe source, 48000:16:2 (every room in sync; see docs/MULTIROOM.md)"
                .to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rodio::cpal::{Error, ErrorKind};

    #[test]
    fn a_busy_device_and_a_missing_one_are_told_apart_by_kind() {
        let busy = cpal_error("hw:1", &Error::with_message(ErrorKind::DeviceBusy, "EBUSY"));
        assert!(matches!(busy, OutputError::Busy { .. }), "{busy:?}");
        let gone = sink_error(
            "hw:1",
            &rodio::DeviceSinkError::BuildError(Error::new(ErrorKind::DeviceNotAvailable)),
        );
        assert!(matches!(gone, OutputError::NoDevice { .. }), "{gone:?}");
        let denied = sink_error(
            "hw:1",
            &rodio::DeviceSinkError::BuildError(Error::new(ErrorKind::PermissionDenied)),
        );
        assert!(matches!(denied, OutputError::Open { .. }), "{denied:?}");
        assert!(denied.to_string().contains("Permission denied"), "{denied}");
        assert!(matches!(
            sink_error("default", &rodio::DeviceSinkError::NoDevice),
            OutputError::NoDevice { .. }
        ));
    }
}
