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
# The cross-framework step check (reference/step_check.py) and the barlow Python package's tests
# (python/tests) need PyTorch: ONE venv cached in ~/.cache/barlow/torch-venv, installed from PyPI
# (about 5 GB with its CUDA libraries: the only wheels the registry has; everything runs on the
# CPU) while the Rust tests run, reused after. The package's build and test tools are pinned apart
# (.pins-py), so changing them never reinstalls PyTorch.
TORCH_VENV="${BARLOW_TORCH_VENV:-$HOME/.cache/barlow/torch-venv}"
TORCH_PINS="torch==2.14.1 torchvision==0.29.2 numpy==2.4.6"
PY_PINS="maturin==1.16.0 pytest==9.2.0 webdataset==1.0.2 opencv-python-headless==4.14.0.94"
if [ "$(cat "$TORCH_VENV/.pins" 2>/dev/null)" != "$TORCH_PINS" ] || [ "$(cat "$TORCH_VENV/.pins-py" 2>/dev/null)" != "$PY_PINS" ]; then
  (
    set -e
    if [ "$(cat "$TORCH_VENV/.pins" 2>/dev/null)" != "$TORCH_PINS" ]; then
      rm -rf "$TORCH_VENV" && python3 -m venv "$TORCH_VENV"
      "$TORCH_VENV/bin/python" -m pip install -q $TORCH_PINS
      echo "$TORCH_PINS" > "$TORCH_VENV/.pins"
    fi
    "$TORCH_VENV/bin/python" -m pip install -q $PY_PINS
    echo "$PY_PINS" > "$TORCH_VENV/.pins-py"
  ) > "${TMPDIR:-/tmp}/barlow-torch-install.log" 2>&1 &
  torch_install=$!
fi
# With no arguments the workspace's test build makes the three binaries too (the packages'
# integration tests need them); the cross-process tests and the steps below use those, instead of
# a `cargo build` that would compile them again with other dev-dependency features.
if [ $# -eq 0 ]; then
  BARLOW_TEST_PREBUILT_BINS=1 cargo test --workspace --locked
  for b in loader trainer datasets; do
    [ -x "target/debug/$b" ] || { echo "test.sh: cargo test did not build target/debug/$b" >&2; exit 1; }
  done
else
  cargo test --workspace --locked "$@"
  cargo build --locked --bins -p loader -p trainer -p datasets
fi
if [ -n "${torch_install:-}" ] && ! wait "$torch_install"; then
  tail -n 20 "${TMPDIR:-/tmp}/barlow-torch-install.log" >&2
  echo "test.sh: could not install PyTorch ($TORCH_PINS) and $PY_PINS into $TORCH_VENV (no network to PyPI?); the step check against the official code and the Python package's tests cannot run" >&2
  exit 1
fi
# Training steps of barlow's real code against the official PyTorch code (issue 19), the 8192
# projector after warm-up among them, and the check itself against planted bugs (issue 29).
"$TORCH_VENV/bin/python" reference/step_check.py --trainer target/debug/trainer --case r18-64-1-warmup \
  --case r50-64-3-warmup --case r18-8192-1-after --self-test
# The barlow Python package (python/, its own cargo workspace): a wheel built by maturin in
# target/python, installed into the venv offline, its tests run against the debug binaries
# (the real loader and trainer on demo data; DDP with torchrun and gloo on the CPU).
py_start=$(date +%s)
rm -rf target/python/wheels
"$TORCH_VENV/bin/maturin" build --quiet --release --locked -m python/Cargo.toml --target-dir target/python \
  -o target/python/wheels --interpreter "$TORCH_VENV/bin/python"
"$TORCH_VENV/bin/python" -m pip install -q --no-index --no-deps --force-reinstall target/python/wheels/barlow-*.whl
BARLOW_BIN=target/debug "$TORCH_VENV/bin/python" -m pytest -q -p no:cacheprovider python/tests
echo "python package: $(( $(date +%s) - py_start ))s (wheel build included)"
# The CUDA trainer must keep compiling: type-check it without a CUDA toolkit (dfdx's ci-check).
cargo check --locked -p trainer --features cuda-check
echo "test suite: $(( $(date +%s) - start ))s (build included)"
