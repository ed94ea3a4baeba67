#!/usr/bin/env python3
"""SwAV's multi-crop views (facebookresearch/swav src/multicropdataset.py `MultiCropDataset`, with
the crops of the paper's ImageNet scripts, e.g. scripts/swav_800ep_pretrain.sh: `--nmb_crops 2 6
--size_crops 224 96 --min_scale_crops 0.14 0.05 --max_scale_crops 1. 0.14`), as the official code
composes them. Written from reading the official source; used by
`python/tests/test_multicrop_conformance.py` (replay of barlow's parameters, byte for byte) and
the benchmark peer (bench/multicrop_official_peer.py).

Per image, nmb_crops[0] + nmb_crops[1] views, each one
  RandomResizedCrop(size, scale=(min_scale, max_scale))   torchvision's default: BILINEAR,
                                                           ratio (3/4, 4/3)
  -> RandomHorizontalFlip(p=0.5)
  -> get_color_distortion(s=1.0):
       RandomApply([ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8) -> RandomGrayscale(p=0.2)
  -> RandomGaussianBlur: when np.random.rand() > 0.5, cv2.GaussianBlur(np.asarray(img), (23, 23),
     sigma) with sigma = np.random.rand() * 1.9 + 0.1 (an ndarray out: ToTensor takes it as is)
  -> ToTensor + Normalize(mean (0.485, 0.456, 0.406), std (0.228, 0.224, 0.225))
No solarize. The script's own defaults (`--size_crops 224 --nmb_crops 2`, scale (0.14, 1)) make two
global crops only; the paper's multi-crop numbers are those of its run scripts, taken here.

    python reference/swav_official.py replay IMAGE PARAMS.json OUT.png   # one view, to compare
"""
import json
import sys

import cv2
import numpy as np
import torchvision.transforms as T

from replay import apply_view, pil_loader  # noqa: F401 (the replay, re-exported)

MEAN = (0.485, 0.456, 0.406)
STD = (0.228, 0.224, 0.225)
SIZE_CROPS = (224, 96)
NMB_CROPS = (2, 6)
MIN_SCALE_CROPS = (0.14, 0.05)
MAX_SCALE_CROPS = (1.0, 0.14)
GLOBAL_CROPS_SCALE = (MIN_SCALE_CROPS[0], MAX_SCALE_CROPS[0])
LOCAL_CROPS_SCALE = (MIN_SCALE_CROPS[1], MAX_SCALE_CROPS[1])
LOCAL_CROPS_NUMBER = NMB_CROPS[1]
# What the conformance test checks the drawn parameters against, per view role.
ROLES = {
    "a": dict(blur_p=0.5, solarize_p=0.0, scale=GLOBAL_CROPS_SCALE),
    "b": dict(blur_p=0.5, solarize_p=0.0, scale=GLOBAL_CROPS_SCALE),
    "local": dict(blur_p=0.5, solarize_p=0.0, scale=LOCAL_CROPS_SCALE),
}
JITTER = dict(brightness=(0.2, 1.8), contrast=(0.2, 1.8), saturation=(0.2, 1.8), hue=(-0.2, 0.2))
BLUR_SIGMA = (0.1, 2.0)
BLUR_FILTER = {"library": "opencv", "kernel": 23}
INTERPOLATION = "bilinear"


class RandomGaussianBlur:
    """multicropdataset.RandomGaussianBlur: half the time, OpenCV's 23x23 Gaussian at a sigma drawn
    uniformly from [0.1, 2.0)."""

    def __call__(self, img):
        do_it = np.random.rand() > 0.5
        if not do_it:
            return img
        sigma = np.random.rand() * 1.9 + 0.1
        return cv2.GaussianBlur(np.asarray(img), (23, 23), sigma)


def get_color_distortion(s=1.0):
    color_jitter = T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
    return T.Compose([T.RandomApply([color_jitter], p=0.8), T.RandomGrayscale(p=0.2)])


class MultiCropTransform:
    """MultiCropDataset's `trans` list applied to one PIL image: the list of crops its __getitem__
    returns. `normalize=False` stops before ToTensor. Sizes and counts are parameters here only to
    match barlow's --image-size / --local-size / --local-crops."""

    def __init__(self, size_crops=SIZE_CROPS, nmb_crops=NMB_CROPS, min_scale_crops=MIN_SCALE_CROPS,
                 max_scale_crops=MAX_SCALE_CROPS, normalize=True):
        color_transform = T.Compose([get_color_distortion(), RandomGaussianBlur()])
        tail = [T.ToTensor(), T.Normalize(mean=MEAN, std=STD)] if normalize else []
        self.trans = []
        for size, n, lo, hi in zip(size_crops, nmb_crops, min_scale_crops, max_scale_crops):
            crop = T.RandomResizedCrop(size, scale=(lo, hi))
            self.trans += [T.Compose([crop, T.RandomHorizontalFlip(p=0.5), color_transform, *tail])] * n

    def __call__(self, image):
        return [t(image) for t in self.trans]


def main():
    if len(sys.argv) != 5 or sys.argv[1] != "replay":
        sys.exit(__doc__)
    _, _, image, params, out = sys.argv
    with open(params) as f:
        p = json.load(f)
    apply_view(pil_loader(image), p).save(out)


if __name__ == "__main__":
    main()
