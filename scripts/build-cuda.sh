#!/usr/bin/env bash
# Builds the CUDA trainer (and the CPU-only loader/datasets) in release mode and packs everything a
# GPU machine without Rust needs into a bundle folder (default .gpu/):
#   bin/{trainer,loader,datasets}
#   cuda-include.tar.gz   the headers dfdx's run-time NVRTC compilations include, and dfdx's .cuh
#                         files, under the absolute paths baked into the binary (see paths.txt)
#   paths.txt             those absolute paths, for scripts/gpu-check.sh to recreate
#   wheels/barlow-*.whl   the barlow Python package (abi3), for scripts/gpu/torch_feed.py
#
# With a system CUDA (nvcc on PATH and $CUDA_ROOT/include/cuda.h, e.g. CUDA_ROOT=/usr/local/cuda)
# it uses it; otherwise it prepares a CUDA 13.0 build toolkit from PyPI (scripts/cuda-toolkit.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bundle=${1:-.gpu}
if [ -z "${CUDA_ROOT:-}" ] || [ ! -f "$CUDA_ROOT/include/cuda.h" ] || ! command -v nvcc >/dev/null; then
  eval "$(scripts/cuda-toolkit.sh)"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
cargo build --release --locked -p trainer --features cuda
cargo build --release --locked -p loader -p datasets
rm -rf "$bundle" && mkdir -p "$bundle/bin"
for b in trainer loader datasets; do
  cp "$CARGO_TARGET_DIR/release/$b" "$bundle/bin/"
  strip --strip-debug "$bundle/bin/$b" 2>/dev/null || true
done
# The include paths dfdx baked in: CUDA_INCLUDE_DIR and dfdx's OUT_DIR, read back from the output
# of the dfdx build script that was actually used (it may predate a change of CUDA_ROOT).
build_out=$(grep -l "CUDA_INCLUDE_DIR" "$PWD/$CARGO_TARGET_DIR"/release/build/dfdx-*/output | head -n1)
include_dir=$(sed -n 's/^cargo:rustc-env=CUDA_INCLUDE_DIR=//p' "$build_out")
out_dir=$(dirname "$build_out")/out
printf '%s\n%s\n' "$include_dir" "$out_dir" > "$bundle/paths.txt"
tar -czhf "$bundle/cuda-include.tar.gz" -P "$include_dir"/ "$out_dir"/*.cuh
# The Python package, built with the maturin of the test venv (scripts/test.sh installs it).
maturin=${MATURIN:-$HOME/.cache/barlow/torch-venv/bin/maturin}
if [ -x "$maturin" ]; then
  "$maturin" build --quiet --release --locked -m python/Cargo.toml --target-dir target/python -o "$bundle/wheels"
else
  echo "build-cuda.sh: no maturin at $maturin (run scripts/test.sh once, or set MATURIN); the bundle has no" \
    "barlow wheel, so gpu-check.sh skips the PyTorch feed comparison" >&2
fi
du -sh "$bundle"/* >&2
