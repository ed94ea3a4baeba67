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
cargo test --workspace --locked "$@"
# The CUDA trainer must keep compiling: type-check it without a CUDA toolkit (dfdx's ci-check).
cargo check --locked -p trainer --features cuda-check
echo "test suite: $(( $(date +%s) - start ))s (build included)"
