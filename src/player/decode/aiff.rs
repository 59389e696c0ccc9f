//! The one fact of an AIFF file symphonia gets wrong: how many sample frames it holds.
//! symphonia-format-riff 0.5 takes the `SSND` chunk's whole length as sound, but that length
//! also counts the chunk's 8-byte offset and block-size fields, so the last 8 bytes it plays
//! are whatever follows the chunk: in a tagged file, the "ID3 " chunk's header, two frames of
//! loud noise at the end of every song. The `COMM` chunk's `numSampleFrames` is the true count.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Chunks looked at before giving up: `COMM` comes first in every file we have seen.
const MAX_CHUNKS: usize = 64;

/// `numSampleFrames` of an AIFF or AIFF-C file's `COMM` chunk; `None` for anything else.
/// Reads at offsets, so the file's cursor is left where it was.
pub fn sample_frames(file: &File) -> Option<u64> {
    let mut head = [0u8; 12];
    file.read_exact_at(&mut head, 0).ok()?;
    if &head[..4] != b"FORM" || !matches!(&head[8..12], b"AIFF" | b"AIFC") {
        return None;
    }
    let mut at = 12u64;
    for _ in 0..MAX_CHUNKS {
        let mut chunk = [0u8; 8];
        file.read_exact_at(&mut chunk, at).ok()?;
        let size = u64::from(u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        if &chunk[..4] == b"COMM" {
            // numChannels (2 bytes), then numSampleFrames (4 bytes, big-endian).
            let mut frames = [0u8; 4];
            file.read_exact_at(&mut frames, at + 8 + 2).ok()?;
            return Some(u64::from(u32::from_be_bytes(frames)));
        }
        // Chunks are padded to an even length.
        at += 8 + size + (size & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rodio::Source;
    use std::io::Write;

    fn file(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let opened = File::open(f.path()).unwrap();
        (f, opened)
    }

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut c = id.to_vec();
        c.extend((body.len() as u32).to_be_bytes());
        c.extend(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    /// A tagged AIFF (the ID3 chunk after the sound, as taggers write it) plays exactly its
    /// frames, with no noise at the end, and says its true length.
    #[test]
    fn a_tagged_aiff_ends_where_its_sound_does() {
        let dir = tempfile::tempdir().unwrap();
        for (name, codec) in [("t.aiff", "pcm_s16be"), ("t24.aiff", "pcm_s24be")] {
            let mut cmd = super::super::media::ffmpeg();
            super::super::media::sine(&mut cmd, 440, 8.0, 48_000).args([
                "-c:a",
                codec,
                "-write_id3v2",
                "1",
                "-metadata",
                "title=Tagged",
            ]);
            let path = super::super::media::write(&mut cmd, &dir.path().join(name));
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.windows(4).any(|w| w == b"ID3 "),
                "{name}: ffmpeg wrote the tag chunk"
            );
            let mut n = super::super::Native::open(&path).unwrap();
            let mut samples = Vec::new();
            while let Some(c) = n.next_chunk() {
                samples.extend_from_slice(c);
            }
            assert_eq!(samples.len() / 2, 384_000, "{name}: frames");
            // ffmpeg's sine is at 1/8 of full scale; the tag's header read as sound is not.
            let loudest = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
            assert!(loudest < 0.13, "{name}: a sample of {loudest}");
            let d = super::super::open_native(&path).unwrap().total_duration();
            assert_eq!(d, Some(std::time::Duration::from_secs(8)), "{name}");
        }
    }

    #[test]
    fn it_finds_comm_after_other_chunks_and_refuses_other_files() {
        let mut comm = vec![0, 2];
        comm.extend(705_600u32.to_be_bytes());
        comm.extend([0, 16, 0x40, 0x0e, 0xac, 0x44, 0, 0, 0, 0, 0, 0]);
        let mut body = b"AIFF".to_vec();
        body.extend(chunk(b"NAME", b"odd"));
        body.extend(chunk(b"COMM", &comm));
        let mut bytes = b"FORM".to_vec();
        bytes.extend((body.len() as u32).to_be_bytes());
        bytes.extend(body);
        let (_keep, f) = file(&bytes);
        assert_eq!(sample_frames(&f), Some(705_600));
        let (_keep, wav) = file(b"RIFF\0\0\0\0WAVEfmt ");
        assert_eq!(sample_frames(&wav), None);
        let (_keep, short) = file(b"FORM");
        assert_eq!(sample_frames(&short), None);
    }
}
