//! The source side: a file decoded with symphonia (and libopus for Opus), converted to the
//! output's channels and rate, ready to be pulled in chunks. A file already in the output's
//! format (the usual case: 44.1 kHz stereo) is copied a packet at a time; only the others go
//! through rodio's converter (`UniformSourceIterator`), which works a sample at a time.
//! The loudness pass reads the same decoding before conversion (`open_native`), so what is
//! measured is what is played.

mod aiff;
mod native;
mod opus_head;

use std::num::NonZero;
use std::path::Path;
use std::time::Duration;

use rodio::source::{SeekError, UniformSourceIterator};
use rodio::Source;

use super::PlayItem;

pub use native::Native;

/// A track's samples in the output's format.
pub enum Converted {
    /// Already in the output's format: whole packets are copied.
    Direct(Native),
    /// Another rate or channel count: converted sample by sample.
    Uniform(UniformSourceIterator<Native>),
}

impl Converted {
    fn new(native: Native, channels: NonZero<u16>, rate: NonZero<u32>) -> Converted {
        if native.channels() == channels && native.sample_rate() == rate {
            Converted::Direct(native)
        } else {
            Converted::Uniform(UniformSourceIterator::new(native, channels, rate))
        }
    }

    /// Appends `samples` samples to `out`, fewer only where the stream ends.
    pub fn read(&mut self, out: &mut Vec<f32>, samples: usize) {
        match self {
            Converted::Direct(n) => n.read(out, samples),
            // The dispatch is per call, not per sample.
            Converted::Uniform(u) => out.extend(u.by_ref().take(samples)),
        }
    }

    pub fn try_seek(&mut self, pos: Duration) -> Result<(), SeekError> {
        match self {
            Converted::Direct(n) => n.try_seek(pos),
            Converted::Uniform(u) => u.try_seek(pos),
        }
    }
}

/// A track opened for an output.
pub struct Opened {
    pub source: Converted,
    /// Its length, when the container says.
    pub duration_ms: Option<u64>,
    /// Where it starts: `item.start_ms`, or 0 when it could not seek there.
    pub start_ms: u64,
}

/// Opens a track in its own format: for the loudness pass, which measures what is decoded.
pub fn open_native(path: &Path) -> Result<Native, String> {
    Native::open(path)
}

/// Opens a track converted to `channels` and `rate`, positioned at `item.start_ms`.
pub fn open(item: &PlayItem, channels: NonZero<u16>, rate: NonZero<u32>) -> Result<Opened, String> {
    let mut decoder = open_native(&item.path)?;
    let duration_ms = decoder.total_duration().map(|d| d.as_millis() as u64);
    let mut start_ms = item.start_ms;
    if start_ms > 0 {
        // Seek before the converter exists, so that it starts fresh at the new position.
        if let Err(e) = decoder.try_seek(Duration::from_millis(start_ms)) {
            // Better the whole song than none of it.
            tracing::warn!(
                "{}: cannot seek to {start_ms} ms ({e}); playing from the start",
                item.path.display()
            );
            decoder = open_native(&item.path)?;
            start_ms = 0;
        }
    }
    Ok(Opened {
        source: Converted::new(decoder, channels, rate),
        duration_ms,
        start_ms,
    })
}

// The tests make their audio as the integration tests and benches do, with the same file.
#[cfg(test)]
#[path = "../../tests/common/media.rs"]
mod media;

#[cfg(test)]
mod tests {
    //! Decoding checked against ffmpeg's own files: exact lengths (the pre-skip and end trim of
    //! Opus, the gapless trims of the others) and seeking that lands where a straight decode
    //! has the same samples.

    use super::*;
    use std::path::PathBuf;

    /// A 48 kHz stereo tone (`secs` long) encoded by ffmpeg with `codec` into `name`.
    fn encode(dir: &Path, name: &str, codec: &[&str], secs: f64, freq: u32) -> PathBuf {
        let mut cmd = media::ffmpeg();
        media::sine(&mut cmd, freq, secs, 48_000).args(codec);
        media::write(&mut cmd, &dir.join(name))
    }

