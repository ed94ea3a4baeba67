#!/usr/bin/env bash
# barlow's loader beside its peers, on the same files and cores, alternating, and the ratios.
#
#   bench/peers.sh [ROUNDS]        (default 3 rounds; ~10 minutes per round on 2 cores)
#
# Environment (defaults: the full comparison):
#   LEVELS="scalar avx2 avx512bw avx512vbmi"  also run `loader bench --dir` at each SIMD level
#       (BARLOW_SIMD; peers `barlow@LEVEL`); levels this CPU lacks are skipped, and said so
#       (on aarch64: LEVELS="scalar neon")
#   WORKERS=1          worker counts (default 1,2)
#   PEERS_ONLY=REGEX   which commands run (default: Pillow official, DALI full decode, the loader;
#       DALI is installed only when REGEX names it)
#   GRAINS="0"         which corpora (default "0 14")
#   RECIPE=dino|swav|dinov2  instead: the multi-crop comparison (default WORKERS=1): `loader bench
#       --recipe R` against the method's official transform in a torch DataLoader
#       (bench/multicrop_official_peer.py --method R: DINO's or DINOv2's DataAugmentationDINO,
#       SwAV's MultiCropDataset transforms; in the torch venv of scripts/test.sh, BARLOW_TORCH_VENV),
#       plus `--local-crops 0` and `2` and the barlow-twins recipe, for the cost of the local
#       crops; alternating, on the same corpora; results bench/results/R-grainN-STAMP.{jsonl,txt}.
#       Needs no DALI venv. QUIET_MAX=S caps bench.py's wait for a quiet machine (default 20 s).
#   DECODERS=1         instead: the decoders side by side (default WORKERS=1): `loader bench --dir`
#       with `--decoder zune`, `--decoder turbo --full-decode` and `--decoder turbo` (region
#       decode), against the official pipeline in Pillow (bt_pillow.py, in the torch venv of
#       scripts/test.sh: Pillow + numpy), alternating, on the same corpora; results
#       bench/results/decoders-grainN-STAMP.{jsonl,md}. Needs no DALI venv.
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
workers=${WORKERS:-1,2}
only=${PEERS_ONLY:-'bt_pillow|bt_dali.py .*full|loader'}
grains=${GRAINS:-0 14}
out=bench/results
mkdir -p "$out"
recipe=${RECIPE:-barlow-twins}
corpus_py=$venv/bin/python
multicrop=
case $recipe in dino|swav|dinov2) multicrop=$recipe ;; esac
decoders=${DECODERS:-}
if [ -n "$multicrop" ] || [ -n "$decoders" ]; then
  workers=${WORKERS:-1}
  torch_py=${BARLOW_TORCH_VENV:-$HOME/.cache/barlow/torch-venv}/bin/python
  if ! "$torch_py" -c "import torch, torchvision, PIL, numpy, cv2" 2>/dev/null; then
    echo "peers.sh: RECIPE=$recipe / DECODERS=1 needs torch, torchvision and opencv-python-headless in $torch_py (scripts/test.sh makes that venv)" >&2
    exit 1
  fi
  corpus_py=$torch_py   # Pillow + numpy at the versions of the corpus's manifest
  if [ ! -d /usr/share/backgrounds/mate ] || [ ! -d /usr/share/wallpapers ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends mate-backgrounds plasma-workspace-wallpapers
  fi
else
  # DALI only where a DALI peer runs (an ARM host comparing against Pillow needs none).
  dali=
  case $only in *dali*) dali=nvidia-dali-cuda120 ;; esac
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import PIL, numpy${dali:+, nvidia.dali}" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends mate-backgrounds plasma-workspace-wallpapers libturbojpeg0
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pillow numpy simplejpeg "PyTurboJPEG<2" $dali
  fi
fi
for grain in $grains; do
  corpus=/tmp/corpus2k-grain$grain
  [ -f "$corpus/manifest.json" ] || "$corpus_py" "$peers/make_corpus.py" --out "$corpus" --n 2000 --classes 100 --seed 0 --grain $grain
