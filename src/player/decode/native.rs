//! A track decoded in its own rate and channels: symphonia's demuxers and decoders, with
//! libopus registered for Opus (symphonia 0.5 has no Opus decoder of its own).
//!
//! One concrete type for every format, so the sample loop pays no per-sample virtual call or
//! enum dispatch: the format-specific work happens once per packet, and `next()` is an index
//! into the packet's interleaved samples.

use crate::untrusted::guarded;
use std::fs::File;
use std::num::NonZero;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rodio::source::SeekError;
use rodio::Source;
use symphonia::core::audio::{Channels, SampleBuffer, SignalSpec};
use symphonia::core::codecs::{
    CodecRegistry, Decoder, DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_OPUS,
};
use symphonia::core::errors::Error;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::units::{Time, TimeBase};
use symphonia_adapter_libopus::OpusDecoder;

use super::aiff;
use super::opus_head::OpusHead;

/// After this many undecodable packets in a row the rest of the file is taken as garbage.
const MAX_BAD_PACKETS: u32 = 100;
/// Opus decoders need this much audio before a seek target to converge (RFC 7845 §4.6).
const OPUS_PREROLL: u64 = 3840;

/// symphonia's decoders plus libopus, built once.
fn codecs() -> &'static CodecRegistry {
    static CODECS: OnceLock<CodecRegistry> = OnceLock::new();
    CODECS.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_all::<OpusDecoder>();
        registry
    })
}

/// A track's samples in its own format (rate, channels), as they will be heard: gapless trims
/// done and, for Opus, the header's output gain applied.
pub struct Native {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track: u32,
    /// The current packet, interleaved; `pos` is the next sample to hand out, `buf_end` one
    /// past the last (the packet's end, or the stream's where it ends inside it).
    buf: SampleBuffer<f32>,
    pos: usize,
    buf_end: usize,
    /// Timestamp one past the last frame, when we know better than the demuxer (AIFF).
    end_ts: Option<u64>,
    /// The timestamp of `buf`'s first frame.
    buf_ts: u64,
    channels: NonZero<u16>,
    rate: NonZero<u32>,
    time_base: TimeBase,
    /// Timestamp of the stream's first audible frame (Opus counts its pre-skip in timestamps).
    start_ts: u64,
    /// Extra decoding before a seek target, in frames.
    preroll: u64,
    /// A factor for every sample (the Opus output gain), or exactly 1.
    gain: f32,
    total: Option<Duration>,
    bad_packets: u32,
    ended: bool,
    name: Box<str>,
}

impl Native {
    /// Opens `path` and decodes its first packet, so that a file we cannot play fails here
    /// with a reason, not later as silence.
    pub fn open(path: &Path) -> Result<Native, String> {
        let name = path.display().to_string();
        let mut file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
        // Before the demuxer can ask for memory by a count the file made up.
        super::mp4_tables::check(&mut file).map_err(|e| format!("{name}: {e}"))?;
        let aiff_frames = aiff::sample_frames(&file);
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        // The decoders are not all hardened against hostile input; a panic in one must cost
        // that file, not the audio thread.
        guarded(|| Native::init(file, &hint, name.clone(), aiff_frames))
            .unwrap_or_else(|_| Err(format!("{name}: the decoder failed on this file")))
    }

