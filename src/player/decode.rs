//! The source side: a file opened with rodio's symphonia decoders, converted to the output's
//! channels and rate (rodio's `UniformSourceIterator`), ready to be pulled in chunks.

use std::fs::File;
use std::io::BufReader;
use std::num::NonZero;
use std::path::Path;
use std::time::Duration;

use rodio::source::UniformSourceIterator;
use rodio::{Decoder, Source};

use super::PlayItem;

/// A track's samples in the output's format.
pub type Converted = UniformSourceIterator<WholeSpan<Decoder<BufReader<File>>>>;

/// A track opened for an output.
pub struct Opened {
    pub source: Converted,
    /// Its length, when the container says.
    pub duration_ms: Option<u64>,
    /// Where it starts: `item.start_ms`, or 0 when it could not seek there.
    pub start_ms: u64,
}

/// A track's samples in its own format (rate, channels), as decoded.
pub type Native = WholeSpan<Decoder<BufReader<File>>>;

/// Opens a track in its own format: for the loudness pass, which measures what is decoded.
pub fn open_native(path: &Path) -> Result<Native, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut builder = Decoder::builder()
        .with_data(BufReader::new(file))
        .with_byte_len(len)
        .with_seekable(true)
        .with_gapless(true);
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        builder = builder.with_hint(ext);
    }
    let decoder = builder
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(WholeSpan(decoder))
}

/// Opens a track converted to `channels` and `rate`, positioned at `item.start_ms`.
pub fn open(item: &PlayItem, channels: NonZero<u16>, rate: NonZero<u32>) -> Result<Opened, String> {
    let decoder = open_native(&item.path)?;
    let duration_ms = decoder.total_duration().map(|d| d.as_millis() as u64);
    let mut source = UniformSourceIterator::new(decoder, channels, rate);
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
    Ok(Opened {
        source,
        duration_ms,
        start_ms,
    })
}

/// Reports one span for the whole stream. Some decoders (Ogg Vorbis) report a span length of 0
/// before their first packet, which rodio's converter takes as "ended"; a file does not change
/// its rate or channel count midway, so one span is the truth.
pub struct WholeSpan<S>(S);

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
