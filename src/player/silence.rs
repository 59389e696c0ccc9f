//! Digital silence at the ends of a track: what a `Join::Mix` seam trims, so the party does not
//! wait through a rip's lead-in or the seconds of nothing after the last note.

/// Below −60 dBFS on every channel a frame counts as silent.
pub const SILENT: f32 = 0.001;
/// A silent run shorter than this is part of the music (a sine's zero crossing, a pause
/// between two notes), not a gap to trim.
pub const MIN_RUN_S: f32 = 0.01;

/// Frames at the start of `samples` (interleaved, `channels` per frame) that are silent.
pub fn leading(samples: &[f32], channels: usize) -> usize {
    samples
        .chunks_exact(channels)
        .position(loud)
        .unwrap_or(samples.len() / channels)
}

/// Frames at the end of `samples` that are silent.
pub fn trailing(samples: &[f32], channels: usize) -> usize {
    let frames = samples.len() / channels;
    samples[..frames * channels]
        .chunks_exact(channels)
        .rev()
        .position(loud)
        .unwrap_or(frames)
}

fn loud(frame: &[f32]) -> bool {
    frame.iter().any(|s| s.abs() >= SILENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_silent_frames_at_each_end() {
        let table: [(&[f32], usize, usize, usize); 6] = [
            (&[0.0, 0.0, 0.5, 0.0, 0.0, 0.0], 2, 1, 1),
            (&[0.0, 0.0005, -0.002, 0.0, 0.0009, -0.0009], 2, 1, 1),
            (&[0.3, 0.3, 0.3, 0.3], 2, 0, 0),
            (&[0.0; 6], 2, 3, 3),
            (&[], 2, 0, 0),
            // −60 dBFS exactly is not silence; a mono track.
            (&[0.0, 0.001, 0.0, 0.0], 1, 1, 2),
        ];
        for (samples, ch, lead, trail) in table {
            assert_eq!(leading(samples, ch), lead, "{samples:?}");
            assert_eq!(trailing(samples, ch), trail, "{samples:?}");
        }
    }
}
