#!/usr/bin/env bash
# temporary (issue 5 session): GPU checks of the runtime-shaped models
set -uo pipefail
bundle=${1:-target-cuda/bundle5}
out=${OUT:-/tmp/out5}; mkdir -p "$out"
dirs=$(python3 -c 'import glob,site,sys
paths=site.getsitepackages()+[site.getusersitepackages()]+sys.path
print(":".join(sorted({d for p in paths for d in glob.glob(p+"/nvidia/*/lib")})))' 2>/dev/null)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && dirs="$dirs:$d"
done
export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tar -xzPf "$bundle/cuda-include.tar.gz"
inc=$(head -n1 "$bundle/paths.txt")
for e in "$inc"/cccl/*; do [ -e "$inc/$(basename "$e")" ] || ln -s "$e" "$inc/"; done
bin=$bundle/bin
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/env.txt"
for spec in "tiny 32 64" "resnet18 16 64" "resnet50 8 64"; do
  set -- $spec
  timeout 120 "$bin/trainer" check-devices --arch $1 --batch-size $2 --image-size $3 > "$out/cd_$1.json" 2> "$out/cd_$1.err"
  echo "check-devices $1 (exit $?): $(tail -n1 "$out/cd_$1.err")"
done
demo=/tmp/barlow-demo
[ -d "$demo" ] || "$bin/datasets" demo --out "$demo" > /dev/null
run() { # name arch batch size steps
  local ring="b5-$1"
  timeout 200 "$bin/loader" --dir "$demo" --shm "$ring" --steps $(( $5 + 2 )) --batch-size $3 --image-size $4 --workers 14 2> "$out/$1_loader.err" &
  local lp=$!
  (while sleep 1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) > "$out/$1_mem.txt" &
  local mp=$!
  timeout 200 "$bin/trainer" --shm "$ring" --wait 60 --device cuda --arch $2 --steps $5 --print-freq 1 --no-progress > "$out/$1.jsonl" 2> "$out/$1_trainer.err"
  echo "$1 trainer exit $?: $(tail -n2 "$out/$1_trainer.err" | tr '\n' ' ')"
  kill $mp; kill $lp 2>/dev/null; wait $lp 2>/dev/null
  echo "$1 peak MiB: $(sort -n "$out/$1_mem.txt" | tail -n1)"
  grep -o '"compute_ms":[0-9.]*' "$out/$1.jsonl" | tr '\n' ' '; echo
}
run r18 resnet18 256 224 6
run r50 resnet50 256 224 6
