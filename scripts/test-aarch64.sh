#!/usr/bin/env bash
# aarch64 (NVIDIA Grace, AWS Graviton, Ampere) without ARM hardware: cross-builds for
# aarch64-unknown-linux-gnu the crates that hold the pixel kernels, the decoder and the ring
# (views, decode, shared) and the loader's determinism and BARLOW_SIMD tests, and runs them under
# qemu-user:
#   1. every test of views, decode and shared: the Pillow goldens, each hand-written NEON path
#      against the portable code (every level of `simd::LEVELS`, scalar and neon, in one process
#      through `simd::at_level`), the ring's tests and its two-process torn-read stress test;
#   2. the goldens and the loader's determinism and `BARLOW_SIMD` tests once per level
#      (BARLOW_SIMD=scalar, then neon), so that worker threads run at each level too;
#   3. a short run on the demo data, `loader --steps 12 --batch-size 16 --seed 7 --image-size 64`
#      into a ring read by `trainer --dry-run --digest`, both aarch64 binaries under qemu, at each
#      level: its per-batch digests must be the x86_64 ones (left column of
#      bench/results/digests-before-after-20261205.txt).
# Installs what it lacks: the Rust target (rustup) and, as root, Debian's cross compiler and
# qemu-user (apt-get). About 12 minutes on 2 cores from a cold target folder (build included),
# 2-3 warm; not run by CI (scripts/test.sh), which is already far past that budget.
# Usage: scripts/test-aarch64.sh [--no-digest]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
T=aarch64-unknown-linux-gnu
start=$(date +%s)

if ! rustup target list --installed 2>/dev/null | grep -qx "$T"; then
  rustup target add "$T"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "test-aarch64.sh: needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# Tests that start a binary (the stress test's producer, the loader) start it through this too:
# there is no binfmt_misc registration to run an aarch64 binary directly.
export BARLOW_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
unset BARLOW_SIMD
cargo_t() { cargo "$1" --locked --target "$T" "${@:2}"; }

# 1. The kernels (every level in-process), the decoder, the ring.
cargo_t test -p decode -p shared -p views
# 2. Per level, in the whole process (worker threads included).
levels="scalar neon" # views::simd::LEVELS on aarch64
for level in $levels; do
  echo "== BARLOW_SIMD=$level"
  BARLOW_SIMD=$level cargo_t test -p views --test pillow_golden
  BARLOW_SIMD=$level cargo_t test -p loader --test determinism --test cli_simd
done
echo "aarch64 tests: $(( $(date +%s) - start ))s (build included)"

# 3. The digests of a short run, against x86_64's.
if [ "${1:-}" != "--no-digest" ]; then
  cargo_t build -p loader -p trainer --bins
  bin=${CARGO_TARGET_DIR:-target}/$T/debug
  want=$(grep '^step\|^total' bench/results/digests-before-after-20261205.txt | cut -f1)
  for level in $levels; do
    ring=barlow-aarch64-digest-$$
    BARLOW_SIMD=$level $BARLOW_TEST_RUNNER "$bin/loader" --steps 12 --batch-size 16 --seed 7 \
      --image-size 64 --shm "$ring" >/dev/null 2>&1 &
    loader=$!
    got=$($BARLOW_TEST_RUNNER "$bin/trainer" --shm "$ring" --dry-run --digest 2>/dev/null)
    wait "$loader"
    if [ "$got" != "$want" ]; then
      echo "test-aarch64.sh: BARLOW_SIMD=$level: the digests differ from x86_64's:" >&2
      diff <(echo "$want") <(echo "$got") >&2 || true
      exit 1
    fi
    echo "digests at $level: the x86_64 ones ($(echo "$got" | tail -n1))"
  done
fi
echo "test-aarch64.sh: $(( $(date +%s) - start ))s in all"
