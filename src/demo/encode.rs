//! The encoders: WAV (`hound`), FLAC (`flacenc`) and Ogg Vorbis (`vorbis_rs`), so every decoder
//! path of the player gets exercised.

use std::io::Cursor;
use std::num::{NonZeroU32, NonZeroU8};

use super::{CHANNELS, SAMPLE_RATE};

pub(super) fn encode_wav(left: &[f32], right: &[f32]) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: CHANNELS,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Vec::new();
    let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec)?;
    for (&l, &r) in left.iter().zip(right) {
        writer.write_sample(to_i16(l))?;
        writer.write_sample(to_i16(r))?;
    }
    writer.finalize()?;
    Ok(bytes)
}

pub(super) fn encode_flac(
    left: &[f32],
    right: &[f32],
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;

    let interleaved: Vec<i32> = left
        .iter()
        .zip(right)
        .flat_map(|(&l, &r)| [i32::from(to_i16(l)), i32::from(to_i16(r))])
        .collect();
    // Fixed predictors only, on the calling thread: the default LPC search is
    // several times slower and saves little on these simple tones, and the
    // multithreaded mode logs statistics at INFO level.
    let mut config = flacenc::config::Encoder::default();
    config.multithread = false;
    config.subframe_coding.use_lpc = false;
    let config = config.into_verified().map_err(|(_, e)| e)?;
    let source = flacenc::source::MemSource::from_samples(
        &interleaved,
        usize::from(CHANNELS),
        16,
        SAMPLE_RATE as usize,
    );
    // flacenc's EncodeError holds an `Rc`, so it cannot cross threads: keep its message.
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| e.to_string())?;
    // flacenc records the short last block as the minimum block size, but the
    // FLAC spec excludes the last block from that field, and symphonia (used by
    // rodio) refuses such a stream. Every block but the last is `block_size`.
    stream
        .stream_info_mut()
        .set_block_sizes(config.block_size, config.block_size)?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| format!("cannot serialize FLAC stream: {e}"))?;
    Ok(sink.into_inner())
}

pub(super) fn encode_vorbis(
    left: &[f32],
    right: &[f32],
    serial: u32,
) -> Result<Vec<u8>, vorbis_rs::VorbisError> {
    const BLOCK: usize = 4096;
    let mut bytes = Vec::new();
    {
        // A fixed stream serial keeps the output deterministic.
        let mut encoder = vorbis_rs::VorbisEncoderBuilder::new_with_serial(
            NonZeroU32::new(SAMPLE_RATE).expect("sample rate is non-zero"),
            NonZeroU8::new(CHANNELS as u8).expect("channel count is non-zero"),
            &mut bytes,
            0x4A75_6B00 + serial as i32,
        )
        .build()?;
        for (l, r) in left.chunks(BLOCK).zip(right.chunks(BLOCK)) {
            encoder.encode_audio_block([l, r])?;
        }
        encoder.finish()?;
    }
    Ok(bytes)
}

/// Converts a float sample to 16-bit PCM.
fn to_i16(s: f32) -> i16 {
    (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}
