"""Markdown tables from scripts/gpu-check.sh's gpu.jsonl (the rows BENCHMARKS.md takes).

    python3 scripts/gpu/table.py OUT/gpu.jsonl

Speed is PyTorch's ms per step over barlow's at the same precision: 1.0 = as fast, 0.8 = the
issue's bar (barlow at most 1.25x PyTorch's TF32 step time).
"""
import json
import sys


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    by = {}
    for r in rows:
        by[(r.get("impl"), r.get("arch"), r.get("batch"), r.get("precision"))] = r
    device = next((r.get("device") for r in rows if r.get("impl") == "barlow" and r.get("device")), "?")
    keys = sorted({(r["arch"], r["batch"]) for r in rows if r.get("impl") in ("barlow", "pytorch")})
    if keys:
        print(f"\n### Step time and memory ({device})\n")
        print("| model, batch | precision | barlow ms/step | PyTorch ms/step | speed vs PyTorch | barlow peak GiB | PyTorch peak GiB |")
        print("|---|---|---|---|---|---|---|")
    for arch, batch in keys:
        for prec in ("tf32", "fp32"):
            b = by.get(("barlow", arch, batch, prec), {})
            p = by.get(("pytorch", arch, batch, prec), {})
            bm, pm = b.get("ms_per_step"), p.get("ms_per_step")
            speed = f"{pm / bm:.2f}x" if bm and pm else "-"
            note = f" ({b['error']})" if b.get("error") else ""
            print(f"| {arch}, {batch} | {prec} | {fmt(bm)}{note} | {fmt(pm)} | {speed} | "
                  f"{fmt(b.get('peak_mem_gib'))} | {fmt(p.get('peak_mem_gib'))} |")
    ops = [r for r in rows if r.get("impl") == "barlow" and r.get("ops_ms")]
    if ops:
        kinds = ["conv_fwd", "conv_bwd", "bn_fwd", "bn_bwd", "pool_add_relu", "optimizer", "other"]
        print("\n### Where barlow's device time goes (ms per step, profiled warm-up step)\n")
        print("| model, batch, precision | " + " | ".join(kinds) + " |")
        print("|---" * (len(kinds) + 1) + "|")
        for r in ops:
            print(f"| {r['arch']}, {r['batch']}, {r['precision']} | "
                  + " | ".join(fmt(r["ops_ms"].get(k)) for k in kinds) + " |")
    checks = [r for r in rows if r.get("impl") == "check-devices"]
    if checks:
        print("\n### CPU vs CUDA, one step from the same weights and inputs (`trainer check-devices`)\n")
        print("| arch (batch) | CUDA math | loss rel. err | gradient rel. err (all / worst tensor) | BN running stats | bound |")
        print("|---|---|---|---|---|---|")
        for r in checks:
            print(f"| {r['arch']} ({r['batch']}) | {r['precision']} | {r['loss_rel_err']:.1e} | "
                  f"{r['grad_rel_err']:.1e} / {r['max_grad_rel_err']:.1e} ({r['worst_tensor']}) | "
                  f"{r['running_stats_rel_err']:.1e} | {r['tolerance']:.0e} |")
    for r in rows:
        if r.get("impl") == "barlow-fed":
            print(f"\nFed by the loader ({r['loader_workers']} workers, {r['arch']}, batch {r['batch']}): "
                  f"{fmt(r['ms_per_step'])} ms per step, input wait {100 * r['wait_share']:.1f}% of the time "
                  f"({'input-bound' if r['wait_share'] > 0.2 else 'compute-bound'}).")
    feeds = [r for r in rows if r.get("impl") in ("torch-official-feed", "torch-barlow-feed")]
    if feeds:
        print("\n### The same PyTorch step fed two ways (`scripts/gpu/torch_feed.py`)\n")
        print("| input pipeline | model, batch, size | workers | steps/s | input wait | GPU idle | CPU cores used |")
        print("|---|---|---|---|---|---|---|")
        for r in feeds:
            name = "official (DataLoader + Pillow)" if r["impl"] == "torch-official-feed" else "barlow ring (RingLoader)"
            idle = "-" if r.get("gpu_idle_share") is None else f"{100 * r['gpu_idle_share']:.0f}%"
            print(f"| {name} | {r['arch']}, {r['batch']}, {r['size']} | {r['workers']} | {fmt(r['steps_per_s'], 2)} | "
                  f"{100 * r['input_wait_share']:.0f}% | {idle} | {fmt(r['cpu_cores'])} |")


if __name__ == "__main__":
    main(sys.argv[1])
