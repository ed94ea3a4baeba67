"""Ratios of barlow's loader to its peers from a bench.py results file (per CPU-second medians,
the steady number on a shared machine), and the loader's scaling from 1 to 2 workers.

Peers: `barlow` (loader bench --dir), `barlow-pack` (loader bench --pack), `barlow@LEVEL`
(loader bench --dir with BARLOW_SIMD=LEVEL), `pillow...` (the official pipeline), `dali-full...`
(DALI CPU, full decode)."""
import json
import statistics
import sys
from collections import defaultdict


def decoders_table(path):
    """`--decoders FILE`: the loader's decoders (the JSON's `decoder`: zune, turbo (full),
    turbo (region)) against Pillow's official pipeline, per worker count: medians and ranges of
    pairs per CPU-second and per second, the decode stage's share, and the ratios."""
    runs = defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        w = r.get("workers", r.get("threads"))
        key = r.get("decoder") if r["peer"].startswith("barlow") else ("pillow" if r["peer"].startswith("pillow") else None)
        if key:
            runs[(key, w)].append(r)
    print("| workers | pipeline | pairs/CPU-s (median) | range | pairs/s (median) | decode ms/pair | runs (others busy during) | / Pillow per CPU-s |")
    print("|---|---|---|---|---|---|---|---|")
    for w in sorted({w for (_, w) in runs}):
        pillow = [r["pairs_per_cpu_s"] for r in runs.get(("pillow", w), [])]
        p = statistics.median(pillow) if pillow else float("nan")
        for key in ["pillow", "zune", "turbo (full)", "turbo (region)"]:
            rs = runs.get((key, w), [])
            if not rs:
                continue
            v = [r["pairs_per_cpu_s"] for r in rs]
            ps = [r.get("pairs_per_s", float("nan")) for r in rs]
            dec = [s["ms_per_pair"] for r in rs for s in r.get("stages", []) if s.get("stage") == "decode"]
            busy = ", ".join(f"{r.get('others_busy_during', float('nan')):.2f}" for r in rs)
            m = statistics.median(v)
            name = "Pillow official" if key == "pillow" else f"barlow, {key}"
            print(f"| {w} | {name} | {m:.0f} | {min(v):.0f}-{max(v):.0f} | {statistics.median(ps):.0f} | "
                  f"{statistics.median(dec) if dec else float('nan'):.2f} | {len(v)} ({busy}) | {m / p:.1f}x |")


if len(sys.argv) > 2 and sys.argv[1] == "--decoders":
    decoders_table(sys.argv[2])
    sys.exit(0)

rows = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["peer"], r.get("workers", r.get("threads")))].append(r)


def vals(peer, w, key):
    exact = peer.startswith("barlow")
    return [r[key] for (p, ww), v in rows.items()
            if (p == peer if exact else p.startswith(peer)) and ww == w for r in v if key in r]


def med(peer, w, key):
    v = vals(peer, w, key)
    return statistics.median(v) if v else float("nan")


print("| workers | barlow pairs/CPU-s | barlow --pack | Pillow official | DALI CPU | barlow / Pillow | --pack / Pillow | barlow / DALI |")
print("|---|---|---|---|---|---|---|---|")
workers = sorted({w for (_, w) in rows})
for w in workers:
    b, k = med("barlow", w, "pairs_per_cpu_s"), med("barlow-pack", w, "pairs_per_cpu_s")
    p, d = med("pillow", w, "pairs_per_cpu_s"), med("dali-full", w, "pairs_per_cpu_s")
    print(f"| {w} | {b:.0f} | {k:.0f} | {p:.0f} | {d:.0f} | {b / p:.1f}x | {k / p:.1f}x | {b / d:.1f}x |")
levels = sorted({p for (p, _) in rows if p.startswith("barlow@")},
                key=lambda p: ["scalar", "avx2", "avx512bw", "avx512vbmi"].index(p[7:]) if p[7:] in
                ["scalar", "avx2", "avx512bw", "avx512vbmi"] else 9)
if levels:
    print("\n| SIMD level | W | barlow pairs/CPU-s (median) | range | runs | Pillow pairs/CPU-s | barlow / Pillow |")
    print("|---|---|---|---|---|---|---|")
    for peer in levels:
        for w in workers:
            v = vals(peer, w, "pairs_per_cpu_s")
            if not v:
                continue
            p = med("pillow", w, "pairs_per_cpu_s")
            m = statistics.median(v)
            print(f"| {peer[7:]} | {w} | {m:.0f} | {min(v):.0f}-{max(v):.0f} | {len(v)} | {p:.0f} | {m / p:.1f}x |")
if 2 not in workers:
    sys.exit(0)
print("\n| peer | pairs/s W=1 | pairs/s W=2 | W2/W1 | busy cores W=2 | runs |")
print("|---|---|---|---|---|---|")
for peer in ("barlow", "barlow-pack", "pillow", "dali-full"):
    s1, s2 = med(peer, 1, "pairs_per_s"), med(peer, 2, "pairs_per_s")
    c2 = med(peer, 2, "cpu_cores_busy")
    n = len(vals(peer, 1, "pairs_per_s")) + len(vals(peer, 2, "pairs_per_s"))
    print(f"| {peer} | {s1:.0f} | {s2:.0f} | {s2 / s1:.2f}x | {c2:.2f} | {n} |")
rss = [r["peak_rss_bytes"] for v in rows.values() for r in v if "peak_rss_bytes" in r]
if rss:
    print(f"\nbarlow peak RSS: {max(rss) / 2**20:.0f} MiB max over runs (ring {rows and max(r.get('ring_bytes', 0) for v in rows.values() for r in v) / 2**20:.0f} MiB)")
