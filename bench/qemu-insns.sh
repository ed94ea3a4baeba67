#!/usr/bin/env bash
# A speed proxy for aarch64 without ARM hardware: guest instructions executed per pair by the
# loader (decode + both views + the final write, one worker), counted under qemu-user by
# bench/qemu-insn/insn.c (Debian's qemu-user ships no plugins; this one counts every executed
# translation block's instructions), for aarch64 at BARLOW_SIMD=scalar and neon and for x86_64
# at scalar and avx2 (qemu's TCG has AVX2, not AVX-512); and, where valgrind is installed, the
# x86_64 AVX2 count of the native binary under callgrind as a cross-check of qemu's x86 count.
# Each count is the difference between a 5-step and a 1-step run of 32 pairs (start-up and the
# dataset scan cancel), divided by 128 pairs; the demo data, seed 7, the default recipe
# (barlow-twins, 224 px). Instructions are not time: a NEON instruction does 128 bits of work
# where an AVX2 one does 256, and cores differ in how many they retire per cycle; for the real
# rate on an ARM host see BENCHMARKS.md ("aarch64").
# Usage: bench/qemu-insns.sh [OUT.txt]   (needs what scripts/test-aarch64.sh installs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
T=aarch64-unknown-linux-gnu
target=${CARGO_TARGET_DIR:-target}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
qa="qemu-aarch64 -L /usr/aarch64-linux-gnu"
mkdir -p "$target/qemu-insn"
plugin=$target/qemu-insn/libinsn.so
gcc -O2 -shared -fPIC -o "$plugin" bench/qemu-insn/insn.c
cargo build --locked --release --target "$T" -p loader --bin loader
cargo build --locked --release -p loader --bin loader
cargo build --locked --target "$T" -p trainer --bin trainer
consumer="$qa $target/$T/debug/trainer"

# count RUNNER BINARY LEVEL STEPS: the loader's instructions, its batches read by a trainer
# (LOG in RUNNER: where the counter writes).
count() {
  local runner=$1 bin=$2 level=$3 steps=$4 ring log
  ring=barlow-insns-$$-$level-$steps
  log=$target/qemu-insn/$ring.log
  runner=${runner//LOG/$log}
  BARLOW_SIMD=$level $runner "$bin" --steps "$steps" --batch-size 32 --workers 1 --seed 7 \
    --shm "$ring" >/dev/null 2>&1 &
  local loader=$!
  $consumer --shm "$ring" --dry-run >/dev/null 2>&1
  wait "$loader"
  case $runner in
    valgrind*) sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log" | tail -n1 ;;
    *) grep -o 'insns: [0-9]*' "$log" | cut -d' ' -f2 ;;
  esac
}
per_pair() {
  local a b
  a=$(count "$@" 1)
  b=$(count "$@" 5)
  echo $(( (b - a) / 128 ))
}
out=${1:-/dev/null}
{
  echo "# bench/qemu-insns.sh, $(date -u +%Y-%m-%d): loader instructions per pair (demo data, seed 7, barlow-twins 224 px, 1 worker), $(qemu-aarch64 --version | head -n1)"
  for level in scalar neon; do
    echo "aarch64 $level: $(per_pair "$qa -plugin $plugin -d plugin -D LOG" "$target/$T/release/loader" "$level")"
  done
  for level in scalar avx2; do
    echo "x86_64 $level (qemu): $(per_pair "qemu-x86_64 -cpu max -plugin $plugin -d plugin -D LOG" "$target/release/loader" "$level")"
  done
  if command -v valgrind >/dev/null; then
    echo "x86_64 avx2 (callgrind): $(per_pair "valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file=LOG" "$target/release/loader" avx2)"
  fi
} | tee "$out"
