#!/usr/bin/env python3
"""DINO's multi-crop views (facebookresearch/dino main_dino.py `DataAugmentationDINO`, with the
`GaussianBlur` and `Solarization` of its utils.py) as the official code composes them: torchvision
transforms on PIL images, Pillow's blur and solarize. Written from reading the official source;
used by `python/tests/test_dino_conformance.py` (replay of barlow's parameters, byte for byte) and
`bench/dino_official_peer.py` (the official pipeline as a benchmark peer).

Per image, `local_crops_number + 2` views, each one
  RandomResizedCrop(size, scale, ratio (3/4, 4/3), interpolation=BICUBIC)
  -> RandomHorizontalFlip(0.5)
  -> RandomApply([ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8)
  -> RandomGrayscale(0.2)
  -> GaussianBlur(p)     PIL ImageFilter.GaussianBlur(radius=U(0.1, 2.0)), applied when
                         random.random() <= p (so p=1.0 always blurs)
  -> Solarization(p)     PIL ImageOps.solarize (threshold 128), applied when random.random() < p
  -> ToTensor + Normalize(ImageNet mean/std)
with view 0 (global, 224): blur p 1.0; view 1 (global, 224): blur p 0.1, solarize p 0.2;
views 2.. (local, 96, scale (0.05, 0.4)): blur p 0.5. Globals use scale (0.4, 1.0).

`apply_view(img, params)` (reference/replay.py) replays one view from barlow's per-view parameter
JSON (what `loader preview` writes next to each PNG) through torchvision.transforms.functional, the
calls the random transforms above make once their parameters are drawn, and returns the PIL image
before ToTensor.

    python reference/dino_official.py replay IMAGE PARAMS.json OUT.png   # one view, to compare
"""
import json
import random
import sys

import torchvision.transforms as T
from PIL import ImageFilter, ImageOps

from replay import apply_view, pil_loader, replay_steps  # noqa: F401 (the replay, re-exported)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
GLOBAL_SIZE, LOCAL_SIZE = 224, 96
GLOBAL_CROPS_SCALE = (0.4, 1.0)   # main_dino.py defaults
LOCAL_CROPS_SCALE = (0.05, 0.4)
LOCAL_CROPS_NUMBER = 8
BLUR_RADIUS = (0.1, 2.0)          # utils.GaussianBlur's radius_min, radius_max
# What the conformance test checks the drawn parameters against, per view role.
ROLES = {
    "a": dict(blur_p=1.0, solarize_p=0.0, scale=GLOBAL_CROPS_SCALE),
    "b": dict(blur_p=0.1, solarize_p=0.2, scale=GLOBAL_CROPS_SCALE),
    "local": dict(blur_p=0.5, solarize_p=0.0, scale=LOCAL_CROPS_SCALE),
}
JITTER = dict(brightness=(0.6, 1.4), contrast=(0.6, 1.4), saturation=(0.8, 1.2), hue=(-0.1, 0.1))
BLUR_SIGMA = BLUR_RADIUS
BLUR_FILTER = {"library": "pillow"}
INTERPOLATION = "bicubic"


class GaussianBlur:
    """utils.GaussianBlur: with probability p (test `random.random() <= p`), Pillow's Gaussian blur
    with a radius drawn uniformly from [0.1, 2.0] (Pillow's radius is the standard deviation)."""

    def __init__(self, p=0.5, radius_min=BLUR_RADIUS[0], radius_max=BLUR_RADIUS[1]):
        self.p, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img):
        if not random.random() <= self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max)))


class Solarization:
    """utils.Solarization: with probability p (test `random.random() < p`), ImageOps.solarize at its
    default threshold, 128."""

    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if random.random() < self.p else img


class DataAugmentationDINO:
    """main_dino.py's DataAugmentationDINO: PIL image -> list of 2 + local_crops_number views.
    `normalize=False` stops before ToTensor (PIL images out), for looking at the views.
    The sizes are parameters here only to match barlow's --image-size / --local-size."""

    def __init__(self, global_crops_scale=GLOBAL_CROPS_SCALE, local_crops_scale=LOCAL_CROPS_SCALE,
                 local_crops_number=LOCAL_CROPS_NUMBER, global_size=GLOBAL_SIZE, local_size=LOCAL_SIZE,
                 normalize=True):
        flip_and_color_jitter = T.Compose([
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ])
        tail = [T.ToTensor(), T.Normalize(MEAN, STD)] if normalize else []
        bicubic = T.InterpolationMode.BICUBIC
        self.global_transfo1 = T.Compose([
            T.RandomResizedCrop(global_size, scale=global_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(1.0), *tail])
        self.global_transfo2 = T.Compose([
            T.RandomResizedCrop(global_size, scale=global_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(0.1), Solarization(0.2), *tail])
        self.local_crops_number = local_crops_number
        self.local_transfo = T.Compose([
            T.RandomResizedCrop(local_size, scale=local_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(p=0.5), *tail])

    def __call__(self, image):
        crops = [self.global_transfo1(image), self.global_transfo2(image)]
        crops += [self.local_transfo(image) for _ in range(self.local_crops_number)]
        return crops


def main():
    if len(sys.argv) != 5 or sys.argv[1] != "replay":
        sys.exit(__doc__)
    _, _, image, params, out = sys.argv
    with open(params) as f:
        p = json.load(f)
    apply_view(pil_loader(image), p).save(out)


if __name__ == "__main__":
    main()
