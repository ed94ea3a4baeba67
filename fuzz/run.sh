#!/usr/bin/env bash
# Runs barlow's fuzz targets on the stable toolchain with cargo-fuzz (libFuzzer).
#
#   fuzz/run.sh [TARGET|all] [SECONDS]     TARGET: decode, ring_header, tar_index (default: all, 600 s each)
#   ASAN=1 fuzz/run.sh ...                 the same under AddressSanitizer (see below)
#
# Plain runs use `--sanitizer none`: everything cargo-fuzz then passes to rustc is a stable -C
# flag (sanitizer-coverage via -Cpasses=sancov-module and -Cllvm-args), so no nightly and no
# RUSTC_BOOTSTRAP are needed. Panics, aborts, overflow and debug assertions (cargo-fuzz builds
# with -Cdebug-assertions), wild memory accesses (SIGSEGV/SIGBUS), timeouts and OOMs are caught.
# ASAN=1 adds AddressSanitizer: stable rustc ships its runtime but the flag is still -Zsanitizer,
# so that build alone sets RUSTC_BOOTSTRAP=1 (in its own target dir, fuzz/target-asan).
# New corpus entries go to fuzz/corpus/TARGET (git-ignored); fuzz/seeds/TARGET is read only.
# Needs: cargo install cargo-fuzz --version 0.13.2 (or newer), and a C++ compiler (libFuzzer).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
secs=${2:-600}
targets=(decode ring_header tar_index)
[ "$which" = all ] || targets=("$which")
build=(--sanitizer none)
if [ "${ASAN:-0}" = 1 ]; then
  export RUSTC_BOOTSTRAP=1
  build=(--sanitizer address --target-dir fuzz/target-asan)
fi
for t in "${targets[@]}"; do
  extra=()
  # A ring with published batches is 8-16 KiB; images are fine at libFuzzer's default.
  [ "$t" = ring_header ] && extra=(-max_len=16384)
  mkdir -p "fuzz/corpus/$t"
  echo "== $t: ${secs}s" >&2
  nice -n 19 cargo fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${extra[@]}"
done
