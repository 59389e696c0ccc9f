#!/usr/bin/env bash
# Sets up and runs the jukebox. Arguments go to the jukebox, e.g.
#   ./scripts/run.sh --demo                 # generated demo music, no files needed
#   ./scripts/run.sh --music ~/Music        # your own folder
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh build
exec cargo run --release --locked -- "$@"
