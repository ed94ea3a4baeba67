"""Ratios of barlow's loader to its peers from a bench.py results file (per CPU-second medians,
the steady number on a shared machine), and the loader's scaling from 1 to 2 workers."""
import json
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["peer"], r.get("workers", r.get("threads")))].append(r)


def med(peer, w, key):
    rs = [r[key] for (p, ww), v in rows.items() if p.startswith(peer) and ww == w for r in v]
    return statistics.median(rs) if rs else float("nan")


print("| workers | barlow pairs/CPU-s | Pillow official | DALI CPU | barlow / Pillow | barlow / DALI |")
print("|---|---|---|---|---|---|")
for w in (1, 2):
    b, p, d = med("barlow", w, "pairs_per_cpu_s"), med("pillow", w, "pairs_per_cpu_s"), med("dali-full", w, "pairs_per_cpu_s")
    print(f"| {w} | {b:.0f} | {p:.0f} | {d:.0f} | {b / p:.1f}x | {b / d:.1f}x |")
s1, s2 = med("barlow", 1, "pairs_per_s"), med("barlow", 2, "pairs_per_s")
print(f"\nbarlow pairs/s: {s1:.0f} with 1 worker, {s2:.0f} with 2 ({s2 / s1:.2f}x)")
