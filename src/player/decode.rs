//! The source side: a file decoded with symphonia (and libopus for Opus), converted to the
//! output's channels and rate, ready to be pulled in chunks. A file already in the output's
//! format (the usual case: 44.1 kHz stereo) is copied a packet at a time. The others are
//! converted a block at a time (`resample.rs`): channels mapped as rodio did (mono to both
//! sides), the rate by a band-limited FFT resampler (rubato). Linear interpolation, rodio's
//! converter and ours before, dulled the treble of every 48 kHz file on a 44.1 kHz output
//! and folded back what was above the output's Nyquist. The resampler's delay is trimmed so
//! that the stream has exactly the frames the track lasts at the output's rate, and a seek
//! gives the frames a straight read has there.
//! The loudness pass reads the same decoding before conversion (`open_native`), so what is
//! measured is what is played.

mod aiff;
mod mp4_tables;
mod native;
mod opus_head;
mod resample;

use std::num::NonZero;
use std::path::Path;
use std::time::Duration;

use rodio::source::SeekError;
use rodio::Source;

use super::PlayItem;

pub use native::Native;
use resample::Resampled;

/// A track's samples in the output's format.
pub enum Converted {
    /// Already in the output's format: whole packets are copied.
    Direct(Native),
    /// Another rate or channel count: converted a block at a time.
    Resampled(Box<Resampled>),
}

impl Converted {
    fn new(
        native: Native,
        channels: NonZero<u16>,
        rate: NonZero<u32>,
    ) -> Result<Converted, String> {
        Ok(
            if native.channels() == channels && native.sample_rate() == rate {
                Converted::Direct(native)
            } else {
                Converted::Resampled(Box::new(Resampled::new(native, channels, rate)?))
            },
        )
    }

    /// Appends `samples` samples to `out`, fewer only where the stream ends.
    pub fn read(&mut self, out: &mut Vec<f32>, samples: usize) {
        match self {
            Converted::Direct(n) => n.read(out, samples),
            Converted::Resampled(r) => r.read(out, samples),
        }
    }

