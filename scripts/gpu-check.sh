#!/usr/bin/env bash
# barlow's GPU check, in ONE call of under 9 minutes on a CUDA machine that has a driver and
# Python with PyTorch and NVIDIA's wheels (cuDNN 9, cuBLAS, NVRTC) but no Rust, from the bundle
# scripts/build-cuda.sh made on the build machine (default .gpu/). Writes under $OUT (default
# /tmp/barlow-gpu-check):
#   summary.txt   the lines that matter (also printed), with the table of barlow vs PyTorch
#   gpu.jsonl     one JSON line per measurement: impl (barlow|pytorch), arch, batch, precision
#                 (fp32|tf32), ms_per_step, peak_mem_gib, device, and barlow's ops_ms (device
#                 ms per kind of op); plus the check-devices lines (impl "check-devices") and the
#                 loader-fed run (impl "barlow-fed", with wait_share)
#   env.txt       nvidia-smi, the libraries found, cuDNN's version
#   logs.tar.gz   every run's stdout/stderr
# What it runs:
#   1. trainer check-devices (CPU vs CUDA, TF32 off, bound 1e-3) for tiny, resnet18, resnet50,
#      and resnet50 with --tf32 (its error against FP32 on the CPU, bound 3e-2);
#   2. resnet18 and resnet50 + 8192-8192-8192 at 224x224, batch 256, two views: `trainer bench`
#      and scripts/gpu/torch_bt.py (official model, loss, LARS), TF32 and FP32 each, same card;
#   3. trainer --device cuda fed by the real loader (demo data at 224x224, nproc-2 workers,
#      resnet50, batch 256): the share of time it waited for input;
#   4. the same PyTorch ResNet-50 step (official model, loss, LARS; TF32) fed by the official
#      pipeline (ImageFolder + main.py's transforms, DataLoader, nproc-1 workers, pinned memory) and
#      by barlow's loader through barlow.torch.RingLoader (the bundle's wheel), on the demo JPEGs
#      of 3. at 224x224 (scripts/gpu/torch_feed.py): steps/s, input wait, GPU idle share, CPU
#      cores used (impl "torch-official-feed" / "torch-barlow-feed").
# Usage: scripts/gpu-check.sh [--quick|--feed]  (--quick: check-devices and resnet18 only;
#                                              --feed: only 4, the PyTorch feed comparison)
#        DRY_RUN=1 scripts/gpu-check.sh      (on a CPU build machine: the same plumbing with tiny
#                                             CPU runs of target/release binaries, no PyTorch CUDA)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/barlow-gpu-check}
work=$(mktemp -d /tmp/barlow-gpu-work.XXXX)
mkdir -p "$out"
: > "$out/gpu.jsonl"
: > "$out/summary.txt"
trap 'tar -czf "$out/logs.tar.gz" -C "$work" . 2>/dev/null' EXIT
say() { echo "$*" | tee -a "$out/summary.txt"; }
# Every run gets at most its cap and never more than what is left of BUDGET seconds (default
# 500, under the 9 minutes one device call may take); a run that would start with under 20 s
# left is skipped and said so.
start_s=$(date +%s)
budget=${BUDGET:-500}
limit() { # cap -> seconds for the next run, or 0 to skip it
  local left=$(( budget - ($(date +%s) - start_s) ))
  if [ "$left" -lt 20 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
dry=${DRY_RUN:-0}
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
quick=0 feed_only=0
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--feed" ] && feed_only=1

if [ "$dry" = 1 ]; then
  bin=target/release
  [ -x "$bin/trainer" ] || { echo "gpu-check: DRY_RUN needs target/release/{trainer,loader,datasets} (cargo build --release)" >&2; exit 1; }
  device=cpu size=32 batch=4 steps=2 fed_steps=4 proj=64-64
else
  bundle=${BUNDLE:-.gpu}
  bin=$bundle/bin
  device=cuda size=224 batch=256 steps=10 fed_steps=20 proj=8192-8192-8192
  # Run-time libraries: the driver's libcuda.so.1, and libcublas/libnvrtc .so.13 and cuDNN's
  # libcudnn.so.9 (+ its sub-libraries) from a CUDA install or the Python environment's wheels.
  dirs=$(python3 -c 'import glob,site,sys
paths=site.getsitepackages()+[site.getusersitepackages()]+sys.path
print(":".join(sorted({d for p in paths for d in glob.glob(p+"/nvidia/*/lib")})))' 2>/dev/null)
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
    [ -d "$d" ] && dirs="$dirs:$d"
  done
  export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # Headers for the run-time (NVRTC) kernels, at the absolute paths baked into the binary;
  # CUDA 13 keeps <cuda/std/...> under include/cccl, so its folders are linked in at the top.
  tar -xzPf "$bundle/cuda-include.tar.gz"
  inc=$(head -n1 "$bundle/paths.txt")
  for e in "$inc"/cccl/*; do [ -e "$inc/$(basename "$e")" ] || ln -s "$e" "$inc/"; done
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1
  for l in libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13 libcudnn.so.9; do
    found=$(for d in ${LD_LIBRARY_PATH//:/ }; do [ -e "$d/$l" ] && echo "$d/$l" && break; done)
    echo "$l: ${found:-$(ldconfig -p 2>/dev/null | grep -m1 "$l" | awk '{print $NF}')}"
  done
  python3 -c 'import torch; print("torch", torch.__version__, "cuDNN", torch.backends.cudnn.version())' 2>&1
} > "$out/env.txt"
say "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -n1)"
say "$(grep -E '^(libcudnn|torch)' "$out/env.txt" | tr '\n' ';')"

# 1. One step on CPU vs CUDA from the same weights and inputs.
if [ "$dry" != 1 ] && [ "$feed_only" != 1 ]; then
  for spec in "tiny 32 64" "resnet18 16 64" "resnet50 8 64" "resnet50 8 64 --tf32"; do
    set -- $spec
    tag="$1$( [ -n "${4:-}" ] && echo _tf32 )"
    t=$(limit 90); [ "$t" = 0 ] && { say "check-devices $tag: skipped (time budget)"; continue; }
    timeout "$t" "$bin/trainer" check-devices --arch "$1" --batch-size "$2" --image-size "$3" ${4:-} \
      > "$work/check_$tag.json" 2> "$work/check_$tag.err"
    rc=$?
    say "check-devices $tag (exit $rc): $(tail -n1 "$work/check_$tag.err")"
    sed 's/^{/{"impl":"check-devices",/' "$work/check_$tag.json" >> "$out/gpu.jsonl"
  done
fi

# 2. Compute-only step time and memory, barlow and PyTorch side by side.
archs="resnet18 resnet50"
[ "$quick" = 1 ] && archs=resnet18
[ "$dry" = 1 ] && archs="tiny resnet18"
[ "$feed_only" = 1 ] && archs=""
for arch in $archs; do
  for prec in tf32 fp32; do
    flag=$([ "$prec" = fp32 ] && echo --no-tf32)
    t=$(limit 120); [ "$t" = 0 ] && { say "barlow $arch $prec: skipped (time budget)"; continue; }
    timeout "$t" "$bin/trainer" bench --device "$device" --arch "$arch" --projector "$proj" \
      --batch-size "$batch" --image-size "$size" --steps "$steps" $flag \
      > "$work/barlow_${arch}_$prec.json" 2> "$work/barlow_${arch}_$prec.err"
    rc=$?
    if [ $rc = 0 ]; then
      [ "$dry" = 1 ] && sed -i "s/\"precision\":\"fp32\"/\"precision\":\"$prec\"/" "$work/barlow_${arch}_$prec.json"
      cat "$work/barlow_${arch}_$prec.json" >> "$out/gpu.jsonl"
    else
      printf '{"impl":"barlow","arch":"%s","batch":%s,"precision":"%s","device":"%s","error":"exit %s: %s"}\n' \
        "$arch" "$batch" "$prec" "$device" "$rc" "$(tail -n1 "$work/barlow_${arch}_$prec.err" | tr -d '"\\')" >> "$out/gpu.jsonl"
    fi
    say "barlow $arch b$batch $prec (exit $rc): $(tail -n1 "$work/barlow_${arch}_$prec.json" 2>/dev/null | cut -c1-220)"
    t=$(limit 120)
    if [ "$dry" != 1 ] && [ "$t" != 0 ]; then
      timeout "$t" python3 scripts/gpu/torch_bt.py --arch "$arch" --projector "$proj" --batch "$batch" \
        --size "$size" --precision "$prec" --steps "$steps" \
        > "$work/torch_${arch}_$prec.json" 2> "$work/torch_${arch}_$prec.err"
      rc=$?
      [ $rc = 0 ] && cat "$work/torch_${arch}_$prec.json" >> "$out/gpu.jsonl"
      say "pytorch $arch b$batch $prec (exit $rc): $(tail -n1 "$work/torch_${arch}_$prec.json" 2>/dev/null)"
    fi
  done
done

# 3. Fed by the real loader: is training input-bound?
fed_t=$(limit 200)
[ "$fed_t" = 0 ] && say "fed run: skipped (time budget)"
if [ "$quick" != 1 ] && [ "$feed_only" != 1 ] && [ "$fed_t" != 0 ]; then
  demo=/tmp/barlow-demo
  [ -d "$demo" ] || "$bin/datasets" demo --out "$demo" > /dev/null
  arch=$([ "$dry" = 1 ] && echo tiny || echo resnet50)
  ring="barlow-gpu-fed-$$"
  workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
  timeout "$fed_t" "$bin/loader" --dir "$demo" --shm "$ring" --steps "$fed_steps" --batch-size "$batch" \
    --image-size "$size" --workers "$workers" 2> "$work/fed_loader.err" &
  lp=$!
  timeout "$fed_t" "$bin/trainer" --shm "$ring" --wait 60 --device "$device" --arch "$arch" --projector "$proj" \
    --steps "$fed_steps" --print-freq 1 --no-progress > "$work/fed.jsonl" 2> "$work/fed_trainer.err"
  rc=$?
  wait $lp
  say "fed $arch b$batch (trainer exit $rc): $(grep 'done:' "$work/fed_trainer.err" | tail -n1)"
  say "fed loader: $(grep 'done:' "$work/fed_loader.err" | tail -n1)"
  python3 - "$work/fed.jsonl" "$arch" "$batch" "$device" "$workers" >> "$out/gpu.jsonl" <<'EOF'
import json, statistics, sys
path, arch, batch, device, workers = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.startswith("{")][2:]  # steady state
if rows:
    wait = sum(r["wait_ms"] for r in rows)
    comp = sum(r["compute_ms"] for r in rows)
    print(json.dumps(dict(impl="barlow-fed", arch=arch, batch=int(batch), precision="tf32", device=device,
                          loader_workers=int(workers), steps=len(rows),
                          ms_per_step=statistics.median(r["wait_ms"] + r["compute_ms"] for r in rows),
                          compute_ms=statistics.median(r["compute_ms"] for r in rows),
                          wait_share=wait / max(wait + comp, 1e-9), peak_mem_gib=None)))
EOF
fi

# 4. PyTorch fed by the official pipeline and by barlow's ring, same step, same corpus.
if [ "$quick" != 1 ]; then
  wheel=$(ls ${bundle:-.gpu}/wheels/barlow-*.whl 2>/dev/null | head -n1)
  if [ "$dry" = 1 ] && [ -z "$wheel" ]; then
    wheel=$(ls target/python/wheels/barlow-*.whl 2>/dev/null | head -n1)
  fi
  if [ -z "$wheel" ]; then
    say "torch feed: skipped (no barlow wheel in the bundle; scripts/build-cuda.sh makes it)"
  else
    python3 -m pip install -q --no-index --no-deps --target "$work/py" "$wheel" > "$work/feed_pip.log" 2>&1 \
      || say "torch feed: installing $wheel failed: $(tail -n1 "$work/feed_pip.log")"
    corpus=/tmp/barlow-demo
    if [ "$dry" = 1 ]; then
      feed_args="--device cpu --arch resnet18 --projector 64-64 --batch 8 --size 64 --steps 3 --warmup 1 --workers 2"
    else
      feed_args="--steps 30 --warmup 5 --workers $(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))"
    fi
    [ -d "$corpus" ] || "$bin/datasets" demo --out "$corpus" > /dev/null
    for feed in official barlow; do
      t=$(limit 180); [ "$t" = 0 ] && { say "torch feed $feed: skipped (time budget)"; continue; }
      PYTHONPATH="$work/py${PYTHONPATH:+:$PYTHONPATH}" timeout "$t" python3 scripts/gpu/torch_feed.py \
        --feed "$feed" --data "$corpus" --loader "$bin/loader" --loader-log "$work/feed_loader.err" $feed_args \
        > "$work/feed_$feed.json" 2> "$work/feed_$feed.err"
      rc=$?
      [ $rc = 0 ] && cat "$work/feed_$feed.json" >> "$out/gpu.jsonl"
      say "torch feed $feed (exit $rc): $(tail -n1 "$work/feed_$feed.json" 2>/dev/null || tail -n1 "$work/feed_$feed.err")"
    done
  fi
fi

say "gpu-check: $(( $(date +%s) - start_s )) s"
# 4. The table (also what BENCHMARKS.md takes).
python3 scripts/gpu/table.py "$out/gpu.jsonl" | tee -a "$out/summary.txt"
