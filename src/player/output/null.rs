//! No sound: paced and discarded. Also stands in, in the same format, for an output that failed,
//! so the party's timeline goes on.

use std::num::NonZero;
use std::time::Duration;

use super::{AudioOut, OutputError, Pacer};

pub struct NullOut {
    pacer: Pacer,
    channels: NonZero<u16>,
}

impl NullOut {
    pub fn new(channels: NonZero<u16>, rate: NonZero<u32>) -> NullOut {
        NullOut {
            pacer: Pacer::new(rate),
            channels,
        }
    }
}

impl AudioOut for NullOut {
    fn channels(&self) -> NonZero<u16> {
        self.channels
    }
    fn rate(&self) -> NonZero<u32> {
        self.pacer.rate()
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), OutputError> {
        self.pacer
            .advance(samples.len() / usize::from(self.channels.get()));
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
        "null (paced, discarded)".into()
    }
}
