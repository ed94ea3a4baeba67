#!/usr/bin/env bash
# Runs barlow's GPU checks on a CUDA machine that has a driver and Python but no Rust, from the
# bundle that scripts/build-cuda.sh made on the build machine (default .gpu/). Writes every result
# under $OUT (default /tmp/barlow-gpu-check):
#   env.txt             nvidia-smi, the libraries found
#   check_devices.json  one training step on CPU vs CUDA: loss and gradient relative errors
#   smoke.jsonl         loader + trainer --device cuda on the demo data
#   throughput_*.jsonl  trainer steps fed from the ring by the real loader, with input stalls
#   summary.txt         the lines that matter, also printed
# Usage: scripts/gpu-check.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${BUNDLE:-.gpu}
out=${OUT:-/tmp/barlow-gpu-check}
mkdir -p "$out"
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

# 3. One step on CPU vs CUDA.
timeout 120 "$bin/trainer" check-devices --batch-size 32 --image-size 64 > "$out/check_devices.json" 2> "$out/check_devices.err"
say "check-devices (exit $?): $(cat "$out/check_devices.json") $(tail -n1 "$out/check_devices.err")"

# 4. Smoke run on the demo data, then throughput runs fed by the real loader.
demo=/tmp/barlow-demo
[ -d "$demo" ] || "$bin/datasets" demo --out "$demo" > /dev/null
feed() { # name steps batch size workers
  local name=$1 steps=$2 batch=$3 size=$4 workers=$5 ring="barlow-gpu-$1"
  timeout 300 "$bin/loader" --dir "$demo" --shm "$ring" --steps "$steps" --batch-size "$batch" \
    --image-size "$size" --workers "$workers" 2> "$out/${name}_loader.err" &
  local lp=$!
  timeout 300 "$bin/trainer" --shm "$ring" --wait 60 --device cuda --print-freq 10 \
    > "$out/$name.jsonl" 2> "$out/${name}_trainer.err"
  local rc=$?
  wait $lp
  say "$name (trainer exit $rc): $(tail -n1 "$out/${name}_trainer.err")"
  say "$name loader: $(grep 'done:' "$out/${name}_loader.err" | tail -n1)"
}
feed smoke 40 64 64 8
[ "${1:-}" = "--quick" ] && exit 0
feed throughput_tiny224 100 128 224 "$(nproc)"
