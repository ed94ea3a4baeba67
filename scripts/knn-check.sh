#!/usr/bin/env bash
# The representation check of issue 5: trains `tiny` on the built-in demo dataset for a few
# minutes on CPU (loader + trainer through a ring), then compares the k-NN top-1 accuracy of the
# trained backbone with the same architecture at random initialisation (several seeds).
# Prints both numbers; exits 1 unless the trained model beats the best random seed by at least
# KNN_MARGIN (absolute, default 0.05).
#
# The trainer runs the paper's recipe (LARS, warm-up, cosine) with the `tiny` preset's learning
# rates (--lr-weights 5 --lr-biases 0.05 --warmup-epochs 5, the ones that learn over long runs);
# KNN_TRAIN_ARGS adds trainer options.
#
#   scripts/knn-check.sh                      # 80 epochs (1440 steps, ~3.5 min on 2 cores), batch 32, 64x64
#   KNN_EPOCHS=30 scripts/knn-check.sh        # shorter
#   scripts/knn-check.sh --seed 1             # extra arguments go to the trainer
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked -p loader -p trainer -p datasets
epochs=${KNN_EPOCHS:-80}
read -r -a train_args <<< "${KNN_TRAIN_ARGS:-}"
margin=${KNN_MARGIN:-0.05}
seeds=${KNN_SEEDS:-"0 1 2"}
work=$(mktemp -d)
ring="barlow-knn-$$"
loader_pid=
cleanup() {
  [ -n "$loader_pid" ] && kill "$loader_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

top1() { sed -n 's/.*"top1":\([0-9.eE+-]*\).*/\1/p' | tail -n 1; }

start=$(date +%s)
target/release/loader --shm "$ring" --batch-size 32 --image-size 64 --epochs "$epochs" --seed 0 >"$work/loader.log" 2>&1 &
loader_pid=$!
target/release/trainer --shm "$ring" --wait 300 --arch tiny --epochs "$epochs" --checkpoint-dir "$work/run" \
  --no-progress --print-freq 100 "${train_args[@]}" "$@"
wait "$loader_pid" || { cat "$work/loader.log" >&2; exit 1; }
loader_pid=
minutes=$(awk -v s="$(( $(date +%s) - start ))" 'BEGIN { printf "%.1f", s / 60 }')

trained=$(target/release/trainer eval --checkpoint "$work/run/checkpoint.safetensors" | top1)
best=0
randoms=""
for seed in $seeds; do
  r=$(target/release/trainer eval --random-init --arch tiny --seed "$seed" | top1)
  randoms="$randoms seed $seed: $r;"
  best=$(awk -v a="$best" -v b="$r" 'BEGIN { print (b > a) ? b : a }')
done
echo "knn-check: tiny trained $epochs epochs (${minutes} min incl. start-up): k-NN top-1 $trained"
echo "knn-check: tiny at random initialisation:$randoms best $best"
if awk -v t="$trained" -v b="$best" -v m="$margin" 'BEGIN { exit !(t >= b + m) }'; then
  echo "knn-check: PASS (trained beats the best random seed by at least $margin)"
else
  echo "knn-check: FAIL (trained does not beat the best random seed by $margin)"
  exit 1
fi
