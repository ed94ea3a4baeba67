"""The same PyTorch Barlow Twins step on one GPU, fed two ways, side by side (issue 14):

  official  torchvision ImageFolder + main.py's two-view Transform (Pillow), DataLoader with
            --workers processes, pinned memory, batches moved with non_blocking=True;
  barlow    barlow's `loader` (--workers threads) writing into a ring, read with
            barlow.torch.RingLoader (u8 across PCIe, normalised on the GPU).

The model, loss and LARS are reference/official_bt.py's (main.py's), at --size x --size. Each
measured step takes the next batch, runs forward/backward/LARS and waits for the loss, so
per step: input wait (host time blocked on the next batch) and step time. Prints one JSON line:
{"impl": "torch-official-feed" | "torch-barlow-feed", "arch", "batch", "size", "precision",
"workers", "steps", "steps_per_s", "ms_per_step" (median), "input_wait_share" (input wait /
wall), "gpu_idle_share" (1 - mean nvidia-smi utilisation over the measured steps, null if it
cannot be sampled), "cpu_cores" (CPU seconds of this process and all its descendants, the
DataLoader workers or the loader, per wall second), "device"}.

  python3 scripts/gpu/torch_feed.py --feed official --data /tmp/corpus --workers 15
  python3 scripts/gpu/torch_feed.py --feed barlow --data /tmp/corpus --workers 15 --loader .gpu/bin/loader
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
from official_bt import BarlowTwins, official_lars, official_transform  # noqa: E402


def descendants_cpu_seconds(root=None):
    """utime + stime of `root` (default: this process) and every live descendant, from /proc."""
    root = root or os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                stats[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
            except (OSError, IndexError, ValueError):
                pass
    children = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


class GpuUtilisation:
    """Samples nvidia-smi's utilisation.gpu every 100 ms while running."""

    def __init__(self, device):
        self.samples, self.proc, self.on = [], None, False
        if device.type != "cuda":
            return
        index = device.index
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if self.on and line.strip().isdigit():
                self.samples.append(int(line))

    def idle_share(self):
        if self.proc is None:
            return None
        self.proc.terminate()
        return None if not self.samples else 1 - statistics.mean(self.samples) / 100


def official_batches(args, device, total_steps):
    """main.py's input: ImageFolder + Transform, DataLoader with pinned memory. One sampler pass
    covers every step (permutations of the folder back to back), so a small corpus has no epoch
    boundaries where the workers drain, as an ImageNet epoch of 5000 steps hardly has."""
    from torchvision.datasets import ImageFolder
    dataset = ImageFolder(args.data, transform=official_transform(args.size))
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=total_steps * args.batch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, sampler=sampler, drop_last=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda")
    for (y1, y2), _ in loader:
        yield y1.to(device, non_blocking=True), y2.to(device, non_blocking=True)


def barlow_batches(args, device, total_steps):
    from barlow.torch import RingLoader
    ring = f"barlow-torch-feed-{os.getpid()}"
    proc = subprocess.Popen([args.loader, "--dir", args.data, "--shm", ring, "--batch-size", str(args.batch),
                             "--image-size", str(args.size), "--workers", str(args.workers),
                             "--steps", str(total_steps)], stderr=open(args.loader_log, "w"))
    try:
        loader = RingLoader(ring, device=device, wait=60)
        for x_a, x_b, _ in loader:
            yield x_a, x_b
        print(f"torch_feed.py: {loader.stats()['verdict']}", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feed", choices=["official", "barlow"], required=True)
    ap.add_argument("--data", required=True, help="ImageNet-style folder of JPEGs")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--projector", default="8192-8192-8192")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=15, help="DataLoader processes or loader threads")
    ap.add_argument("--steps", type=int, default=30, help="measured steps")
    ap.add_argument("--warmup", type=int, default=5, help="steps before measuring")
    ap.add_argument("--precision", choices=["fp32", "tf32"], default="tf32")
    ap.add_argument("--loader", default="target/release/loader", help="the loader binary (--feed barlow)")
    ap.add_argument("--loader-log", default="/tmp/torch_feed_loader.err")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu to try the plumbing on a machine without a GPU")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda", torch.cuda.current_device()) if a.device == "cuda" else torch.device("cpu")
    model = BarlowTwins(a.arch, a.projector).to(device)
    opt = official_lars(model)
    for g, lr in zip(opt.param_groups, (0.2, 0.0048)):
        g["lr"] = lr * a.batch / 256
    total = a.warmup + a.steps
    batches = official_batches(a, device, total) if a.feed == "official" else barlow_batches(a, device, total)
    gpu = GpuUtilisation(device)
    waits, times = [], []
    for i in range(total):
        if i == a.warmup:
            gpu.on, cpu0, wall0 = True, descendants_cpu_seconds(), time.perf_counter()
        t0 = time.perf_counter()
        y1, y2 = next(batches)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(y1, y2)
        loss.backward()
        opt.step()
        loss = float(loss.detach())  # waits for the step
        if i >= a.warmup:
            waits.append(t1 - t0)
            times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    cpu = descendants_cpu_seconds() - cpu0
    out = {
        "impl": f"torch-{a.feed}-feed", "arch": a.arch, "batch": a.batch, "size": a.size, "precision": a.precision,
        "workers": a.workers, "steps": a.steps, "steps_per_s": a.steps / wall,
        "ms_per_step": statistics.median(times) * 1e3, "input_wait_share": sum(waits) / wall,
        "gpu_idle_share": gpu.idle_share(), "cpu_cores": cpu / wall, "loss": loss,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    print(json.dumps(out), flush=True)
    batches.close()
    os._exit(0)  # DataLoader workers and their pinned-memory thread need no orderly goodbye


if __name__ == "__main__":
    main()
