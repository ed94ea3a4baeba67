#!/usr/bin/env bash
# Builds barlow and runs it end to end on the built-in demo dataset: a loader feeding a trainer
# through a shared-memory ring, bounded to a couple of minutes on 2 cores. Extra arguments go to
# the trainer (e.g. --steps 200).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked -p loader -p trainer -p datasets
ring="barlow-demo-$$"
steps=${DEMO_STEPS:-60}
target/release/loader --shm "$ring" --steps "$steps" --batch-size 32 --image-size 64 &
loader_pid=$!
trap 'kill $loader_pid 2>/dev/null || true' EXIT INT TERM
target/release/trainer --shm "$ring" --wait 300 --arch tiny "$@"
wait $loader_pid
