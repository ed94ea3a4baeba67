#!/usr/bin/env bash
# The whole test suite: unit tests of every crate plus the integration tests that run the real
# binaries against each other. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Debian's chromium renders the profiler's HTML report in one test (skipped where it is missing).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
    || echo "test.sh: could not install chromium; the report screenshot check will be skipped" >&2
fi
start=$(date +%s)
# The cross-framework step check (reference/step_check.py) needs PyTorch: a venv cached in
# ~/.cache/barlow/torch-venv, installed from PyPI (about 5 GB with its CUDA libraries: the only
# wheels the registry has; the check runs on the CPU) while the Rust tests run, reused after.
TORCH_VENV="${BARLOW_TORCH_VENV:-$HOME/.cache/barlow/torch-venv}"
TORCH_PINS="torch==2.14.1 torchvision==0.29.2 numpy==2.4.6"
if [ "$(cat "$TORCH_VENV/.pins" 2>/dev/null)" != "$TORCH_PINS" ]; then
  ( rm -rf "$TORCH_VENV" && python3 -m venv "$TORCH_VENV" && "$TORCH_VENV/bin/pip" install -q $TORCH_PINS \
      && echo "$TORCH_PINS" > "$TORCH_VENV/.pins" ) > "${TMPDIR:-/tmp}/barlow-torch-install.log" 2>&1 &
  torch_install=$!
fi
cargo test --workspace --locked "$@"
if [ -n "${torch_install:-}" ] && ! wait "$torch_install"; then
  tail -n 20 "${TMPDIR:-/tmp}/barlow-torch-install.log" >&2
  echo "test.sh: could not install PyTorch ($TORCH_PINS) into $TORCH_VENV (no network to PyPI?); the step check against the official code cannot run" >&2
  exit 1
fi
# One training step of barlow's real code against the official PyTorch code (issue 19).
cargo build --locked -p trainer
"$TORCH_VENV/bin/python" reference/step_check.py --trainer target/debug/trainer --case r18-64-1-warmup --case r50-64-3-warmup
# The CUDA trainer must keep compiling: type-check it without a CUDA toolkit (dfdx's ci-check).
cargo check --locked -p trainer --features cuda-check
echo "test suite: $(( $(date +%s) - start ))s (build included)"
