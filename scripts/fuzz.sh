#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, cargo-fuzz on the nightly toolchain) and runs each one for a
# bounded time from its committed seeds; fails on the first crash, hang or blow-up, naming the
# input that caused it (in fuzz/artifacts/TARGET/). Installs the nightly toolchain and
# cargo-fuzz when they are missing.
#   scripts/fuzz.sh [--quick] [SECONDS] [TARGET ...]   # SECONDS per target (default 15)
# --quick builds the targets unoptimised (half the build time, slower runs): the tests run
# `scripts/fuzz.sh --quick 10`; bench/README.md has the 10-minute runs (`scripts/fuzz.sh 600`).
# New inputs that reach new code are kept in fuzz/work/, never in the committed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=--release
if [ "${1:-}" = --quick ]; then profile=--dev; shift; fi
secs=${1:-15}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(live_frame host_body mpd_line config_file audio_file)

CARGO_FUZZ_VERSION=0.13.2
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "installing: cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo +nightly install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --quiet
fi

# No sanitizer: the code under test is safe Rust (and the decoders' crates); what the fuzzer
# looks for is a panic (overflow checks are on), a hang (-timeout) or memory without bound
# (-rss_limit_mb, -malloc_limit_mb), all of which it sees without one, and it runs faster.
build=(--sanitizer none --debug-assertions "$profile")
echo "== building the fuzz targets"
cargo +nightly fuzz build "${build[@]}"

for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  echo "== fuzzing $t for ${secs}s"
  # -close_fd_mask=3: the code's own log lines are not the fuzzer's output.
  if ! cargo +nightly fuzz run "${build[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=512 \
      -max_len=65536 -print_final_stats=1 -close_fd_mask=3 > "fuzz/work/$t.log" 2>&1; then
    tail -40 "fuzz/work/$t.log"
    echo "fuzz target $t failed: the input is in fuzz/artifacts/$t/ (make it a regression test)" >&2
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added" "fuzz/work/$t.log" \
    | sed "s/^/  $t: /"
done
