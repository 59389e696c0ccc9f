//! The Ogg Opus identification header (RFC 7845 §5.1), as far as playback needs it: the
//! pre-skip and the output gain. symphonia's Ogg demuxer hands the whole header over as the
//! track's `extra_data`; the libopus adapter trims the pre-skip but ignores the gain, which the
//! RFC says a player must apply.

/// What playback takes from an `OpusHead` packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpusHead {
    /// Samples at 48 kHz the decoder outputs before the real start of the stream.
    pub pre_skip: u16,
    /// The output gain in dB (a Q7.8 fixed-point number in the header).
    pub gain_db: f32,
}

impl OpusHead {
    /// Reads the header; `None` when `extra` is not an `OpusHead` packet (too short, wrong
    /// magic or an unknown major version).
    pub fn parse(extra: &[u8]) -> Option<OpusHead> {
        // "OpusHead", version, channel count, pre-skip (LE u16), input rate (LE u32),
        // output gain (LE i16, Q7.8 dB), mapping family: at least 19 bytes.
        if extra.len() < 19 || &extra[..8] != b"OpusHead" {
            return None;
        }
        // Versions 0..=15 share this layout (the upper nibble is the incompatible part).
        if extra[8] >> 4 != 0 {
            return None;
        }
        let pre_skip = u16::from_le_bytes([extra[10], extra[11]]);
        let q78 = i16::from_le_bytes([extra[16], extra[17]]);
        Some(OpusHead {
            pre_skip,
            gain_db: f32::from(q78) / 256.0,
        })
    }

    /// The output gain as a factor on the samples.
    pub fn gain(&self) -> f32 {
        10f32.powf(self.gain_db / 20.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pre_skip: u16, q78: i16) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.push(1); // version
        h.push(2); // channels
        h.extend(pre_skip.to_le_bytes());
        h.extend(48_000u32.to_le_bytes());
        h.extend(q78.to_le_bytes());
        h.push(0); // mapping family
        h
    }

    #[test]
    fn reads_pre_skip_and_gain() {
        let table = [
            (312, 0, 0.0),
            (312, 6 * 256, 6.0),
            (3840, -1536, -6.0),
            (0, 128, 0.5),
            (312, i16::MIN, -128.0),
        ];
        for (pre_skip, q78, db) in table {
            let h = OpusHead::parse(&head(pre_skip, q78)).unwrap();
            assert_eq!(h.pre_skip, pre_skip);
            assert!((h.gain_db - db).abs() < 1e-6, "{q78}: {}", h.gain_db);
        }
        let six = OpusHead::parse(&head(312, 6 * 256)).unwrap();
        assert!((six.gain() - 1.995_262).abs() < 1e-5);
    }

    #[test]
    fn refuses_what_is_not_an_opus_head() {
        assert_eq!(OpusHead::parse(b""), None);
        assert_eq!(OpusHead::parse(&head(312, 0)[..18]), None);
        let mut wrong = head(312, 0);
        wrong[..8].copy_from_slice(b"OpusTags");
        assert_eq!(OpusHead::parse(&wrong), None);
        let mut future = head(312, 0);
        future[8] = 0x10;
        assert_eq!(OpusHead::parse(&future), None);
    }
}