    fn init(
        file: File,
        hint: &Hint,
        name: String,
        aiff_frames: Option<u64>,
    ) -> Result<Native, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("{name}: {what}: {e}");
        let mss = MediaSourceStream::new(Box::new(file), MediaSourceStreamOptions::default());
        let format_opts = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let probed = symphonia::default::get_probe()
            .format(hint, mss, &format_opts, &MetadataOptions::default())
            .map_err(|e| fail("not a format we can read", &e))?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| format!("{name}: no audio track"))?;
        let params = track.codec_params.clone();
        let decoder = codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| fail("cannot decode its audio", &e))?;
        let head = (params.codec == CODEC_TYPE_OPUS)
            .then(|| params.extra_data.as_deref().and_then(OpusHead::parse))
            .flatten();
        let start_ts = params.start_ts + head.map_or(0, |h| u64::from(h.pre_skip));
        let rate = params.sample_rate.unwrap_or(0);
        let time_base = params
            .time_base
            .or_else(|| (rate > 0).then(|| TimeBase::new(1, rate)))
            .ok_or_else(|| format!("{name}: no sample rate"))?;
        let total = aiff_frames
            .or(params.n_frames)
            .map(|n| n.saturating_sub(start_ts - params.start_ts))
            .filter(|n| *n > 0)
            .map(|n| time_base.calc_time(n).into());
        let mut native = Native {
            track: track.id,
            format,
            decoder,
            buf: SampleBuffer::new(0, SignalSpec::new(1, Channels::FRONT_LEFT)),
            pos: 0,
            buf_end: 0,
            end_ts: aiff_frames.map(|n| params.start_ts + n),
            buf_ts: 0,
            channels: NonZero::<u16>::MIN,
            rate: NonZero::<u32>::MIN,
            time_base,
            start_ts,
            preroll: if head.is_some() { OPUS_PREROLL } else { 0 },
            gain: head.map_or(1.0, |h| h.gain()),
            total,
            bad_packets: 0,
            ended: false,
            name: name.clone().into(),
        };
        // The first packet says what the stream really is (some containers do not).
        let spec = native
            .decode_next(None)
            .ok_or_else(|| format!("{name}: no audio could be decoded"))?;
        native.channels = u16::try_from(spec.channels.count())
            .ok()
            .and_then(NonZero::new)
            .ok_or_else(|| format!("{name}: unsupported channel layout"))?;
        native.rate = NonZero::new(spec.rate).ok_or_else(|| format!("{name}: no sample rate"))?;
        Ok(native)
    }

    /// The rest of the current packet, then `None` when the stream ended: a cheaper way than
    /// `next()` to read it all (the loudness pass).
    #[allow(dead_code, reason = "for the loudness pass, which reads whole tracks")]
    pub fn next_chunk(&mut self) -> Option<&[f32]> {
        if self.pos >= self.buf_end && !self.refill() {
            return None;
        }
        let from = self.pos;
        self.pos = self.buf_end;
        Some(&self.buf.samples()[from..self.buf_end])
    }

    /// Appends `samples` samples to `out`, fewer only where the stream ends: packets copied
    /// whole, for a track that needs no conversion.
    pub fn read(&mut self, out: &mut Vec<f32>, samples: usize) {
        let mut left = samples;
        out.reserve(samples);
        while left > 0 {
            if self.pos >= self.buf_end && !self.refill() {
                return;
            }
            let from = self.pos;
            let to = self.buf_end.min(from + left);
            out.extend_from_slice(&self.buf.samples()[from..to]);
            self.pos = to;
            left -= to - from;
        }
    }

    /// Decodes the next packet into `buf`; `false` at the end of the stream.
    #[cold]
    fn refill(&mut self) -> bool {
        let (channels, rate) = (usize::from(self.channels.get()), self.rate.get());
        match guarded(|| self.decode_next(Some((channels, rate)))) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => {
                tracing::warn!("{}: the decoder failed; the track ends here", self.name);
                self.ended = true;
                false
            }
        }
    }

    /// Decodes packets until one has audio, copies it into `buf` (with the gain) and returns
    /// its spec. `expect` (channels, rate): a stream that changes either midway ends there, as
    /// the conversion after us was set up for the first.
    fn decode_next(&mut self, expect: Option<(usize, u32)>) -> Option<SignalSpec> {
        if self.ended {
            return None;
        }
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return self.end(None);
                }
                Err(Error::ResetRequired) => {
                    return self.end(Some("a chained stream (only the first is played)"));
                }
                Err(e) => return self.end(Some(&e.to_string())),
            };
            if packet.track_id() != self.track {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                Err(Error::DecodeError(e)) => {
                    // A damaged packet costs its few milliseconds, not the track.
                    self.bad_packets += 1;
                    if self.bad_packets == 1 {
                        tracing::warn!("{}: skipping an undecodable packet ({e})", self.name);
                    }
                    if self.bad_packets >= MAX_BAD_PACKETS {
                        return self.end(Some("too many undecodable packets in a row"));
                    }
                    continue;
                }
                Err(e) => return self.end(Some(&e.to_string())),
            };
            self.bad_packets = 0;
            if decoded.frames() == 0 {
                continue;
            }
            let spec = *decoded.spec();
            if let Some((channels, rate)) = expect {
                if spec.channels.count() != channels || spec.rate != rate {
                    return self.end(Some("the format changes midway"));
                }
            }
            let needed = decoded.capacity() * spec.channels.count();
            if self.buf.capacity() < needed {
                self.buf = SampleBuffer::new(decoded.capacity() as u64, spec);
            }
            self.buf.copy_interleaved_ref(decoded);
            if self.gain != 1.0 {
                let gain = self.gain;
                for s in self.buf.samples_mut() {
                    *s *= gain;
                }
            }
            self.pos = 0;
            self.buf_ts = packet.ts();
            self.buf_end = self.buf.len();
            if let Some(end) = self.end_ts {
                let frames = end.saturating_sub(self.buf_ts) as usize;
                if frames == 0 {
                    return self.end(None);
                }
                self.buf_end = self.buf_end.min(frames * spec.channels.count());
            }
            return Some(spec);
        }
    }

    fn end(&mut self, why: Option<&str>) -> Option<SignalSpec> {
        if let Some(why) = why {
            tracing::warn!("{}: the track ends early: {why}", self.name);
        }
        self.ended = true;
        self.pos = 0;
        self.buf.clear();
        self.buf_end = 0;
        None
    }

    fn seek(&mut self, pos: Duration) -> Result<(), Error> {
        let mut target = self.start_ts + self.time_base.calc_timestamp(Time::from(pos));
        if let Some(total) = self.total {
            let end = self.start_ts + self.time_base.calc_timestamp(Time::from(total));
            target = target.min(end);
        }
        // A decoder may swallow packets after a reset (Vorbis needs two for its overlap, Opus
        // some to converge): start early enough that the first audio it gives back is at or
        // before the target, further back each time it is not.
        let mut from = target.saturating_sub(self.preroll);
        for _ in 0..4 {
            let landed = self
                .format
                .seek(
                    SeekMode::Accurate,
                    SeekTo::TimeStamp {
                        ts: from,
                        track_id: self.track,
                    },
                )?
                .actual_ts;
            self.decoder.reset();
            self.ended = false;
            self.bad_packets = 0;
            self.buf.clear();
            self.buf_end = 0;
            self.pos = 0;
            if !self.refill() || self.buf_ts <= target || from == 0 {
                break;
            }
            // As much again as was swallowed, before where it landed.
            from = landed.saturating_sub(self.buf_ts - landed.min(self.buf_ts));
        }
        // Then decode up to the target. Packet timestamps, not a count of samples, say where
        // that is.
        let channels = usize::from(self.channels.get());
        while !self.ended {
            let frames = (self.buf_end / channels) as u64;
            if self.buf_ts + frames > target {
                let skip = target.saturating_sub(self.buf_ts) as usize * channels;
                self.pos = skip.min(self.buf_end);
                break;
            }
            self.refill();
        }
        Ok(())
    }
}

impl Iterator for Native {
    type Item = rodio::Sample;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf_end && !self.refill() {
            return None;
        }
        let s = self.buf.samples()[self.pos];
        self.pos += 1;
        Some(s)
    }
}

impl Source for Native {
    /// One span for the whole stream: rodio's converter would take a 0 as "ended", and a file
    /// that changes its format midway ends there (see `decode_next`).
    fn current_span_len(&self) -> Option<usize> {
        None
    }
    fn channels(&self) -> rodio::ChannelCount {
        self.channels
    }
    fn sample_rate(&self) -> rodio::SampleRate {
        self.rate
    }
    fn total_duration(&self) -> Option<Duration> {
        self.total
    }
    fn try_seek(&mut self, pos: Duration) -> Result<(), SeekError> {
        match guarded(|| self.seek(pos)) {
            Ok(r) => r.map_err(|e| SeekError::Other(Arc::new(e))),
            Err(_) => {
                self.ended = true;
                Err(SeekError::NotSupported {
                    underlying_source: "a decoder that failed on this file",
                })
            }
        }
    }
}
