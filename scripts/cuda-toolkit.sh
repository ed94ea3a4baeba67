#!/usr/bin/env bash
# Prepares a CUDA 13.0 *build* toolkit from PyPI's NVIDIA wheels, for building the trainer's `cuda`
# feature on a machine with no GPU and no system CUDA. Prints the environment to export:
#
#   eval "$(scripts/cuda-toolkit.sh)"
#
# Under $BARLOW_CUDA_PREFIX (default ~/.cache/barlow/cuda13) it makes:
#   site/   the wheels (nvcc, headers, libcublas/libnvrtc/libcudart .so.13)
#   root/   a CUDA_ROOT: include/ = the wheel's headers *with CUDA 13's include/cccl merged in at the
#           top* (dfdx compiles some kernels at run time with NVRTC and only passes include/ as a
#           search path; cuda_fp16.h needs <cuda/std/...> from cccl), lib64/ with unversioned .so
#           links and a link-time stub of libcuda.so (the real one comes with the driver), and
#           bin/nvidia-smi answering dfdx's build script with compute capability 9.0 (H100/H200).
# Pinned to CUDA 13.0 so that the PTX it emits loads on a 580-series driver.
set -euo pipefail
prefix=${BARLOW_CUDA_PREFIX:-$HOME/.cache/barlow/cuda13}
site=$prefix/site
root=$prefix/root
cu=$site/nvidia/cu13
if [ ! -x "$cu/bin/nvcc" ]; then
  python3 -m pip install -q --disable-pip-version-check --target "$site" \
    "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88" \
    "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-nvrtc==13.0.88" "nvidia-cublas==13.0.2.14" \
    "nvidia-cuda-cccl==13.0.85" >&2
fi
mkdir -p "$root/lib64" "$root/bin" "$root/include"
for entry in "$cu/include"/* "$cu/include/cccl"/*; do
  ln -sfn "$entry" "$root/include/$(basename "$entry")"
done
for l in cublas cublasLt nvrtc cudart; do ln -sf "$cu/lib/lib$l.so.13" "$root/lib64/lib$l.so"; done
if [ ! -f "$root/lib64/libcuda.so" ]; then
  # Link-time stub: every driver entry point cudarc declares, as an empty function.
  (cd "$(dirname "$0")/.." && cargo fetch --locked >&2)
  cudarc_sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.9.*/src/driver/sys.rs 2>/dev/null | head -n1 || true)
  if [ -z "$cudarc_sys" ]; then
    echo "cuda-toolkit.sh: cudarc 0.9 sources not found after cargo fetch" >&2; exit 1
  fi
  grep -ohE "pub fn cu[A-Za-z0-9_]+" "$cudarc_sys" | awk '{print "void "$3"(void){}"}' | sort -u > "$prefix/libcuda_stub.c"
  gcc -shared -fPIC -o "$root/lib64/libcuda.so" -Wl,-soname,libcuda.so.1 "$prefix/libcuda_stub.c"
fi
printf '#!/bin/sh\necho compute_cap\necho %s\n' "${CUDA_COMPUTE_CAP_DOTTED:-9.0}" > "$root/bin/nvidia-smi"
chmod +x "$root/bin/nvidia-smi"
echo "export CUDA_ROOT=$root"
echo "export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}"
echo "export PATH=$cu/bin:$root/bin:\$PATH"
