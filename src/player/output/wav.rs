//! The exact PCM (16-bit, 44.1 kHz, stereo) that would go to the device, paced in real time,
//! into a WAV file.

use std::fs::File;
use std::io::BufWriter;
use std::num::NonZero;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{to_i16, AudioOut, OutputError, Pacer, FILE_CHANNELS, FILE_RATE};
use crate::chain::chain;

pub struct WavOut {
    path: PathBuf,
    /// Taken only when dropped, to finalise the header.
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    pacer: Pacer,
    buf: Vec<i16>,
}

impl WavOut {
    pub fn create(path: &Path) -> Result<WavOut, OutputError> {
        let spec = hound::WavSpec {
            channels: FILE_CHANNELS.get(),
            sample_rate: FILE_RATE.get(),
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| OutputError::Create {
            path: path.to_owned(),
            cause: chain(&e),
        })?;
        Ok(WavOut {
            path: path.to_owned(),
            writer: Some(writer),
            pacer: Pacer::new(FILE_RATE),
            buf: Vec::new(),
        })
    }

    fn write_error(&self, e: &dyn std::error::Error) -> OutputError {
        OutputError::Write {
            path: self.path.clone(),
            cause: chain(e),
        }
    }
}

impl AudioOut for WavOut {
    fn channels(&self) -> NonZero<u16> {
        FILE_CHANNELS
    }
    fn rate(&self) -> NonZero<u32> {
        FILE_RATE
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError> {
        self.buf.clear();
        self.buf.extend(samples.iter().map(|s| to_i16(*s)));
        if let Some(w) = self.writer.as_mut() {
            let mut iw = w.get_i16_writer(self.buf.len() as u32);
            for s in &self.buf {
                iw.write_sample(*s);
            }
            if let Err(e) = iw.flush() {
                return Err(self.write_error(&e));
            }
        }
        self.pacer
            .advance(samples.len() / usize::from(FILE_CHANNELS.get()));
        Ok(())
    }
    fn discard(&mut self) {
        // Nothing is buffered beyond the lead: what was written was "heard".
    }
    fn track_end(&mut self) -> Result<(), OutputError> {
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.flush() {
                return Err(self.write_error(&e));
            }
        }
        Ok(())
    }
    fn idle(&mut self) {
        self.pacer.idle();
    }
    fn take_underruns(&mut self) -> u64 {
        self.pacer.take_underruns()
    }
    fn latency(&self) -> Duration {
        self.pacer.latency()
    }
    fn describe(&self) -> String {
        format!("wav file {}", self.path.display())
    }
}

impl Drop for WavOut {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::error!("finalising {}: {}", self.path.display(), chain(&e));
            }
        }
    }
}