    fn all_samples(path: &Path) -> (Vec<f32>, u16, u32) {
        let mut n = open_native(path).unwrap();
        let (ch, rate) = (n.channels().get(), n.sample_rate().get());
        let mut v = Vec::new();
        while let Some(c) = n.next_chunk() {
            v.extend_from_slice(c);
        }
        (v, ch, rate)
    }

    #[test]
    fn every_format_decodes_to_its_exact_length() {
        let dir = tempfile::tempdir().unwrap();
        let table: &[(&str, &[&str], u32)] = &[
            ("a.opus", &["-c:a", "libopus", "-b:a", "96k"], 48_000),
            ("opus-in.ogg", &["-c:a", "libopus", "-f", "ogg"], 48_000),
            ("a.flac", &["-c:a", "flac"], 48_000),
            ("a.ogg", &["-c:a", "libvorbis"], 48_000),
            ("alac.m4a", &["-c:a", "alac"], 48_000),
            ("a.aiff", &["-c:a", "pcm_s16be"], 48_000),
            ("a.aifc", &["-c:a", "pcm_s24be", "-f", "aiff"], 48_000),
            ("a.wav", &["-c:a", "pcm_s16le"], 48_000),
        ];
        for (name, codec, rate) in table {
            let path = encode(dir.path(), name, codec, 8.0, 440);
            let (samples, ch, r) = all_samples(&path);
            assert_eq!((ch, r), (2, *rate), "{name}");
            assert_eq!(samples.len() / 2, 384_000, "{name}: frames");
            // The container's word for it (AIFF's counts a little padding): close enough to
            // show progress, not used to find the end.
            let d = open_native(&path).unwrap().total_duration().unwrap();
            assert!(
                d.abs_diff(Duration::from_secs(8)) < Duration::from_millis(1),
                "{name}: {d:?}"
            );
        }
    }

