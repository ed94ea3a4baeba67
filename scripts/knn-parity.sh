#!/usr/bin/env bash
# k-NN parity of barlow with the official PyTorch code (issue 29). For each seed, trains `tiny`
# on the built-in demo dataset (demo-v3, 64x64, batch 32, lr 5 / 0.05, 5 warm-up epochs, the
# 128-128 projector) twice with the same recipe and number of steps: barlow (loader + trainer
# through a ring, as scripts/knn-check.sh; the loader's and the trainer's seed are the seed) and
# the official code (reference/torch_knn.py: main.py's Transform, LARS, schedule and loss; its
# seed is the seed). Then ONE evaluator, `reference/torch_knn.py --eval` (centre crop,
# BatchNorm's running statistics, leave-one-out k-NN, k=20, cosine, exp(sim/0.07) votes),
# scores every trained backbone and the random initialisations (torch_knn's at each seed).
# Prints each top-1, then the mean and spread per trainer; the logs, checkpoints and raw lines
# stay in a temporary folder, named at the end (KNN_OUT: the raw lines there too).
#
#   scripts/knn-parity.sh                          # seeds 0 1 2, 80 epochs (about 25 min on 2 idle cores)
#   KNN_SEEDS="0 1" KNN_EPOCHS=30 scripts/knn-parity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
python=${BARLOW_TORCH_VENV:-$HOME/.cache/barlow/torch-venv}/bin/python
cargo build --release --locked -p loader -p trainer
epochs=${KNN_EPOCHS:-80}
seeds=${KNN_SEEDS:-"0 1 2"}
work=$(mktemp -d)
out=${KNN_OUT:-$work/knn-parity.txt}
ring="barlow-parity-$$"
loader_pid=
trap '[ -n "$loader_pid" ] && kill "$loader_pid" 2>/dev/null || true' EXIT INT TERM

for seed in $seeds; do
  start=$(date +%s)
  target/release/loader --shm "$ring" --batch-size 32 --image-size 64 --epochs "$epochs" --seed "$seed" \
    >"$work/loader-$seed.log" 2>&1 &
  loader_pid=$!
  target/release/trainer --shm "$ring" --wait 300 --arch tiny --epochs "$epochs" --seed "$seed" \
    --checkpoint-dir "$work/barlow-$seed" --no-progress --print-freq 500 >"$work/barlow-$seed.log"
  wait "$loader_pid" || { cat "$work/loader-$seed.log" >&2; exit 1; }
  loader_pid=
  echo "barlow seed $seed: $(( $(date +%s) - start ))s" | tee -a "$out"
  data=${BARLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/barlow}/demo-v3  # the loader made it
  start=$(date +%s)
  "$python" reference/torch_knn.py --data "$data" --epochs "$epochs" --warmup-epochs 5 --seed "$seed" \
    --threads 2 --save "$work/torch-$seed.pt" >"$work/torch-$seed.log"
  echo "torch seed $seed: $(( $(date +%s) - start ))s" | tee -a "$out"
done
# the random initialisations: torch_knn's untrained backbone at each seed, saved by --epochs 0
for seed in $seeds; do
  "$python" reference/torch_knn.py --data "$data" --epochs 0 --seed "$seed" --save "$work/random-$seed.pt" >/dev/null
done
checkpoints=()
for seed in $seeds; do
  checkpoints+=("$work/barlow-$seed/checkpoint.safetensors" "$work/torch-$seed.pt" "$work/random-$seed.pt")
done
"$python" reference/torch_knn.py --data "$data" --eval "${checkpoints[@]}" | tee -a "$out"
"$python" - "$out" <<'EOF'
import json, statistics, sys
from pathlib import Path
top1 = {"barlow": [], "torch": [], "random": []}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        p = Path(r["checkpoint"])
        who = (p.parent.name if p.suffix == ".safetensors" else p.stem).split("-")[0]  # barlow-<seed>/, torch-<seed>.pt
        top1[who].append(100 * r["eval_bn"])
for who, t in top1.items():
    spread = statistics.stdev(t) if len(t) > 1 else 0.0
    print(f"knn-parity: {who}: k-NN top-1 {' / '.join(f'{x:.1f}' for x in t)}%: mean {statistics.mean(t):.1f}%, "
          f"standard deviation {spread:.1f} points")
EOF
echo "knn-parity: logs, checkpoints and raw output in $work (raw: $out)"
