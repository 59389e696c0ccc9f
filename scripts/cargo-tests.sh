#!/usr/bin/env bash
# Builds every cargo test (unit, integration, doc) and runs the test binaries several at a time.
#   scripts/cargo-tests.sh            # what scripts/test.sh runs
#
# Why not plain `cargo test`: it runs one binary after the other, and most of them spend their
# time waiting on real time (songs that play to a WAV file in real time, a 50-s silence, a
# restart), not on the CPU: run one by one, they took 8.5 min of a 2-core machine at 0.6 cores.
# Each binary is still a normal libtest binary started from the package root, as cargo starts
# it, so `cargo test` alone runs the same tests.
#
# Environment: TEST_JOBS (binaries at once beside the real-time ones, default 2),
# RUST_TEST_THREADS (tests at once in one of those, default 4), RUST_TEST_THREADS_REALTIME
# (tests at once in a real-time binary, default one per core). Each binary's output is printed whole when it ends, failures last. The
# time each binary took is kept in target/test-durations.tsv so that the next run starts the
# longest first.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${TEST_JOBS:-2}
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}
# The real-time binaries keep cargo's default here (one test per core): four debug players at
# once in one binary fell behind the clock the tests hold them to.
realtime_threads=${RUST_TEST_THREADS_REALTIME:-$(nproc)}
durations=target/test-durations.tsv
work=$(mktemp -d "${TMPDIR:-/tmp}/jukebox-tests.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo test --locked --no-run --message-format=json-render-diagnostics >"$work/build.json"

# One line per test binary, "NAME<TAB>PATH", longest first by the last run's durations.
python3 - "$work/build.json" "$durations" >"$work/list" <<'EOF'
import json, os, sys
build, durations = sys.argv[1], sys.argv[2]
known = {}
if os.path.exists(durations):
    for line in open(durations):
        name, _, secs = line.rstrip("\n").partition("\t")
        try:
            known[name] = float(secs)
        except ValueError:
            pass
bins = {}
for line in open(build):
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or not msg.get("profile", {}).get("test"):
        continue
    exe = msg.get("executable")
    if not exe:
        continue
    target = msg["target"]
    kind = target["kind"][0]
    name = target["name"] if kind == "test" else f"{kind}:{target['name']}"
    bins[name] = exe
# Unknown binaries first: a new test may be a long one.
for name in sorted(bins, key=lambda n: -known.get(n, 1e9)):
    print(f"{name}\t{bins[name]}")
EOF
[ -s "$work/list" ] || {
  echo "cargo-tests: cargo listed no test binaries" >&2
  exit 1
}

# Runs one binary; its output goes to NAME.log, its status and seconds to NAME.status.
run_one() {
  local name=$1 exe=$2 log="$work/${1//[:\/]/_}" start status=0
  start=$(date +%s.%N)
  "$exe" >"$log.log" 2>&1 </dev/null || status=$?
  local secs
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  printf '%s\t%s\t%s\n' "$status" "$secs" "$name" >"$log.status"
  if [ "$status" -eq 0 ]; then
    printf '  ok     %-22s %6s s  %s\n' "$name" "$secs" "$(grep -E '^test result:' "$log.log" | tail -n1 | cut -d';' -f1)"
  else
    printf '  FAILED %-22s %6s s  (exit %s)\n' "$name" "$secs" "$status"
  fi
}
export -f run_one
export work

# Binaries whose tests play audio in real time and count underruns or check the output's
# length against the clock: they run one at a time at normal priority, the others beside them
# at the lowest (nice 19), so that the CPU the players need is never taken by a test that
# only waits for results. Under equal priority, three binaries at once starved a debug
# player on two cores into underruns. live_load is here for its clock too: it compares
# delivery latencies with and without a stuck phone.
realtime=" sound sound_settings loudness snapcast crossfade_votes audio formats mpd chaos live_load "
while IFS=$'\t' read -r name exe; do
  if [[ $realtime == *" $name "* ]]; then printf '%s\n%s\n' "$name" "$exe" >>"$work/lane.realtime"; else printf '%s\n%s\n' "$name" "$exe" >>"$work/lane.rest"; fi
done <"$work/list"
touch "$work/lane.realtime" "$work/lane.rest"

start=$SECONDS
echo "running $(wc -l <"$work/list") test binaries: those that play in real time one at a time ($realtime_threads tests at once), the others $jobs at a time at nice 19 ($RUST_TEST_THREADS tests at once)"
RUST_TEST_THREADS=$realtime_threads xargs -d '\n' -n 2 -P 1 bash -c 'run_one "$1" "$2"' _ <"$work/lane.realtime" &
realtime_lane=$!
nice -n 19 xargs -d '\n' -n 2 -P "$jobs" bash -c 'run_one "$1" "$2"' _ <"$work/lane.rest" || true
wait "$realtime_lane" || true

failed=()
: >"$work/durations"
while IFS=$'\t' read -r name _; do
  file="$work/${name//[:\/]/_}"
  if [ ! -f "$file.status" ]; then
    failed+=("$name")
    echo "no result" >>"$file.log"
    continue
  fi
  IFS=$'\t' read -r status secs _ <"$file.status"
  printf '%s\t%s\n' "$name" "$secs" >>"$work/durations"
  [ "$status" -eq 0 ] || failed+=("$name")
done <"$work/list"
cp "$work/durations" "$durations"

for name in "${failed[@]}"; do
  echo
  echo "==== $name: output"
  cat "$work/${name//[:\/]/_}.log"
done

echo "== doc tests"
cargo test --locked --doc

if [ ${#failed[@]} -gt 0 ]; then
  echo "cargo-tests: FAILED: ${failed[*]} ($((SECONDS - start)) s)" >&2
  exit 1
fi
echo "cargo-tests: every test binary passed in $((SECONDS - start)) s"
