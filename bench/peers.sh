#!/usr/bin/env bash
# barlow's loader beside its peers, on the same files and cores, alternating, and the ratios.
#
#   bench/peers.sh [ROUNDS]        (default 3 rounds; ~10 minutes per round on 2 cores)
#
# Uses ../shared/peers (the official pipeline in Pillow, NVIDIA DALI on CPU, decode-only limits
# and the ImageNet-like corpus generator). Installs what they need on first use (Debian wallpaper
# photos, a Python venv with Pillow, numpy, simplejpeg, PyTurboJPEG and DALI: ~1.2 GB), makes two
# 2,000-image corpora (plain, and --grain 14 for ImageNet-like bytes per pixel), builds the loader
# in release mode, packs each corpus (`datasets pack`, to /tmp/corpus2k-grainN.pack), and runs
# bench.py with `loader bench --dir` and `loader bench --pack` as extra peers. Results (JSON lines)
# and the tables go to bench/results/; copy the numbers that matter into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${PEERS:-$(cd .. && pwd)/shared/peers}
venv=${PEERS_VENV:-/tmp/peers-venv}
rounds=${1:-3}
out=bench/results
mkdir -p "$out"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import PIL, numpy, nvidia.dali" 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends mate-backgrounds plasma-workspace-wallpapers libturbojpeg0
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pillow numpy simplejpeg "PyTurboJPEG<2" nvidia-dali-cuda120
fi
for grain in 0 14; do
  corpus=/tmp/corpus2k-grain$grain
  [ -f "$corpus/manifest.json" ] || "$venv/bin/python" "$peers/make_corpus.py" --out "$corpus" --n 2000 --classes 100 --seed 0 --grain $grain
done
source scripts/setup.sh
cargo build --release --locked -p loader -p datasets
loader=$PWD/target/release/loader
for grain in 0 14; do
  corpus=/tmp/corpus2k-grain$grain
  [ -f "$corpus.pack" ] || target/release/datasets pack --dir "$corpus" --out "$corpus.pack"
done
stamp=$(date +%Y%m%d-%H%M%S)
for grain in 0 14; do
  corpus=/tmp/corpus2k-grain$grain
  results=$out/peers-grain$grain-$stamp.jsonl
  "$venv/bin/python" "$peers/bench.py" "$corpus" --rounds "$rounds" --out "$results" \
    --only 'bt_pillow|bt_dali.py .*full|loader' \
    --extra "$loader bench --dir {root} --workers {w} --seconds 10 --json" \
    --extra "$loader bench --pack $corpus.pack --workers {w} --seconds 10 --json"
  "$venv/bin/python" bench/ratios.py "$results" | tee "$out/ratios-grain$grain-$stamp.md"
done
