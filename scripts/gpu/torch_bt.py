"""Barlow Twins training steps in PyTorch, for timing beside barlow's dfdx trainer on the same card.

The model and loss follow facebookresearch/barlowtwins main.py: torchvision ResNet (fc removed,
zero_init_residual=True), projector Linear(no bias)-BN-ReLU ... Linear(no bias), BatchNorm1d
(affine=False) on each embedding, C = bn(z1)^T bn(z2) / N, on-diagonal (1 - C_ii)^2 plus lambda
times the off-diagonal squares. The optimizer is the official LARS. Inputs are random normalised
tensors already on the GPU, so this measures compute alone.

Prints one JSON line in scripts/gpu-check.sh's format: {"impl": "pytorch", "arch", "projector",
"batch", "size", "precision", "device", "steps", "ms_per_step" (median), "min_ms", "peak_mem_gib"
(torch.cuda.max_memory_allocated), "loss"}.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
from official_bt import BarlowTwins, official_lars  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--projector", default="8192-8192-8192")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "tf32"], default="fp32",
                    help="fp32: TF32 off everywhere (what dfdx's f32 does); tf32: PyTorch's defaults")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model = BarlowTwins(a.arch, a.projector).to(dev)
    opt = official_lars(model)
    for g, lr in zip(opt.param_groups, (0.2, 0.0048)):
        g["lr"] = lr * a.batch / 256
    y1 = torch.randn(a.batch, 3, a.size, a.size, device=dev)
    y2 = torch.randn(a.batch, 3, a.size, a.size, device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(y1, y2)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        loss = float(step())  # one wait for the device per step, as barlow's trainer
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(json.dumps(dict(impl="pytorch", arch=a.arch, projector=a.projector, batch=a.batch, size=a.size,
                          precision=a.precision, device=torch.cuda.get_device_name(), steps=len(times),
                          ms_per_step=times[len(times) // 2], min_ms=times[0], loss=loss,
                          peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)))


if __name__ == "__main__":
    main()
