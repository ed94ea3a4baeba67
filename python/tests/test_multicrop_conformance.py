"""The multi-crop recipes against their methods' official transforms, each written from the official
repository in reference/: `dino` (facebookresearch/dino `DataAugmentationDINO`: torchvision +
Pillow), `swav` (facebookresearch/swav `MultiCropDataset`: torchvision + OpenCV's blur) and `dinov2`
(facebookresearch/dinov2 `DataAugmentationDINO`: torchvision, its float Gaussian blur).

1. Replay: `loader preview --recipe NAME` writes every view as a PNG with its parameters as JSON;
   each view, replayed from its JSON through the official calls (reference/replay.py) on Pillow's
   decode of the same PNG file, must give the same bytes. Seeds are chosen so that every operation
   (flip, jitter, grayscale, blur, solarize where the recipe has it, the centre-crop fallback) runs
   at least once. The one exception: a view that DINOv2 blurs (torchvision's float32 convolution,
   reproduced operation for operation, but torch's kernel weights come from MKL's `exp`, not
   correctly rounded) may differ by at most TORCHVISION_BLUR_MAX, in at most
   TORCHVISION_BLUR_VIEW_FRACTION of a view's bytes and TORCHVISION_BLUR_FRACTION of all such
   views' bytes together (the bound views/src/blur/torchvision.rs states); every other view of
   every recipe, SwAV's OpenCV-blurred ones included, is byte-exact.
2. Distribution: over many drawn views, the per-role probabilities of the official code (the
   reference's ROLES: blur and solarize per view a / b / local; every view: flip 0.5, jitter 0.8,
   grayscale 0.2) within 4 binomial sigmas, blur and solarize never where the code never does them,
   jitter factors within the code's ranges, the blur's library as the code calls it, and the crops'
   area fraction and aspect distributed as torchvision's RandomResizedCrop.get_params draws them
   for the same image sizes (two-sample Kolmogorov-Smirnov, alpha 1e-4).

Needs torch, torchvision, numpy, Pillow and opencv-python-headless (the torch venv of
scripts/test.sh) and the debug `loader` (BARLOW_BIN)."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, binary

sys.path.insert(0, str(REPO / "reference"))
import dino_official  # noqa: E402
import dinov2_official  # noqa: E402
import replay  # noqa: E402
import swav_official  # noqa: E402

torch = pytest.importorskip("torch")
T = pytest.importorskip("torchvision.transforms")

TAGS = "abcdefghijklmnopqrstuvwxyz"
METHODS = {"dino": dino_official, "swav": swav_official, "dinov2": dinov2_official}
# torchvision's blur (DINOv2): most differing value and share of differing bytes per blurred view.
TORCHVISION_BLUR_MAX = 1
TORCHVISION_BLUR_VIEW_FRACTION = 1e-4
TORCHVISION_BLUR_FRACTION = 1e-5
RATIO = (3 / 4, 4 / 3)
PHOTOS = Path("/usr/share/backgrounds/mate/nature")


# --- inputs -------------------------------------------------------------------------------------
def synthetic(w, h, seed):
    """Textured RGB: a smooth colour field (bicubic-enlarged random grid), fine noise, a few flat
    saturated rectangles (hard edges, hue wrap-around, both sides of solarize's threshold)."""
    r = np.random.default_rng(seed)
    grid = Image.fromarray(r.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB")
    x = np.asarray(grid.resize((w, h), Image.BICUBIC), dtype=np.int16)
    x = x + r.integers(-24, 25, (h, w, 3))
    for _ in range(4):
        x0, y0 = int(r.integers(0, w)), int(r.integers(0, h))
        x[y0:y0 + h // 3, x0:x0 + w // 4] = r.choice([0, 40, 127, 128, 200, 255], 3)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8), "RGB")


def photo_crop(name, w, h, x0, y0):
    if (PHOTOS / name).exists():
        return Image.open(PHOTOS / name).convert("RGB").resize((w * 3, h * 3), Image.LANCZOS).crop(
            (x0, y0, x0 + w, y0 + h))
    return synthetic(w, h, sum(name.encode()))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An ImageNet-style folder of PNGs (lossless: Pillow and barlow decode the same pixels): three
    photo crops (synthetic where Debian's mate-backgrounds is not installed), a wide image (most
    global crops fall back to torchvision's centre crop), a small one (every view enlarged) and
    a grayscale PNG (convert('RGB') against barlow's decode), and one so wide that every global
    crop of every recipe falls back to the centre crop."""
    root = tmp_path_factory.mktemp("multicrop") / "imgs"
    files = {
        "n01/ladybird.png": photo_crop("LadyBird.jpg", 300, 200, 900, 600),
        "n01/flower.png": photo_crop("YellowFlower.jpg", 257, 311, 700, 500),
        "n02/storm.png": photo_crop("Storm.jpg", 500, 375, 600, 300),
        "n02/wide.png": synthetic(400, 120, 7),
        "n02/wider.png": synthetic(600, 60, 10),
        "n03/small.png": synthetic(61, 47, 8),
        "n03/gray.png": synthetic(150, 170, 9).convert("L"),
    }
    for rel, img in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel)
    return root


def preview(root, out, *args):
    """Runs `loader preview`; returns [(source path, [view params...], [view PNG...])]."""
    res = subprocess.run([binary("loader"), "preview", "--dir", str(root), "--out", str(out), *args],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    samples = []
    for line in res.stdout.splitlines():
        m = re.fullmatch(r"(\d+): (.*) \(index (\d+)\)", line.strip())
        if not m:
            continue
        k, name = m.group(1), m.group(2)
        src = next((p for p in (Path(name), root / name) if p.is_file()), None)
        assert src is not None, f"preview named {name!r}, not a file (alone or under {root})"
        params, pngs = [], []
        for tag in TAGS:
            j = out / f"{k}_{tag}.json"
            if not j.exists():
                break
            params.append(json.loads(j.read_text()))
            pngs.append(out / f"{k}_{tag}.png")
        samples.append((src, params, pngs))
    assert samples, f"no samples in the preview's output:\n{res.stdout}"
    return samples


def fallback_crop(width, height):
    """torchvision RandomResizedCrop.get_params' centre crop after 10 failed tries: (x, y, w, h)."""
    in_ratio = width / height
    if in_ratio < min(RATIO):
        w, h = width, int(round(width / min(RATIO)))
    elif in_ratio > max(RATIO):
        w, h = int(round(height * max(RATIO))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


# --- 1. replay, byte for byte ---------------------------------------------------------------------
def replay_runs(method):
    """(seed, extra flags): the default sizes, then other sizes and counts."""
    seeds = 8 if method == "dino" else 5
    return [*((seed, []) for seed in range(seeds)),
            (seeds, ["--image-size", "112", "--local-size", "48", "--local-crops", "3"])]
STAGES = ("flip", "jitter", "grayscale", "blur_sigma", "solarize")
OFF = {"flip": False, "jitter": None, "grayscale": False, "blur_sigma": None, "solarize": False}


def first_differing_stage(src, p, tmp):
    """Diagnosis of a mismatch: `loader augment` and the replay on the parameters cut after each
    stage (crop + resize, flip, jitter, grayscale, blur, solarize; the later ones off); names the
    first stage whose outputs differ, with the size of the difference."""
    img = replay.pil_loader(src)
    for k in range(len(STAGES) + 1):
        cut = dict(p, **{s: OFF[s] for s in STAGES[k:]})
        (tmp / "cut.json").write_text(json.dumps(cut))
        subprocess.run([binary("loader"), "augment", "--image", str(src), "--params", str(tmp / "cut.json"),
                        "--out", str(tmp / "cut.png")], check=True, capture_output=True)
        ours = np.asarray(Image.open(tmp / "cut.png").convert("RGB")).astype(np.int16)
        ref = np.asarray(replay.apply_view(img, cut)).astype(np.int16)
        if ours.shape != ref.shape or not np.array_equal(ours, ref):
            d = np.abs(ours - ref) if ours.shape == ref.shape else None
            stage = "crop+resize" if k == 0 else STAGES[k - 1]
            if d is None:
                return f"first differing stage {stage}: shape {ours.shape} != {ref.shape}"
            y, x = np.argwhere(d.max(axis=2) > 0)[0]
            return (f"first differing stage {stage}: {int((d.max(axis=2) > 0).sum())} pixels, max |diff| {int(d.max())}, "
                    f"first at (x={x}, y={y}) barlow {ours[y, x].tolist()} official {ref[y, x].tolist()}")
    return "every stage matches through `loader augment` (the preview's own output differs)"


def float_blurred(p):
    """Whether the view went through torchvision's float blur (exact only up to the bound)."""
    return p.get("blur_sigma") is not None and (p.get("blur_filter") or {}).get("library") == "torchvision"


def replay_mismatch(src, src_img, p, png, tmp, diagnose, tolerated):
    """None when the replay of `p` equals barlow's PNG (or, for a torchvision-blurred view, is
    within the bound: its differing bytes are appended to `tolerated`), else what differs (and, if
    `diagnose`, the first stage where it starts)."""
    ours = np.asarray(Image.open(png).convert("RGB"))
    ref = np.asarray(replay.apply_view(src_img, p))
    if ref.shape == ours.shape and np.array_equal(ref, ours):
        if float_blurred(p):
            tolerated.append((0, ours.size))
        return None
    if ref.shape != ours.shape:
        return f"shape {ours.shape} != official {ref.shape}"
    d = np.abs(ref.astype(np.int16) - ours)
    if float_blurred(p) and d.max() <= TORCHVISION_BLUR_MAX:
        tolerated.append((int((d > 0).sum()), d.size))
        if (d > 0).mean() <= TORCHVISION_BLUR_VIEW_FRACTION:
            return None
    return (f"{int((d.max(axis=2) > 0).sum())} of {d.shape[0] * d.shape[1]} pixels differ, max {int(d.max())}"
            + (f"; {first_differing_stage(src, p, tmp)}" if diagnose else ""))


@pytest.mark.parametrize("method", METHODS)
def test_views_replay_byte_exact(method, images, tmp_path):
    ref = METHODS[method]
    n_images = sum(1 for _ in images.rglob("*.png"))
    seen = {k: 0 for k in ("flip", "jitter", "grayscale", "blur", "solarize", "fallback", ref.INTERPOLATION)}
    if all(r["solarize_p"] == 0 for r in ref.ROLES.values()):
        del seen["solarize"]
    checked, failures, tolerated = 0, [], []
    runs = [(seed, ["--recipe", method, *flags]) for seed, flags in replay_runs(method)]
    if method == "dino":
        # A recipe file: dino with bilinear local crops (the "interpolation" key of the params).
        cfg = json.loads(subprocess.run([binary("loader"), "recipe", "dino", "--print"], capture_output=True,
                                        text=True, check=True).stdout)
        cfg["views"][2]["interpolation"] = "bilinear"
        (tmp_path / "dino-bilinear.json").write_text(json.dumps(cfg))
        runs.append((9, ["--recipe-config", str(tmp_path / "dino-bilinear.json")]))
        seen["bilinear"] = 0
    for run, (seed, flags) in enumerate(runs):
        out = tmp_path / f"run{run}"
        samples = preview(images, out, "--seed", str(seed), "--count", str(n_images), *flags)
        assert len(samples) == n_images
        local_crops = int(flags[flags.index("--local-crops") + 1]) if "--local-crops" in flags else ref.LOCAL_CROPS_NUMBER
        for src, params, pngs in samples:
            assert len(params) == 2 + local_crops, f"{src}: {len(params)} views"
            img = replay.pil_loader(src)
            for v, (p, png) in enumerate(zip(params, pngs)):
                want = (112 if "--image-size" in flags else 224) if v < 2 else (48 if "--local-size" in flags else 96)
                assert p["size"] == want
                if "--recipe-config" in flags:
                    assert (p.get("interpolation") == "bilinear") == (v >= 2), p
                msg = replay_mismatch(src, img, p, png, tmp_path, len(failures) < 5, tolerated)
                checked += 1
                if msg:
                    failures.append(f"seed {seed} {' '.join(flags)}: {src.name} view {TAGS[v]}: {msg}\n  params {json.dumps(p)}")
                seen["flip"] += p["flip"]
                seen["jitter"] += p["jitter"] is not None
                seen["grayscale"] += p["grayscale"]
                seen["blur"] += p["blur_sigma"] is not None
                if "solarize" in seen:
                    seen["solarize"] += p["solarize"]
                seen[p.get("interpolation") or "bicubic"] = seen.get(p.get("interpolation") or "bicubic", 0) + 1
                c = p["crop"]
                seen["fallback"] += (c["x"], c["y"], c["w"], c["h"]) == fallback_crop(*img.size) and v < 2
    assert not failures, f"{len(failures)} of {checked} views differ from the official replay:\n" + "\n".join(failures[:20])
    missing = [k for k, n in seen.items() if n == 0]
    assert not missing, f"no view exercised {missing} (checked {checked} views: {seen})"
    if tolerated:
        differ, total = map(sum, zip(*tolerated))
        print(f"{method}: torchvision-blurred views: {differ} of {total} bytes differ by 1 ({differ / total:.2e})")
        assert differ <= TORCHVISION_BLUR_FRACTION * total, f"{differ} of {total} torchvision-blurred bytes differ"
    print(f"{method}: checked {checked} views: {seen}")


# --- 2. distribution of the drawn parameters ------------------------------------------------------
def binomial_ok(hits, n, p, sigmas=4.0):
    sd = math.sqrt(n * p * (1 - p))
    return abs(hits - n * p) <= sigmas * sd + 1e-9, f"{hits}/{n} = {hits / n:.3f}, expected {p} +- {sigmas * sd / n:.3f}"


def ks_2samp(a, b):
    """Two-sample Kolmogorov-Smirnov statistic and its critical value at alpha = 1e-4."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    d = np.max(np.abs(np.searchsorted(a, grid, "right") / a.size - np.searchsorted(b, grid, "right") / b.size))
    c = math.sqrt(-math.log(1e-4 / 2) / 2)
    return d, c * math.sqrt((a.size + b.size) / (a.size * b.size))


def official_crops(sizes, scale, per, seed):
    """(area fraction, aspect w/h) of torchvision's RandomResizedCrop.get_params, `per` draws for
    every (width, height) in `sizes`."""
    torch.manual_seed(seed)
    blank = {}
    out = []
    for (w, h) in sizes:
        img = blank.setdefault((w, h), Image.new("RGB", (w, h)))
        for _ in range(per):
            _, _, ch, cw = T.RandomResizedCrop.get_params(img, list(scale), list(RATIO))
            out.append((cw * ch / (w * h), cw / ch))
    return np.array(out)


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """48 small synthetic PNGs of varied sizes and aspects (36 x 36 to 400 x 240, and 3 wide ones)."""
    root = tmp_path_factory.mktemp("multicrop") / "many"
    r = np.random.default_rng(11)
    for k in range(48):
        if k % 16 == 15:
            w, h = int(r.integers(200, 320)), int(r.integers(50, 80))   # wider than 4:3 by far
        else:
            w, h = int(r.integers(36, 401)), int(r.integers(36, 241))
        d = root / f"c{k % 4}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(r.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(d / f"i{k:02}.png")
    return root


@pytest.mark.parametrize("method", METHODS)
def test_parameter_distribution(method, many_images, tmp_path):
    ref = METHODS[method]
    n_local = ref.LOCAL_CROPS_NUMBER
    seeds = 20 if method == "dino" else 12
    views = []   # (view index, params, (width, height)) over the seeds x 48 images
    for seed in range(seeds):
        for src, params, _ in preview(many_images, tmp_path / f"s{seed}", "--recipe", method, "--seed", str(seed),
                                      "--count", "48", "--image-size", "16", "--local-size", "8"):
            size = Image.open(src).size
            assert len(params) == 2 + n_local
            keys = [json.dumps({k: p[k] for k in ("crop", "flip", "jitter", "blur_sigma")}, sort_keys=True)
                    for p in params[2:]]
            assert len(set(keys)) == len(keys), f"{src}: local views share their parameters: {keys}"
            views += [(v, p, size) for v, p in enumerate(params)]
    roles = {"a": [x for x in views if x[0] == 0], "b": [x for x in views if x[0] == 1],
             "local": [x for x in views if x[0] >= 2]}
    bad = []

    def check(name, ok_msg):
        ok, msg = ok_msg
        if not ok:
            bad.append(f"{name}: {msg}")

    for role, vs in roles.items():
        want = ref.ROLES[role]
        n = len(vs)
        ps = [p for _, p, _ in vs]
        check(f"{role} blur", binomial_ok(sum(p["blur_sigma"] is not None for p in ps), n, want["blur_p"]))
        check(f"{role} solarize", binomial_ok(sum(p["solarize"] for p in ps), n, want["solarize_p"]))
        check(f"{role} flip", binomial_ok(sum(p["flip"] for p in ps), n, 0.5))
        check(f"{role} jitter", binomial_ok(sum(p["jitter"] is not None for p in ps), n, 0.8))
        check(f"{role} grayscale", binomial_ok(sum(p["grayscale"] for p in ps), n, 0.2))
        blurred = [p for p in ps if p["blur_sigma"] is not None]
        if want["blur_p"] == 1.0:
            assert len(blurred) == n, f"view {role} must always be blurred (p = 1.0)"
        if want["blur_p"] == 0.0:
            assert not blurred, f"view {role} must never be blurred ({method}'s code never blurs it)"
        if want["solarize_p"] == 0.0:
            assert not any(p["solarize"] for p in ps), f"solarize on view {role}: {method} never solarizes it"
        for p in ps:
            assert (p.get("interpolation") or "bicubic") == ref.INTERPOLATION, p
            assert (p.get("blur_filter") or {"library": "pillow"}) == ref.BLUR_FILTER, p
        if blurred:
            sig = np.array([p["blur_sigma"] for p in blurred])
            lo, hi = ref.BLUR_SIGMA
            assert sig.min() >= lo and sig.max() <= hi, (role, sig.min(), sig.max())
            sd = (hi - lo) / math.sqrt(12)
            check(f"{role} blur sigma mean", (abs(sig.mean() - (lo + hi) / 2) <= 4 * sd / math.sqrt(sig.size),
                                              f"{sig.mean():.3f} over {sig.size}, expected {(lo + hi) / 2}"))
        for p in ps:
            j = p["jitter"]
            if j is not None:
                assert sorted(j["order"]) == ["brightness", "contrast", "hue", "saturation"], j
                for k, (lo, hi) in ref.JITTER.items():
                    assert lo <= j[k] <= hi, (k, j)
        if role != "a":
            continue
        # The factors fill their ranges (the code draws them uniformly).
        jit = [p["jitter"] for p in ps if p["jitter"] is not None]
        for k, (lo, hi) in ref.JITTER.items():
            vals = np.array([j[k] for j in jit])
            check(f"jitter {k} spread", (vals.min() < lo + 0.1 * (hi - lo) and vals.max() > hi - 0.1 * (hi - lo),
                                         f"[{vals.min():.3f}, {vals.max():.3f}] does not fill ({lo}, {hi})"))
    for role, vs in roles.items():
        n = len(vs)
        # Crops: inside the image, area and aspect in the recipe's ranges up to integer rounding
        # (or torchvision's centre-crop fallback), and distributed as get_params draws them.
        scale = ref.ROLES[role]["scale"]
        fallbacks = 0
        for _, p, (w, h) in vs:
            c = p["crop"]
            assert c["x"] >= 0 and c["y"] >= 0 and c["x"] + c["w"] <= w and c["y"] + c["h"] <= h, (c, w, h)
            if (c["x"], c["y"], c["w"], c["h"]) == fallback_crop(w, h):
                fallbacks += 1
                continue
            lo = (c["w"] - 0.5) * (c["h"] - 0.5) / (w * h)   # the real-valued crop before rounding
            hi = (c["w"] + 0.5) * (c["h"] + 0.5) / (w * h)
            assert hi >= scale[0] and lo <= scale[1], f"{role}: crop {c} of {w}x{h}: area {c['w'] * c['h'] / (w * h):.4f} outside {scale}"
            assert (c["w"] + 0.5) / (c["h"] - 0.5) >= RATIO[0] and (c["w"] - 0.5) / (c["h"] + 0.5) <= RATIO[1], (role, c)
        if role == "local":
            assert fallbacks <= 0.01 * n, f"{fallbacks} local crops fell back to the centre crop"
        ours = np.array([(p["crop"]["w"] * p["crop"]["h"] / (w * h), p["crop"]["w"] / p["crop"]["h"]) for _, p, (w, h) in vs])
        want = official_crops([s for _, _, s in vs], scale, 4, seed=len(role))
        for k, what in enumerate(("area fraction", "aspect")):
            d, crit = ks_2samp(ours[:, k], want[:, k])
            check(f"{role} crop {what} (KS vs torchvision get_params)", (d <= crit, f"D = {d:.4f} > {crit:.4f} (n = {n})"))
    assert not bad, f"{method}: parameters off the official distribution:\n" + "\n".join(bad)
