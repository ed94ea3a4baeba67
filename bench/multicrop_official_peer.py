#!/usr/bin/env python3
"""Peer: a multi-crop method's official input pipeline, timed like the peers of
../shared/peers/bench.py: torchvision ImageFolder (PIL `convert('RGB')`) with the method's transform
(2 global 224x224 views + K local 96x96 views, random draws) in a torch DataLoader(batch_size=64,
shuffle=True, num_workers=W, drop_last=True), as the official training scripts build it (pin_memory
off: no GPU here). The transforms, written from the official repositories, are in reference/:
  dino    facebookresearch/dino main_dino.py `DataAugmentationDINO` (dino_official.py), K = 8
  swav    facebookresearch/swav `MultiCropDataset`'s transforms (swav_official.py; OpenCV's blur), K = 6
  dinov2  facebookresearch/dinov2 `DataAugmentationDINO` (dinov2_official.py; torchvision's blur), K = 8

    python bench/multicrop_official_peer.py ROOT -W 1 [--method dino] [--local-crops K]

Needs torch + torchvision (the torch venv, ~/.cache/barlow/torch-venv). Prints one JSON line:
images (samples of 2 + K views) per second and per CPU-second (main process + workers, from
/proc), counted after the first W batches (warm-up) of one shuffled pass. `pairs_per_s` and
`pairs_per_cpu_s` repeat the image rates under the names bench.py reads (a "pair" here is one
image's full set of views, as in `loader bench --json` for a multi-view recipe).

    python bench/multicrop_official_peer.py --tag NAME -- CMD ...

runs CMD (e.g. `loader bench ... --json`) and reprints its last JSON line with "peer" set to NAME
and "cmd" added, so that bench.py's results keep variants of one program apart.

    python bench/multicrop_official_peer.py --table METHOD RESULTS.jsonl   # medians, ratio, local-crop costs
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL_CROPS = {"dino": 8, "swav": 6, "dinov2": 8}   # each official default (swav: the paper's scripts)


def cpu_seconds(pids):
    """user + system CPU seconds used so far by these processes (Linux /proc)."""
    tot = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tot += int(fields[11]) + int(fields[12])
    return tot / os.sysconf("SC_CLK_TCK")


def tagged(tag, cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode or not lines:
        sys.stderr.write(p.stderr)
        return p.returncode or 1
    r = json.loads(lines[-1])
    r["program"], r["peer"], r["cmd"] = r.get("peer"), tag, " ".join(cmd)
    print(json.dumps(r))
    return 0


def table(method, path):
    """Medians per peer and worker count from a bench.py results file, the ratio barlow / official,
    and the cost of the local crops as a share of a Barlow Twins pair's CPU time."""
    import statistics
    rows = {}
    for line in open(path):
        r = json.loads(line)
        rows.setdefault((r["workers"], r["peer"]), []).append(r)
    med = {k: statistics.median(r["pairs_per_cpu_s"] for r in v) for k, v in rows.items()}
    print("| W | peer | runs | images per CPU-second, median | range | images/s, median | cores busy | others busy during, median |")
    print("|---|---|---|---|---|---|---|---|")
    for (w, peer), v in sorted(rows.items()):
        c = [r["pairs_per_cpu_s"] for r in v]
        print(f"| {w} | {peer} | {len(v)} | {med[(w, peer)]:.1f} | {min(c):.1f}-{max(c):.1f} "
              f"| {statistics.median(r['pairs_per_s'] for r in v):.1f} | {statistics.median(r['cpu_cores_busy'] for r in v):.2f} "
              f"| {statistics.median(r.get('others_busy_during', float('nan')) for r in v):.2f} |")
    k = LOCAL_CROPS[method]
    full, none = f"barlow-{method}", f"barlow-{method}-k0"
    for w in sorted({w for w, _ in rows}):
        m = lambda p: med.get((w, p), float("nan"))
        official = f"{method}-official-k{k}"
        print(f"\nW={w}: barlow {method} / official {method} pipeline, images per CPU-second: "
              f"{m(full):.1f} / {m(official):.1f} = {m(full) / m(official):.2f}x")
        bt = 1 / m("barlow-bt")
        print("CPU time per image in barlow, as a share of a Barlow Twins pair's (barlow-twins recipe, 2 x 224):")
        for peer, what in ((none, f"{method}, 2 globals, no locals"), (f"barlow-{method}-k2", f"{method}, 2 globals + 2 locals"),
                           (full, f"{method}, 2 globals + {k} locals")):
            print(f"  {what}: {1 / m(peer) / bt:.2f}")
        per_local = (1 / m(full) - 1 / m(none)) / k
        print(f"  one 96x96 local view (k{k} - k0, / {k}): {per_local / bt:.3f} of a pair ({per_local * 1e3:.3f} ms of CPU)")
        print(f"  the {k} locals' share of a {method} image's time: {k * per_local / (1 / m(full)):.2f}")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--table":
        return table(sys.argv[2], sys.argv[3])
    if "--tag" in sys.argv:
        k = sys.argv.index("--tag")
        sep = sys.argv.index("--")
        return tagged(sys.argv[k + 1], sys.argv[sep + 1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--workers", "-W", type=int, default=1)
    ap.add_argument("--batch", "-B", type=int, default=64, help="images per batch (batch_size_per_gpu)")
    ap.add_argument("--method", choices=sorted(LOCAL_CROPS), default="dino")
    ap.add_argument("--local-crops", type=int, help="local crops per image (the method's default: "
                    + ", ".join(f"{m} {k}" for m, k in LOCAL_CROPS.items()) + ")")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import torch
    from torchvision import datasets
    sys.path.insert(0, os.path.join(HERE, "..", "reference"))
    from replay import pil_loader

    k = LOCAL_CROPS[a.method] if a.local_crops is None else a.local_crops
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)   # the main process only receives batches
    if a.method == "dino":
        from dino_official import DataAugmentationDINO
        transform = DataAugmentationDINO(local_crops_number=k)
    elif a.method == "dinov2":
        from dinov2_official import DataAugmentationDINO
        transform = DataAugmentationDINO(local_crops_number=k)
    else:
        import swav_official
        transform = swav_official.MultiCropTransform(nmb_crops=(2, k))
    dataset = datasets.ImageFolder(a.root, transform=transform, loader=pil_loader)
    loader = torch.utils.data.DataLoader(dataset, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                         pin_memory=False, drop_last=True)
    warm = max(a.workers, 1)
    assert len(loader) > 2 * warm, "corpus too small for this batch size"
    t_start = time.perf_counter()
    got = n_meas = 0
    t0 = c0 = t1 = cpu = pids = None
    views = None
    it = iter(loader)   # one shuffled pass
    for images, _labels in it:
        got += 1
        views = len(images)
        if got == warm:
            pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
            t0, c0 = time.perf_counter(), cpu_seconds(pids)
        elif got > warm:
            n_meas += images[0].shape[0]
        if got == len(loader):   # before the iterator ends and its workers exit
            t1, cpu = time.perf_counter(), cpu_seconds(pids) - c0
    rate, per_cpu = n_meas / (t1 - t0), n_meas / cpu
    print(json.dumps({"peer": f"{a.method}-official-k{k}", "workers": a.workers, "batch": a.batch,
                      "views": views, "local_crops": k, "images_measured": n_meas,
                      "seconds": round(t1 - t0, 3), "images_per_s": round(rate, 1),
                      "images_per_cpu_s": round(per_cpu, 1), "pairs_per_s": round(rate, 1),
                      "pairs_per_cpu_s": round(per_cpu, 1), "cpu_cores_busy": round(cpu / (t1 - t0), 2),
                      "load1": round(os.getloadavg()[0], 2), "warmup_s": round(t0 - t_start, 3),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    sys.exit(main())