    #[test]
    fn a_file_in_the_outputs_format_is_copied_exactly_as_the_converter_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = encode(dir.path(), "d.flac", &["-c:a", "flac"], 3.0, 440);
        let (two, rate) = (NonZero::new(2).unwrap(), NonZero::new(48_000).unwrap());
        let mut direct = Converted::new(open_native(&path).unwrap(), two, rate);
        assert!(matches!(direct, Converted::Direct(_)));
        // Reads of odd sizes, across packet boundaries, until the end.
        let mut got = Vec::new();
        for n in [1, 999, 4096, 7].into_iter().cycle() {
            let before = got.len();
            direct.read(&mut got, n);
            if got.len() < before + n {
                break;
            }
        }
        let reference: Vec<f32> =
            UniformSourceIterator::new(open_native(&path).unwrap(), two, rate).collect();
        assert_eq!(got.len(), 3 * 48_000 * 2);
        assert!(
            got == reference,
            "the direct copy differs from the converter"
        );
        // Another rate goes through the converter.
        let other = Converted::new(
            open_native(&path).unwrap(),
            two,
            NonZero::new(44_100).unwrap(),
        );
        assert!(matches!(other, Converted::Uniform(_)));
    }

    #[test]
    fn the_opus_header_gain_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let plain = encode(dir.path(), "0.opus", &["-c:a", "libopus"], 2.0, 440);
        // ffmpeg's Ogg muxer writes the output gain from the codec's side data; the simplest
        // way to get a +6 dB header is to patch the copy's OpusHead (bytes 16..18, Q7.8).
        let bytes = std::fs::read(&plain).unwrap();
        let at = bytes.windows(8).position(|w| w == b"OpusHead").unwrap();
        let loud = dir.path().join("6.opus");
        let mut patched = bytes.clone();
        patched[at + 16..at + 18].copy_from_slice(&(6i16 * 256).to_le_bytes());
        // The Ogg page checksum covers the header: recompute it so the demuxer accepts it.
        media::fix_ogg_crc(&mut patched, at);
        std::fs::write(&loud, patched).unwrap();
        let (a, ..) = all_samples(&plain);
        let (b, ..) = all_samples(&loud);
        assert_eq!(a.len(), b.len());
        let peak = |v: &[f32]| v.iter().fold(0f32, |m, s| m.max(s.abs()));
        let db = 20.0 * (peak(&b) / peak(&a)).log10();
        assert!((db - 6.0).abs() < 0.05, "{db} dB");
    }

    #[test]
    fn seeking_lands_on_the_same_samples_as_a_straight_decode() {
        let dir = tempfile::tempdir().unwrap();
        // (file, encoder, lossless): a lossless seek gives the very same samples; a lossy
        // decoder restarts from a reset state (Opus after its 80 ms pre-roll), so there the
        // waveform must line up best at the target, not one frame off either way.
        let table: &[(&str, &[&str], bool)] = &[
            ("s.opus", &["-c:a", "libopus"], false),
            ("s.mp3", &["-c:a", "libmp3lame"], false),
            ("s.ogg", &["-c:a", "libvorbis"], false),
            ("s.flac", &["-c:a", "flac"], true),
            ("s.m4a", &["-c:a", "alac"], true),
            ("s.aiff", &["-c:a", "pcm_s16be"], true),
        ];
        for (name, codec, lossless) in table {
            // A sweep, so that a position error shows as a different waveform.
            let mut cmd = media::ffmpeg();
            cmd.args(["-f", "lavfi", "-i"])
                .arg("aevalsrc=0.5*sin(2*PI*(200*t+40*t*t)):s=48000:d=6")
                .args(["-ac", "2"])
                .args(*codec);
            let path = media::write(&mut cmd, &dir.path().join(name));
            let (all, ch, rate) = all_samples(&path);
            let ch = usize::from(ch);
            let mut n = open_native(&path).unwrap();
            n.try_seek(Duration::from_millis(4000)).unwrap();
            let got: Vec<f32> = n.by_ref().take(9600 * ch).collect();
            assert_eq!(got.len(), 9600 * ch, "{name}");
            let at = 4 * rate as usize * ch;
            let distance = |offset: i64| -> f32 {
                let from = (at as i64 + offset * ch as i64) as usize;
                got.iter()
                    .zip(&all[from..])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum()
            };
            if *lossless {
                assert_eq!(distance(0), 0.0, "{name}");
            } else {
                let (d, m1, p1) = (distance(0), distance(-1), distance(1));
                assert!(
                    d < m1 && d < p1,
                    "{name}: {d} at the target, {m1} / {p1} a frame off"
                );
            }
        }
    }

    #[test]
    fn what_cannot_be_decoded_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.mp3");
        std::fs::write(&junk, vec![0x5au8; 10_000]).unwrap();
        let wma = encode(dir.path(), "a.wma", &["-c:a", "wmav2"], 1.0, 440);
        let wv = encode(dir.path(), "a.wv", &["-c:a", "wavpack"], 1.0, 440);
        for p in [&junk, &wma, &wv, &dir.path().join("missing.flac")] {
            let e = open_native(p).err().expect("an error");
            assert!(e.starts_with(&p.display().to_string()), "{e}");
        }
        // A truncated file plays what it has.
        let flac = encode(dir.path(), "t.flac", &["-c:a", "flac"], 4.0, 440);
        let bytes = std::fs::read(&flac).unwrap();
        std::fs::write(&flac, &bytes[..bytes.len() / 2]).unwrap();
        let (v, ..) = all_samples(&flac);
        assert!(
            v.len() > 48_000 * 2 && v.len() < 48_000 * 2 * 3,
            "{}",
            v.len()
        );
    }
}
