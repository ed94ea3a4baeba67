#!/usr/bin/env bash
# Soak test (issue 8): the loader runs 10 epochs of the demo data, drained by `trainer --dry-run`,
# and its RSS, sampled through the run, must stay within 10% of the RSS at the end of epoch 1.
# Prints a per-epoch RSS table. Takes a few minutes; extra arguments go to the test binary's
# libtest, e.g. `scripts/soak.sh --exact loader_rss_stays_flat_over_ten_epochs`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
start=$(date +%s)
cargo test -p barlow-tests --test soak -- --ignored --nocapture "$@"
echo "soak: $(( $(date +%s) - start ))s (build included)"
