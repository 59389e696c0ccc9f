#!/usr/bin/env bash
# Makes the audio seeds of the audio_file target: a tenth of a second of a tone in each format
# the jukebox plays, tagged, small enough to mutate quickly. The first byte of each seed is the
# target's pick of the file name's extension (fuzz_targets/audio_file.rs: 0 flac, 1 ogg,
# 2 opus, 3 mp3, 4 wav, 5 m4a, 6 aiff). Needs ffmpeg.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/audio_file
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
make() { # index extension ffmpeg-codec-args...
  local i=$1 ext=$2; shift 2
  ffmpeg -loglevel error -y -f lavfi -i "sine=frequency=440:duration=0.1:sample_rate=8000" -ac 1 \
    -metadata title="Seed $ext" -metadata artist="Fuzz" -metadata album="Seeds" "$@" "$tmp/s.$ext"
  { printf "\\x$(printf %02x "$i")"; cat "$tmp/s.$ext"; } > "$out/seed-$ext.bin"
}
make 0 flac -c:a flac
make 1 ogg -c:a libvorbis -ar 8000
make 2 opus -c:a libopus -ar 48000 -b:a 16k
make 3 mp3 -c:a libmp3lame -ar 8000 -b:a 16k
make 4 wav -c:a pcm_s16le
make 5 m4a -c:a aac -b:a 16k
make 6 aiff -c:a pcm_s16be
ls -l "$out"
