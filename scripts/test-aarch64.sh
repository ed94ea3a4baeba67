#!/usr/bin/env bash
# aarch64 (NVIDIA Grace, AWS Graviton, Ampere) without ARM hardware: cross-builds for
# aarch64-unknown-linux-gnu the crates that hold the pixel kernels, the decoder and the ring
# (views, decode, shared) and the loader's determinism and BARLOW_SIMD tests, and runs them under
# qemu-user:
#   1. every test of views, decode and shared: the Pillow goldens and each hand-written NEON path
#      against the portable code at every level of `simd::LEVELS` (scalar and neon, in one
#      process through `simd::at_level`), the final write against its scalar reference, the
#      ring's tests and its two-process torn-read stress test;
#   2. the loader's determinism and `BARLOW_SIMD` tests once per level (BARLOW_SIMD=scalar, then
#      neon), so that its worker threads run at each level too;
#   3. digests: `loader --steps 12 --batch-size 16 --seed 7 --image-size 64` on the demo data into
#      a ring read by `trainer --dry-run --digest`, both aarch64 binaries under qemu, at each level
#      and for each recipe of RECIPES (default: every built-in one), must give the batch digests
#      of the same run of the x86_64 loader (built here, run natively); for barlow-twins also the
#      committed x86_64 digests (left column of bench/results/digests-turbo-20261206.txt: the
#      default libjpeg-turbo decoder, built for aarch64 with its NEON code), and with
#      `--decoder zune` those of bench/results/digests-before-after-20261205.txt.
# Every step runs even if an earlier one fails; the failures are listed at the end (exit 1).
# Installs what it lacks: the Rust target (rustup) and, as root, Debian's cross compiler and
# qemu-user (apt-get). About 9 minutes on 2 cores from a cold target folder (builds included:
# 4 for the tests, 4.5 for the trainer and the x86_64 loader), 2 warm; not run by CI
# (scripts/test.sh), which is already past that budget without it.
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
# without a binfmt_misc registration an aarch64 binary cannot be run directly.
export BARLOW_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
unset BARLOW_SIMD
levels="scalar neon" # views::simd::LEVELS on aarch64
failed=()
step() {
  local name=$1
  shift
  echo "== $name"
  "$@" || failed+=("$name")
}

# 1. The kernels (every level in-process), the decoder, the ring.
step "views, decode, shared" cargo test --locked --target "$T" -p decode -p shared -p views
# 2. Per level, in the whole process (worker threads included).
for level in $levels; do
  step "loader determinism + BARLOW_SIMD at $level" env BARLOW_SIMD=$level \
    cargo test --locked --target "$T" -p loader --test determinism --test cli_simd
done
echo "aarch64 tests: $(( $(date +%s) - start ))s (builds included)"

# 3. The digests of a short run, against x86_64's.
# digests RUNNER LOADER LEVEL RECIPE [FLAGS...]: the per-batch digests (an aarch64 trainer reads
# the ring).
digests() {
  local runner=$1 loader=$2 level=$3 recipe=$4 ring=barlow-aarch64-digest-$$ pid got
  shift 4
  BARLOW_SIMD=$level $runner "$loader" --steps 12 --batch-size 16 --seed 7 --image-size 64 \
    --recipe "$recipe" --shm "$ring" "$@" >/dev/null 2>&1 &
  pid=$!
  got=$($BARLOW_TEST_RUNNER "$bin/trainer" --shm "$ring" --dry-run --digest 2>/dev/null) || true
  wait "$pid" || got="$got (the loader failed)"
  echo "$got"
}
# check NAME WANT GOT
check() {
  if [ "$2" = "$3" ] && [ -n "$2" ] && [[ $2 != *"loader failed"* ]]; then
    echo "$1: the same ($(echo "$3" | tail -n1))"
  else
    echo "test-aarch64.sh: $1: the digests differ:" >&2
    diff <(echo "$2") <(echo "$3") >&2 || true
    failed+=("$1")
  fi
}
if [ "${1:-}" != "--no-digest" ]; then
  echo "== digests"
  step "aarch64 build of loader and trainer" cargo build --locked --target "$T" -p loader -p trainer --bins
  step "x86_64 build of loader" cargo build --locked -p loader --bin loader
  bin=${CARGO_TARGET_DIR:-target}/$T/debug
  x86=${CARGO_TARGET_DIR:-target}/debug/loader
  committed=$(grep '^step\|^total' bench/results/digests-turbo-20261206.txt | cut -f1)
  committed_zune=$(grep '^step\|^total' bench/results/digests-before-after-20261205.txt | cut -f1)
  want=$(digests "" "$x86" "" barlow-twins --decoder zune)
  check "x86_64 barlow-twins --decoder zune against the committed digests" "$committed_zune" "$want"
  for level in $levels; do
    check "aarch64 barlow-twins --decoder zune at $level against x86_64" "$want" \
      "$(digests "$BARLOW_TEST_RUNNER" "$bin/loader" "$level" barlow-twins --decoder zune)"
  done
  for recipe in ${RECIPES:-barlow-twins dino swav dinov2}; do
    want=$(digests "" "$x86" "" "$recipe")
    if [ "$recipe" = barlow-twins ]; then
      check "x86_64 $recipe against the committed digests" "$committed" "$want"
    fi
    for level in $levels; do
      check "aarch64 $recipe at $level against x86_64" "$want" \
        "$(digests "$BARLOW_TEST_RUNNER" "$bin/loader" "$level" "$recipe")"
    done
  done
fi
echo "test-aarch64.sh: $(( $(date +%s) - start ))s in all"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'test-aarch64.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
