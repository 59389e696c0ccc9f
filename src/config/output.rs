//! Where the audio goes: the value of `--output`.

use std::path::PathBuf;

/// Where the audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// The system's default ALSA device; falls back to `Null` while it is missing.
    Default,
    /// A named ALSA device (as listed by `jukebox devices`).
    Alsa(String),
    /// The exact PCM the device would get, paced in real time, into a WAV file.
    Wav(PathBuf),
    /// Paced like a device, discarded.
    Null,
    /// 48000 Hz / 16-bit / stereo PCM into snapserver's pipe source at `path`; heard after
    /// snapserver's own buffer of `buffer_ms` (the `snapcast_buffer_ms` key).
    Snapcast { path: PathBuf, buffer_ms: u32 },
}

/// snapserver's default `buffer`, which `snapcast_buffer_ms` must match.
pub const DEFAULT_SNAPCAST_BUFFER_MS: u32 = 1000;

impl OutputSpec {
    /// The spec with snapserver's buffer as configured (only a snapcast output has one).
    pub fn with_snapcast_buffer(self, ms: u32) -> OutputSpec {
        match self {
            OutputSpec::Snapcast { path, .. } => OutputSpec::Snapcast {
                path,
                buffer_ms: ms,
            },
            other => other,
        }
    }
}

impl std::fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputSpec::Default => write!(f, "default"),
            OutputSpec::Alsa(n) => write!(f, "alsa:{n}"),
            OutputSpec::Wav(p) => write!(f, "wav:{}", p.display()),
            OutputSpec::Null => write!(f, "null"),
            OutputSpec::Snapcast { path, .. } => write!(f, "snapcast:{}", path.display()),
        }
    }
}

impl std::str::FromStr for OutputSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(OutputSpec::Default),
            "null" => Ok(OutputSpec::Null),
            _ => {
                if let Some(name) = s.strip_prefix("alsa:") {
                    if name.is_empty() {
                        return Err(
                            "alsa: needs a device name, e.g. alsa:hw:CARD=Headphones".into()
                        );
                    }
                    Ok(OutputSpec::Alsa(name.to_string()))
                } else if let Some(path) = s.strip_prefix("wav:") {
                    if path.is_empty() {
                        return Err("wav: needs a file path, e.g. wav:/tmp/out.wav".into());
                    }
                    Ok(OutputSpec::Wav(PathBuf::from(path)))
                } else if let Some(path) = s.strip_prefix("snapcast:") {
                    if path.is_empty() {
                        return Err("snapcast: needs the path of snapserver's pipe, e.g. \
                                    snapcast:/run/snapserver/jukebox"
                            .into());
                    }
                    Ok(OutputSpec::Snapcast {
                        path: PathBuf::from(path),
                        buffer_ms: DEFAULT_SNAPCAST_BUFFER_MS,
                    })
                } else {
                    Err(format!(
                        "unknown output {s:?}; allowed: default, alsa:NAME, wav:PATH, \
                         snapcast:PATH, null"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        let table = [
            ("default", Ok(OutputSpec::Default)),
            ("null", Ok(OutputSpec::Null)),
            ("alsa:hw:0,0", Ok(OutputSpec::Alsa("hw:0,0".into()))),
            ("wav:/tmp/x.wav", Ok(OutputSpec::Wav("/tmp/x.wav".into()))),
            (
                "snapcast:/run/snapserver/jukebox",
                Ok(OutputSpec::Snapcast {
                    path: "/run/snapserver/jukebox".into(),
                    buffer_ms: DEFAULT_SNAPCAST_BUFFER_MS,
                }),
            ),
            ("snapcast:", Err(())),
            ("alsa:", Err(())),
            ("wav:", Err(())),
            ("speaker", Err(())),
        ];
        for (input, want) in table {
            let got = input.parse::<OutputSpec>().map_err(|_| ());
            assert_eq!(got, want, "{input}");
            if let Ok(spec) = got {
                assert_eq!(spec.to_string(), input, "shown as given");
            }
        }
    }
}
