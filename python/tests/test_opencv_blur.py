"""barlow's OpenCV Gaussian blur (views/src/blur/opencv.rs, SwAV's blur) against opencv-python-headless's
own `cv2.GaussianBlur(img, (k, k), sigma)` (default border, BORDER_REFLECT_101), byte for byte,
through `loader augment` (a view that only blurs: the full image as the crop, at its own size), at
every SIMD level the CPU has. Sizes from 1 pixel (kernels far wider than the image) to 224, kernel
sizes 23 (SwAV's) and others, sigmas over SwAV's range and its edges. (The binary64 kernel itself,
OpenCV's softfloat exp and sums, is checked bit for bit against `cv2.getGaussianKernel` values by
the Rust unit test `float_kernel_is_opencvs` in opencv.rs.)"""
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import binary

cv2 = pytest.importorskip("cv2")
LEVELS = ("scalar", "avx2", "avx512bw", "avx512vbmi")


def images(rng):
    """Square test images: noise, smooth gradients, hard edges with 0/255 extremes, a photo-like mix."""
    for s in (1, 2, 3, 5, 11, 12, 22, 23, 24, 33, 96, 97, 224):
        yield s, rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
        g = np.linspace(0, 255, s)
        yield s, np.stack([np.add.outer(g, g) / 2, np.add.outer(g, -g) / 2 + 127, np.full((s, s), 200)], -1).astype(np.uint8)
        x = np.zeros((s, s, 3), np.uint8)
        x[: s // 2] = 255
        x[:, : s // 3, 1] = 0
        yield s, x
        if s >= 4:
            grid = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((s, s), Image.BICUBIC)
            yield s, np.clip(np.asarray(grid, np.int16) + rng.integers(-20, 21, (s, s, 3)), 0, 255).astype(np.uint8)


def test_byte_exact_with_cv2_at_every_level(tmp_path):
    rng = np.random.default_rng(3)
    cases = []
    for n, (s, arr) in enumerate(images(rng)):
        kernels = (23, 3, 9, 31) if s in (5, 33, 96) else (23,)
        for k in kernels:
            for sigma in (0.1, 2.0, 0.1 + 1.9 * float(rng.random()), 0.1 + 1.9 * float(rng.random())):
                cases.append((n, s, arr, k, sigma))
    src = {}
    for n, s, arr, _, _ in cases:
        if n not in src:
            src[n] = tmp_path / f"in{n}.png"
            Image.fromarray(arr).save(src[n])
    cpu_flags = open("/proc/cpuinfo").read()
    levels = [lv for lv, flag in zip(LEVELS, (None, "avx2", "avx512bw", "avx512vbmi")) if flag is None or flag in cpu_flags]
    failures = []
    for level in levels:
        env = dict(os.environ, BARLOW_SIMD=level)
        for n, s, arr, k, sigma in cases:
            params = {"crop": {"x": 0, "y": 0, "w": s, "h": s}, "flip": False, "jitter": None, "grayscale": False,
                      "blur_sigma": sigma, "blur_filter": {"library": "opencv", "kernel": k}, "solarize": False,
                      "size": s}
            pj, out = tmp_path / "p.json", tmp_path / "out.png"
            pj.write_text(json.dumps(params))
            subprocess.run([binary("loader"), "augment", "--image", str(src[n]), "--params", str(pj), "--out", str(out)],
                           check=True, capture_output=True, env=env)
            ours = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
            ref = cv2.GaussianBlur(arr, (k, k), sigma).astype(np.int16)
            if not np.array_equal(ours, ref):
                d = np.abs(ours - ref)
                failures.append(f"{level}: image {n} ({s}x{s}) k {k} sigma {sigma!r}: {int((d > 0).sum())} bytes differ, max {int(d.max())}")
    assert not failures, f"{len(failures)} of {len(cases) * len(levels)} blurs differ from cv2 {cv2.__version__}:\n" + "\n".join(failures[:20])
    print(f"opencv blur: {len(cases)} cases x {len(levels)} levels byte-exact with cv2 {cv2.__version__}")
