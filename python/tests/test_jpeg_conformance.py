"""From the JPEG file, byte for byte: `loader preview --decoder turbo` (libjpeg-turbo, with region
decode: only the union of each sample's crops is decoded) against the official pipeline replayed
on Pillow's own decode of the same JPEG (torchvision's `pil_loader`, reference/replay.py), for
JPEGs of every kind ImageNet holds: baseline and progressive, 4:4:4, 4:2:2 and 4:2:0, grayscale and
CMYK (Adobe), at sizes whose crops often cover a fraction of the image (so region decode decodes
less) and small ones (every view enlarged, the centre-crop fallback). Every view of the Barlow
Twins, MoCo v3 and DINO recipes must be identical (SwAV's and DINOv2's blurs are checked on PNGs by
test_multicrop_conformance.py; their decode is this one). With `--decoder zune` the same views
differ (zune-jpeg is not libjpeg-turbo): asserted too, so that this test cannot pass vacuously.

Needs Pillow and numpy (the torch venv of scripts/test.sh) and the debug `loader` (BARLOW_BIN)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, binary

sys.path.insert(0, str(REPO / "reference"))
import replay  # noqa: E402

TAGS = "abcdefghijklmnopqrstuvwxyz"


def textured(w, h, seed):
    r = np.random.default_rng(seed)
    grid = Image.fromarray(r.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    x = np.asarray(grid.resize((w, h), Image.BICUBIC), dtype=np.int16) + r.integers(-20, 21, (h, w, 3))
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs") / "imgs"
    files = {
        "n01/s444.jpg": (textured(517, 389, 1), dict(quality=90, subsampling=0)),
        "n01/s422.jpg": (textured(640, 427, 2), dict(quality=90, subsampling=1)),
        "n01/s420.jpg": (textured(500, 375, 3), dict(quality=90, subsampling=2)),
        "n02/p420.jpg": (textured(461, 613, 4), dict(quality=85, subsampling=2, progressive=True)),
        "n02/p444.jpg": (textured(333, 250, 5), dict(quality=85, subsampling=0, progressive=True)),
        "n02/gray.jpg": (textured(420, 300, 6).convert("L"), dict(quality=90)),
        "n03/cmyk.jpg": (textured(380, 290, 7).convert("CMYK"), dict(quality=92)),
        "n03/small.jpg": (textured(61, 47, 8), dict(quality=90)),
        "n03/wide.jpg": (textured(700, 90, 9), dict(quality=90)),
    }
    for rel, (img, opts) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel, "JPEG", **opts)
    return root


def preview(root, out, *args):
    res = subprocess.run([binary("loader"), "preview", "--dir", str(root), "--out", str(out), *args],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    samples = []
    for line in res.stdout.splitlines():
        m = re.fullmatch(r"(\d+): (.*) \(index (\d+)\)", line.strip())
        if not m:
            continue
        k, name = m.group(1), m.group(2)
        src = next(p for p in (Path(name), root / name) if p.is_file())
        views = []
        for tag in TAGS:
            j = out / f"{k}_{tag}.json"
            if not j.exists():
                break
            views.append((json.loads(j.read_text()), out / f"{k}_{tag}.png"))
        samples.append((src, views))
    assert samples, res.stdout
    return samples


def differing(samples):
    """(views compared, [(file, view, pixels differing, max)])."""
    n, bad = 0, []
    for src, views in samples:
        img = replay.pil_loader(src)
        for p, png in views:
            ours = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
            ref = np.asarray(replay.apply_view(img, p)).astype(np.int16)
            n += 1
            if ours.shape != ref.shape or not np.array_equal(ours, ref):
                d = np.abs(ours - ref) if ours.shape == ref.shape else np.array([999])
                bad.append((src.name, png.name, int((d > 0).sum()), int(d.max())))
    return n, bad


@pytest.mark.parametrize("recipe", ["barlow-twins", "moco-v3", "dino"])
def test_turbo_views_from_the_jpeg_file_are_the_official_bytes(recipe, jpegs, tmp_path):
    n, bad = 0, []
    for seed in range(3):
        out = tmp_path / f"s{seed}"
        samples = preview(jpegs, out, "--decoder", "turbo", "--recipe", recipe, "--count", "9",
                          "--seed", str(seed))
        assert len(samples) == 9
        k, b = differing(samples)
        n, bad = n + k, bad + b
    print(f"{recipe}: {n} views from JPEG files, {len(bad)} differ")
    assert not bad, f"{len(bad)} of {n} views differ from the official pipeline: {bad[:10]}"


def test_zune_views_from_the_jpeg_file_are_not_exact(jpegs, tmp_path):
    samples = preview(jpegs, tmp_path / "z", "--decoder", "zune", "--count", "9", "--seed", "0")
    n, bad = differing(samples)
    print(f"zune: {len(bad)} of {n} views differ")
    assert bad, "zune-jpeg matched libjpeg-turbo everywhere: is --decoder plumbed through?"
