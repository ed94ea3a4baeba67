#!/usr/bin/env bash
# The whole test suite: unit tests of every crate plus the integration tests that run the real
# binaries against each other. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
start=$(date +%s)
cargo test --workspace --locked "$@"
echo "test suite: $(( $(date +%s) - start ))s (build included)"
