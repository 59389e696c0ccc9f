#!/usr/bin/env bash
# Sets up what the tests need and runs every test, plus the format and lint checks.
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it began, so a slow run shows where the time went (CI has a budget).
step() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }

./scripts/deps.sh test

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
step "cargo test (scripts/cargo-tests.sh: the test binaries side by side)"
./scripts/cargo-tests.sh
step "fuzz targets, 10 s each from their seeds (cargo-fuzz, nightly), beside the release build"
# The release build (for the browser tests, the appliance and the Pi's budget) ends in a fat
# LTO link on one core; the fuzz build (its own toolchain and target dir) and the fuzz runs
# (one core each) take the other. Side by side: 5 min 36 s from nothing, against 6 min 13 s.
# Not beside the tests: even at SCHED_IDLE it slowed them by a minute (it competes with the
# loudness pass of every jukebox they start, which is SCHED_IDLE too).
mkdir -p target
cargo build --release --locked >target/release-build.log 2>&1 &
release=$!
trap 'kill $release 2>/dev/null || true' EXIT
fuzz_rc=0
./scripts/fuzz.sh --quick 10 || fuzz_rc=$?
release_rc=0
wait $release || release_rc=$?
trap - EXIT
step "the release build, beside the fuzz step: its output"
cat target/release-build.log
[ "$release_rc" = 0 ] || { echo "the release build failed" >&2; exit 1; }
[ "$fuzz_rc" = 0 ] || { echo "the fuzz step failed" >&2; exit 1; }
step "browser tests (chromium, the real release binary)"
# The release binary: the host page's sound test waits for the loudness pass, which the
# unoptimised build runs ten times slower (75 s of the browser tests' 170).
JUKEBOX_BIN=target/release/jukebox node tests/web/run.mjs
step "appliance: .deb in a throwaway root and under a real systemd, Pi cross-builds, qemu"
./scripts/test-appliance.sh
step "a party on a Pi's budget: the release binary in a cgroup (tests/pi_budget.rs)"
JUKEBOX_RELEASE_BIN=target/release/jukebox cargo test --locked --test pi_budget -- \
  --ignored --exact a_party_on_a_pi_budget --nocapture
echo "== all tests passed in $((SECONDS / 60))m$((SECONDS % 60))s"
