#!/usr/bin/env python3
"""DINOv2's multi-crop views (facebookresearch/dinov2 dinov2/data/augmentations.py
`DataAugmentationDINO`, with dinov2/data/transforms.py's `GaussianBlur` and the crops of
dinov2/configs/ssl_default_config.yaml: global_crops_scale [0.32, 1.0], local_crops_number 8,
local_crops_scale [0.05, 0.32], sizes 224 and 96), as the official code composes them. Written
from reading the official source; used by `python/tests/test_multicrop_conformance.py` and the
benchmark peer (bench/multicrop_official_peer.py).

Per image, 2 + local_crops_number views, each one
  RandomResizedCrop(size, scale, interpolation=BICUBIC) -> RandomHorizontalFlip(p=0.5)
  -> RandomApply([ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8)
  -> RandomGrayscale(p=0.2)
  -> GaussianBlur(p): RandomApply([transforms.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0))],
     p=1 - p): torchvision's float Gaussian on the PIL image. The code hands RandomApply `1 - p`
     (its comment has RandomApply's p backwards), so GaussianBlur(p=1.0) on the first global view
     never blurs, GaussianBlur(p=0.1) on the second blurs 90% of the time, p=0.5 on the locals
     half the time (dinov2 PR #411, dinov3 issue #286: the released models were trained so).
  -> (second global view only) RandomSolarize(threshold=128, p=0.2)
  -> ToTensor + Normalize(ImageNet mean/std)

    python reference/dinov2_official.py replay IMAGE PARAMS.json OUT.png   # one view, to compare
"""
import json
import sys

import torchvision.transforms as T

from replay import apply_view, pil_loader  # noqa: F401 (the replay, re-exported)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
GLOBAL_SIZE, LOCAL_SIZE = 224, 96
GLOBAL_CROPS_SCALE = (0.32, 1.0)
LOCAL_CROPS_SCALE = (0.05, 0.32)
LOCAL_CROPS_NUMBER = 8
# What the conformance test checks the drawn parameters against, per view role: the probabilities
# the code applies (1 - GaussianBlur's p), not the numbers written at the call sites.
ROLES = {
    "a": dict(blur_p=1 - 1.0, solarize_p=0.0, scale=GLOBAL_CROPS_SCALE),
    "b": dict(blur_p=1 - 0.1, solarize_p=0.2, scale=GLOBAL_CROPS_SCALE),
    "local": dict(blur_p=1 - 0.5, solarize_p=0.0, scale=LOCAL_CROPS_SCALE),
}
JITTER = dict(brightness=(0.6, 1.4), contrast=(0.6, 1.4), saturation=(0.8, 1.2), hue=(-0.1, 0.1))
BLUR_SIGMA = (0.1, 2.0)
BLUR_FILTER = {"library": "torchvision", "kernel": 9}
INTERPOLATION = "bicubic"


class GaussianBlur(T.RandomApply):
    """transforms.GaussianBlur: RandomApply of torchvision's 9x9 GaussianBlur with p = 1 - p."""

    def __init__(self, *, p=0.5, radius_min=0.1, radius_max=2.0):
        keep_p = 1 - p
        super().__init__(transforms=[T.GaussianBlur(kernel_size=9, sigma=(radius_min, radius_max))], p=keep_p)


class DataAugmentationDINO:
    """augmentations.DataAugmentationDINO: PIL image -> [global 1, global 2, local 1..K] (the
    official returns a dict; the order here is the one its training loop concatenates).
    `normalize=False` stops before ToTensor."""

    def __init__(self, global_crops_scale=GLOBAL_CROPS_SCALE, local_crops_scale=LOCAL_CROPS_SCALE,
                 local_crops_number=LOCAL_CROPS_NUMBER, global_crops_size=GLOBAL_SIZE,
                 local_crops_size=LOCAL_SIZE, normalize=True):
        bicubic = T.InterpolationMode.BICUBIC
        self.geometric_augmentation_global = T.Compose([
            T.RandomResizedCrop(global_crops_size, scale=global_crops_scale, interpolation=bicubic),
            T.RandomHorizontalFlip(p=0.5)])
        self.geometric_augmentation_local = T.Compose([
            T.RandomResizedCrop(local_crops_size, scale=local_crops_scale, interpolation=bicubic),
            T.RandomHorizontalFlip(p=0.5)])
        color_jittering = T.Compose([
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            T.RandomGrayscale(p=0.2)])
        tail = [T.ToTensor(), T.Normalize(mean=MEAN, std=STD)] if normalize else []
        self.global_transfo1 = T.Compose([color_jittering, GaussianBlur(p=1.0), *tail])
        self.global_transfo2 = T.Compose([color_jittering, GaussianBlur(p=0.1),
                                          T.RandomSolarize(threshold=128, p=0.2), *tail])
        self.local_transfo = T.Compose([color_jittering, GaussianBlur(p=0.5), *tail])
        self.local_crops_number = local_crops_number

    def __call__(self, image):
        crops = [self.global_transfo1(self.geometric_augmentation_global(image)),
                 self.global_transfo2(self.geometric_augmentation_global(image))]
        crops += [self.local_transfo(self.geometric_augmentation_local(image))
                  for _ in range(self.local_crops_number)]
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
