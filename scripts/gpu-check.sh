#!/usr/bin/env bash
# Runs barlow's GPU checks on a CUDA machine that has a driver and Python but no Rust, from the
# bundle that scripts/build-cuda.sh made on the build machine (default .gpu/). Writes its results
# under $OUT (default /tmp/barlow-gpu-check), five files:
#   summary.txt          the lines that matter, also printed
#   env.txt              nvidia-smi, the libraries found
#   check_devices.jsonl  one training step on CPU vs CUDA (tiny, resnet18, resnet50): loss,
#                        gradient and BatchNorm-statistics relative errors
#   pytorch.jsonl        the same models and batches in PyTorch on the same card (fp32 and tf32)
#   logs.tar.gz          every run's stdout/stderr: the smoke run (tiny) and ResNet-18 / ResNet-50 +
#                        8192-8192-8192 steps fed from the ring by the real loader at 224x224
# Usage: scripts/gpu-check.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${BUNDLE:-.gpu}
out=${OUT:-/tmp/barlow-gpu-check}
work=$(mktemp -d /tmp/barlow-gpu-work.XXXX)
mkdir -p "$out"
trap 'tar -czf "$out/logs.tar.gz" -C "$work" . 2>/dev/null' EXIT
bin=$bundle/bin
say() { echo "$*" | tee -a "$out/summary.txt"; }

# 1. Run-time libraries: the driver's libcuda.so.1, and libcublas/libcublasLt/libnvrtc .so.13 from a
#    CUDA install or the Python environment's nvidia wheels.
dirs=$(python3 -c 'import glob,site,sys
paths=site.getsitepackages()+[site.getusersitepackages()]+sys.path
print(":".join(sorted({d for p in paths for d in glob.glob(p+"/nvidia/*/lib")})))' 2>/dev/null)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && dirs="$dirs:$d"
done
export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
  for l in libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13; do
    found=$(for d in ${LD_LIBRARY_PATH//:/ }; do [ -e "$d/$l" ] && echo "$d/$l" && break; done)
    echo "$l: ${found:-$(ldconfig -p | grep -m1 "$l" | awk '{print $NF}')}"
  done
} > "$out/env.txt" 2>&1
say "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)"

# 2. Headers for dfdx's run-time (NVRTC) kernels, at the absolute paths baked into the binary;
#    CUDA 13 keeps <cuda/std/...> under include/cccl, so its folders are linked in at the top.
tar -xzPf "$bundle/cuda-include.tar.gz"
inc=$(head -n1 "$bundle/paths.txt")
for e in "$inc"/cccl/*; do [ -e "$inc/$(basename "$e")" ] || ln -s "$e" "$inc/"; done

# 3. One step on CPU vs CUDA, from the same weights and inputs.
for spec in "tiny 32 64" "resnet18 16 64" "resnet50 8 64"; do
  set -- $spec
  timeout 150 "$bin/trainer" check-devices --arch "$1" --batch-size "$2" --image-size "$3" \
    > "$work/check_devices_$1.json" 2> "$work/check_devices_$1.err"
  say "check-devices $1 (exit $?): $(tail -n1 "$work/check_devices_$1.err")"
  cat "$work/check_devices_$1.json" >> "$out/check_devices.jsonl"
done

# 4. Training fed from the ring by the real loader on the demo data.
demo=/tmp/barlow-demo
[ -d "$demo" ] || "$bin/datasets" demo --out "$demo" > /dev/null
feed() { # name arch batch size steps [projector]
  local name=$1 arch=$2 batch=$3 size=$4 steps=$5 proj=${6:-8192-8192-8192} ring="barlow-gpu-$1"
  timeout 240 "$bin/loader" --dir "$demo" --shm "$ring" --steps "$steps" --batch-size "$batch" \
    --image-size "$size" --workers "$(( $(nproc) - 2 ))" 2> "$work/${name}_loader.err" &
  local lp=$!
  timeout 240 "$bin/trainer" --shm "$ring" --wait 60 --device cuda --arch "$arch" --projector "$proj" \
    --steps "$steps" --print-freq 1 --no-progress > "$work/$name.jsonl" 2> "$work/${name}_trainer.err"
  local rc=$?
  wait $lp
  say "$name (trainer exit $rc): $(grep 'done:' "$work/${name}_trainer.err" | tail -n1)"
  # steady state: median compute_ms of the steps after the first two
  say "$name steady ms/step: $(python3 -c 'import json,sys,statistics
v=[json.loads(l)["compute_ms"] for l in open(sys.argv[1]) if l.startswith("{")][2:]
w=[json.loads(l)["wait_ms"] for l in open(sys.argv[1]) if l.startswith("{")][2:]
print(f"compute {statistics.median(v):.1f}, wait {statistics.median(w):.1f}" if v else "no steps")' "$work/$name.jsonl" 2>&1)"
  say "$name loader: $(grep 'done:' "$work/${name}_loader.err" | tail -n1)"
}
feed smoke tiny 64 64 30 128-128
[ "${1:-}" = "--quick" ] && exit 0
feed resnet18_b128 resnet18 128 224 12
feed resnet50_b96 resnet50 96 224 12

# 5. The same models and batches in PyTorch on the same card (compute only, random inputs).
for spec in "resnet18 128" "resnet50 96" "resnet50 256"; do
  set -- $spec
  for prec in fp32 tf32; do
    timeout 120 python3 scripts/gpu/torch_bt.py --arch "$1" --batch "$2" --precision "$prec" --steps 10 \
      >> "$out/pytorch.jsonl" 2>> "$work/pytorch.err"
    say "pytorch $1 b$2 $prec: $(tail -n1 "$out/pytorch.jsonl")"
  done
done
