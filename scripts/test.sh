#!/usr/bin/env bash
# Sets up what the tests need and runs every test, plus the format and lint checks.
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh test

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test (scripts/cargo-tests.sh: the test binaries side by side)"
./scripts/cargo-tests.sh
echo "== fuzz targets, 10 s each from their seeds (cargo-fuzz, nightly)"
./scripts/fuzz.sh --quick 10
echo "== the release build (for the browser tests, the appliance and the Pi's budget)"
cargo build --release --locked
echo "== browser tests (chromium, the real release binary)"
# The release binary: the host page's sound test waits for the loudness pass, which the
# unoptimised build runs ten times slower (75 s of the browser tests' 170).
JUKEBOX_BIN=target/release/jukebox node tests/web/run.mjs
echo "== appliance: .deb in a throwaway root and under a real systemd, Pi cross-builds, qemu"
./scripts/test-appliance.sh
echo "== a party on a Pi's budget: the release binary in a cgroup (tests/pi_budget.rs)"
JUKEBOX_RELEASE_BIN=target/release/jukebox cargo test --locked --test pi_budget -- \
  --ignored --exact a_party_on_a_pi_budget --nocapture