done
source scripts/setup.sh
cargo build --release --locked -p loader -p datasets
loader=$PWD/target/release/loader
if [ -n "$decoders" ]; then
  stamp=$(date +%Y%m%d-%H%M%S)
  bench="$loader bench --dir {root} --workers {w} --seconds 10 --json"
  for grain in $grains; do
    corpus=/tmp/corpus2k-grain$grain
    results=$out/decoders-grain$grain-$stamp.jsonl
    "$torch_py" "$peers/bench.py" "$corpus" --rounds "$rounds" --out "$results" --workers "$workers" \
      --only 'bt_pillow|loader' --quiet-max "${QUIET_MAX:-20}" \
      --extra "$bench --decoder zune" \
      --extra "$bench --decoder turbo --full-decode" \
      --extra "$bench --decoder turbo" > /dev/null
    { echo "# corpus $corpus; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; load1 at the end $(cut -d' ' -f1 /proc/loadavg)"
      "$torch_py" bench/ratios.py --decoders "$results"; } | tee "$out/decoders-grain$grain-$stamp.md"
  done
  exit 0
fi
if [ -n "$multicrop" ]; then
  stamp=$(date +%Y%m%d-%H%M%S)
  peer="$PWD/bench/multicrop_official_peer.py"
  tag="$torch_py $peer --tag"
  bench="$loader bench --dir {root} --workers {w} --seconds 10 --json"
  for grain in $grains; do
    corpus=/tmp/corpus2k-grain$grain
    results=$out/$recipe-grain$grain-$stamp.jsonl
    # --only keeps the extras (each runs bench/multicrop_official_peer.py), none of bench.py's own peers.
    "$torch_py" "$peers/bench.py" "$corpus" --rounds "$rounds" --out "$results" --workers "$workers" \
      --only multicrop_official_peer --quiet-max "${QUIET_MAX:-20}" \
      --extra "$tag barlow-$recipe -- $bench --recipe $recipe" \
      --extra "$torch_py $peer {root} -W {w} --method $recipe" \
      --extra "$tag barlow-$recipe-k0 -- $bench --recipe $recipe --local-crops 0" \
      --extra "$tag barlow-$recipe-k2 -- $bench --recipe $recipe --local-crops 2" \
      --extra "$tag barlow-bt -- $bench --recipe barlow-twins" > /dev/null
    { echo "# corpus $corpus; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; load1 at the end $(cut -d' ' -f1 /proc/loadavg)"
      "$torch_py" bench/multicrop_official_peer.py --table "$recipe" "$results"; } | tee "$out/$recipe-grain$grain-$stamp.txt"
  done
  exit 0
fi
levels=()
for level in ${LEVELS:-}; do
  case $level in
    avx2) flag=avx2 ;; avx512bw) flag=avx512bw ;; avx512vbmi) flag=avx512vbmi ;; *) flag= ;;
  esac
  if [ -n "$flag" ] && ! grep -qw "$flag" /proc/cpuinfo; then
    echo "peers.sh: skipping BARLOW_SIMD=$level: this CPU lacks $flag" >&2
    continue
  fi
  levels+=(--extra "env BARLOW_SIMD=$level $loader bench --dir {root} --workers {w} --seconds 10 --json")
done
for grain in $grains; do
  corpus=/tmp/corpus2k-grain$grain
  [ -f "$corpus.pack" ] || target/release/datasets pack --dir "$corpus" --out "$corpus.pack"
done
stamp=$(date +%Y%m%d-%H%M%S)
for grain in $grains; do
  corpus=/tmp/corpus2k-grain$grain
  results=$out/peers-grain$grain-$stamp.jsonl
  "$venv/bin/python" "$peers/bench.py" "$corpus" --rounds "$rounds" --out "$results" \
    --workers "$workers" --only "$only" "${levels[@]}" \
    --extra "$loader bench --dir {root} --workers {w} --seconds 10 --json" \
    --extra "$loader bench --pack $corpus.pack --workers {w} --seconds 10 --json"
  { echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- || lscpu | grep -m1 'Model name' | cut -d: -f2-); SIMD: $(grep -m1 -ow 'avx512vbmi' /proc/cpuinfo || grep -m1 -ow 'avx512bw' /proc/cpuinfo || grep -m1 -ow avx2 /proc/cpuinfo || grep -m1 -ow asimd /proc/cpuinfo)"; } > "$out/cpu-$stamp.txt"
  "$venv/bin/python" bench/ratios.py "$results" | tee "$out/ratios-grain$grain-$stamp.md"
done