    pub fn try_seek(&mut self, pos: Duration) -> Result<(), SeekError> {
        match self {
            Converted::Direct(n) => n.try_seek(pos),
            Converted::Resampled(r) => r.try_seek(pos),
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
    let decoder = open_native(&item.path)?;
    let duration_ms = decoder.total_duration().map(|d| d.as_millis() as u64);
    let mut source = Converted::new(decoder, channels, rate)?;
    let mut start_ms = item.start_ms;
    if start_ms > 0 {
        // The converter's own seek: it restarts the resampler at the new position.
        if let Err(e) = source.try_seek(Duration::from_millis(start_ms)) {
            // Better the whole song than none of it.
            tracing::warn!(
                "{}: cannot seek to {start_ms} ms ({e}); playing from the start",
                item.path.display()
            );
            source = Converted::new(open_native(&item.path)?, channels, rate)?;
            start_ms = 0;
        }
    }
    Ok(Opened {
        source,
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

    /// A stereo 48 kHz sweep from 200 Hz rising by `rise` Hz a second, `secs` long, written
    /// to `path` with `codec`'s ffmpeg arguments: a position or timing error shows as a
    /// different waveform.
    fn sweep(path: &Path, rise: u32, secs: u32, codec: &[&str]) -> PathBuf {
        let mut cmd = media::ffmpeg();
        cmd.args(["-f", "lavfi", "-i"])
            .arg(format!(
                "aevalsrc=0.5*sin(2*PI*(200*t+{rise}*t*t)):s=48000:d={secs}"
            ))
            .args(["-ac", "2"])
            .args(codec);
        media::write(&mut cmd, path)
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
        let mut direct = Converted::new(open_native(&path).unwrap(), two, rate).unwrap();
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
            rodio::source::UniformSourceIterator::new(open_native(&path).unwrap(), two, rate)
                .collect();
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
        )
        .unwrap();
        assert!(matches!(other, Converted::Resampled(_)));
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
            let path = sweep(&dir.path().join(name), 40, 6, codec);
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

    // Conversion to another rate, measured against ffmpeg: its soxr resampler for where the
    // frames fall, its astats meter for levels.

    const CD: u32 = 44_100;

    fn nz(ch: u16, rate: u32) -> (NonZero<u16>, NonZero<u32>) {
        (NonZero::new(ch).unwrap(), NonZero::new(rate).unwrap())
    }

    fn convert(path: &Path, ch: u16, rate: u32) -> Converted {
        let (ch, rate) = nz(ch, rate);
        Converted::new(open_native(path).unwrap(), ch, rate).unwrap()
    }

    /// The rest of `c`, read as the engine reads: 1024 frames at a time.
    fn read_to_end(c: &mut Converted, ch: usize) -> Vec<f32> {
        let mut v = Vec::new();
        loop {
            let before = v.len();
            c.read(&mut v, 1024 * ch);
            if v.len() < before + 1024 * ch {
                return v;
            }
        }
    }

    /// A lossless 48 kHz file (32-bit float WAV, so nothing but the converter adds noise)
    /// whose channel n is a sine at `freqs[n]`, 0.5 peak, `frames` long.
    fn tones(dir: &Path, name: &str, freqs: &[u32], rate: u32, frames: u64) -> PathBuf {
        let exprs: Vec<String> = freqs
            .iter()
            .map(|f| format!("0.5*sin(2*PI*{f}*t)"))
            .collect();
        let mut cmd = media::ffmpeg();
        cmd.args(["-f", "lavfi", "-i"])
            .arg(format!(
                "aevalsrc=exprs='{}':s={rate}:d={}",
                exprs.join("|"),
                frames / u64::from(rate) + 1
            ))
            .arg("-af")
            .arg(format!("atrim=end_sample={frames}"))
            .args(["-c:a", "pcm_f32le"]);
        media::write(&mut cmd, &dir.join(name))
    }

    fn write_wav(path: &Path, samples: &[f32], ch: u16, rate: u32) {
        let spec = hound::WavSpec {
            channels: ch,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    /// ffmpeg's RMS level of each channel of the stereo WAV `path`, in dB, without its first
    /// and last 0.1 s: a tone that starts or stops dead has a click there, in every band.
    fn rms_db(path: &Path) -> Vec<f64> {
        let wav = hound::WavReader::open(path).unwrap();
        let secs = f64::from(wav.duration()) / f64::from(wav.spec().sample_rate);
        (0..2)
            .map(|c| {
                let filters = format!("atrim=start=0.1:end={},pan=mono|c0=c{c},", secs - 0.1);
                // Digital silence reads "-inf", which is no number.
                media::astats_after(path, &filters)
                    .get("RMS level dB")
                    .copied()
                    .unwrap_or(f64::NEG_INFINITY)
            })
            .collect()
    }

    /// `path` converted to `ch` × `rate`, written to a WAV next to it, with ffmpeg's levels.
    fn converted_levels(path: &Path, ch: u16, rate: u32) -> Vec<f64> {
        let samples = read_to_end(&mut convert(path, ch, rate), usize::from(ch));
        let wav = path.with_extension("converted.wav");
        write_wav(&wav, &samples, ch, rate);
        rms_db(&wav)
    }

    #[test]
    fn a_converted_track_has_its_exact_length_at_the_outputs_rate() {
        let dir = tempfile::tempdir().unwrap();
        // (input rate, channels, frames, output rate): a whole number of seconds, odd lengths
        // (the last block partial, the count rounded), both ways, mono, shorter than the
        // resampler's reach, and channels only.
        let table: &[(u32, usize, u64, u32)] = &[
            (48_000, 2, 384_000, CD),
            (48_000, 2, 100_003, CD),
            (CD, 2, 100_003, 48_000),
            (48_000, 1, 1_000, CD),
            (48_000, 2, 100, CD),
            (22_050, 1, 55_001, 48_000),
            (CD, 1, 30_001, CD),
            (96_000, 2, 96_077, CD),
        ];
        for (i, &(rate, ch, frames, out_rate)) in table.iter().enumerate() {
            let freqs = [1000, 1500];
            let path = tones(dir.path(), &format!("{i}.wav"), &freqs[..ch], rate, frames);
            let (src, ..) = all_samples(&path);
            assert_eq!(
                src.len() as u64,
                frames * ch as u64,
                "the fixture's own length"
            );
            let got = read_to_end(&mut convert(&path, 2, out_rate), 2);
            let want = (frames as f64 * f64::from(out_rate) / f64::from(rate)).round();
            assert_eq!(
                got.len(),
                want as usize * 2,
                "{rate} Hz × {frames} → {out_rate} Hz"
            );
            if ch == 1 {
                assert!(
                    got.chunks_exact(2).all(|f| f[0] == f[1]),
                    "mono goes to both sides"
                );
            }
            if rate == out_rate {
                let copied: Vec<f32> = got.iter().step_by(2).copied().collect();
                assert!(copied == src, "channels only: the samples themselves");
            }
        }
    }

    #[test]
    fn converted_frames_fall_where_soxr_puts_them() {
        // The resampler's delay trimmed exactly: the converted sweep lines up with ffmpeg's
        // (a very high quality resampler, zero delay) at lag 0, better than a frame either way.
        let dir = tempfile::tempdir().unwrap();
        let path = sweep(
            &dir.path().join("sweep.wav"),
            1500,
            3,
            &["-c:a", "pcm_f32le"],
        );
        let ours = read_to_end(&mut convert(&path, 2, CD), 2);
        let mut cmd = media::ffmpeg();
        cmd.arg("-i")
            .arg(&path)
            .args(["-af", "aresample=44100:resampler=soxr:precision=28"])
            .args(["-c:a", "pcm_f32le"]);
        let theirs = media::write(&mut cmd, &dir.path().join("soxr.wav"));
        let theirs: Vec<f32> = hound::WavReader::open(theirs)
            .unwrap()
            .samples::<f32>()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ours.len(), theirs.len());
        // Left channel, away from the ends (where the two treat the abrupt edge differently).
        let at = |v: &[f32], i: usize| f64::from(v[2 * i]);
        let frames = ours.len() / 2;
        let error = |lag: i64| -> f64 {
            let (sum, energy) = (4410..frames - 4410).fold((0.0, 0.0), |(s, e), i| {
                let d = at(&ours, i) - at(&theirs, (i as i64 + lag) as usize);
                (s + d * d, e + at(&theirs, i).powi(2))
            });
            10.0 * (sum / energy).log10()
        };
        let (e0, before, after) = (error(0), error(-1), error(1));
        eprintln!("against soxr: {e0:.1} dB at lag 0, {before:.1} / {after:.1} dB a frame off");
        assert!(
            e0 < -60.0 && e0 < before - 20.0 && e0 < after - 20.0,
            "{e0} dB at lag 0, {before} / {after} dB a frame off"
        );
    }

    #[test]
    fn a_48k_file_keeps_its_treble_at_44k1() {
        // Left: the 1 kHz reference; right: the treble tone. Linear interpolation (the old
        // converter) put 16 kHz 2.7 dB under 1 kHz.
        let dir = tempfile::tempdir().unwrap();
        for treble in [16_000, 20_000] {
            let name = format!("{treble}.wav");
            let path = tones(dir.path(), &name, &[1000, treble], 48_000, 3 * 48_000);
            let source = rms_db(&path);
            let out = converted_levels(&path, 2, CD);
            let (low, high) = (out[0] - source[0], out[1] - source[1]);
            eprintln!("{treble} Hz: 1 kHz {low:+.3} dB, {treble} Hz {high:+.3} dB");
            assert!(low.abs() < 0.1, "1 kHz: {low:+.3} dB");
            assert!(
                (high - low).abs() < 0.5,
                "{treble} Hz is {:+.3} dB from 1 kHz",
                high - low
            );
        }
    }

    #[test]
    fn a_tone_above_the_outputs_nyquist_does_not_alias() {
        // 23 kHz is in a 48 kHz file but not in a 44.1 kHz one: unfiltered, it folds to
        // 21.1 kHz (linear interpolation left it about 4 dB down).
        let dir = tempfile::tempdir().unwrap();
        let path = tones(dir.path(), "23k.wav", &[23_000, 1000], 48_000, 3 * 48_000);
        let source = rms_db(&path);
        let out = converted_levels(&path, 2, CD);
        let rejected = (source[0] - out[0]).min(f64::MAX);
        eprintln!(
            "23 kHz: {rejected:.1} dB down; 1 kHz {:+.3} dB",
            out[1] - source[1]
        );
        assert!(rejected >= 40.0, "23 kHz only {rejected:.1} dB down");
        assert!(
            (out[1] - source[1]).abs() < 0.1,
            "the other channel is untouched"
        );
    }

    #[test]
    fn seeking_a_converted_track_lands_on_a_straight_reads_samples() {
        // The resampler restarts empty at a seek; the decoder seeks a block earlier, so that
        // its filter has the same history as on a straight read.
        let dir = tempfile::tempdir().unwrap();
        let path = sweep(&dir.path().join("s.flac"), 400, 6, &["-c:a", "flac"]);
        let all = read_to_end(&mut convert(&path, 2, CD), 2);
        // 4 s and 2.5 s: on the ratio's grid (160 input frames are 147 output frames), so
        // the seek's output frames are a straight read's. 10 ms: less history than a block.
        // 1234 ms is 0.4 of an output frame off the grid: the nearest frame must match best.
        for ms in [4000u64, 2500, 10, 1234] {
            let mut c = convert(&path, 2, CD);
            c.try_seek(Duration::from_millis(ms)).unwrap();
            let mut got = Vec::new();
            c.read(&mut got, 9600 * 2);
            assert_eq!(got.len(), 9600 * 2, "{ms} ms");
            let at = (ms * u64::from(CD) / 1000) as usize * 2;
            let worst = |offset: i64| -> f32 {
                let from = (at as i64 + offset * 2) as usize;
                got.iter()
                    .zip(&all[from..])
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            };
            let (d, m1, p1) = (worst(0), worst(-1), worst(1));
            eprintln!("{ms} ms: {d:e} off at the target, {m1:e} / {p1:e} a frame off");
            if ms * u64::from(CD) % (1000 * 147) == 0 || ms == 10 {
                assert!(d < 1e-4, "{ms} ms: {d} from a straight read");
            } else {
                assert!(d < m1 && d < p1, "{ms} ms: {d}, {m1} / {p1} a frame off");
            }
            // And the rest of the track is the straight read's rest.
            let rest = read_to_end(&mut c, 2);
            assert_eq!(
                at + got.len() + rest.len(),
                all.len(),
                "{ms} ms: the length"
            );
        }
    }

    #[test]
    fn a_gapless_join_of_converted_tracks_is_close_to_the_whole() {
        // Each track is resampled on its own, so a join cannot be what one stream would have
        // given: silence past each edge (what a resampler assumes) made it a step, 4% of the
        // signal here. Continuing each edge by reflection keeps it well under 1%.
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, trim: &str| {
            let mut cmd = media::ffmpeg();
            cmd.args(["-f", "lavfi", "-i"])
                .arg(
                    "aevalsrc=exprs='0.4*sin(2*PI*440*t+1)+0.2*sin(2*PI*3000*t+2)\
                     +0.05*(random(0)-0.5)':d=4:s=48000",
                )
                .args(["-ac", "2", "-af", trim, "-c:a", "pcm_f32le"]);
            media::write(&mut cmd, &dir.path().join(name))
        };
        let whole = make("whole.wav", "atrim=end_sample=192000");
        let whole = read_to_end(&mut convert(&whole, 2, CD), 2);
        let peak = whole.iter().fold(0f32, |m, s| m.max(s.abs()));
        // Splits on the ratio's grid (160 input frames are 147 output frames), where the
        // waveform is far from zero (0.36, 0.27, 0.15).
        for split in [96_000, 96_320, 96_800] {
            let a = make("a.wav", &format!("atrim=end_sample={split}"));
            let b = make(
                "b.wav",
                &format!("atrim=start_sample={split}:end_sample=192000,asetpts=N/SR/TB"),
            );
            let mut joined = read_to_end(&mut convert(&a, 2, CD), 2);
            let join = joined.len() / 2;
            assert_eq!(join as u64, split * 147 / 160);
            joined.extend(read_to_end(&mut convert(&b, 2, CD), 2));
            assert_eq!(joined.len(), whole.len());
            let (mut near, mut far) = (0f32, 0f32);
            for (i, (w, j)) in whole.iter().zip(&joined).enumerate() {
                // Half a block (640 input frames) either side is what the edges reach.
                let at = if (i / 2).abs_diff(join) <= 600 {
                    &mut near
                } else {
                    &mut far
                };
                *at = at.max((w - j).abs());
            }
            eprintln!("join at {split}: {near:e} at most near it, {far:e} elsewhere (peak {peak})");
            assert!(near < 0.005, "{split}: {near} off at the join");
            assert!(far < 1e-4, "{split}: {far} off away from the join");
        }
    }
}
