"""Replay of one barlow view from its parameters (the `ViewParams` JSON that `loader preview` writes
next to each PNG) through the calls the official pipelines make once their random transforms have
drawn: torchvision.transforms.functional on PIL images, Pillow's GaussianBlur and solarize,
OpenCV's `cv2.GaussianBlur` (SwAV) or torchvision's `gaussian_blur` (DINOv2), as the view's
`blur_filter` names. Shared by the recipes' references (dino_official.py, swav_official.py,
dinov2_official.py); cv2 is imported only when a view blurs with it."""
import numpy as np
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter, ImageOps

INTERPOLATION = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}
JITTER_OPS = {  # ColorJitter.forward: fn_idx 0..3 -> these functionals, in the drawn order
    "brightness": F.adjust_brightness,
    "contrast": F.adjust_contrast,
    "saturation": F.adjust_saturation,
    "hue": F.adjust_hue,
}


def blur(img, sigma, blur_filter=None):
    """The Gaussian blur a recipe's official code calls, at `sigma`:
    - pillow (Barlow Twins, DINO): `img.filter(ImageFilter.GaussianBlur(radius=sigma))`;
    - opencv (SwAV's RandomGaussianBlur): `cv2.GaussianBlur(np.asarray(img), (k, k), sigma)`
      (an ndarray, which ToTensor takes as the PIL image's bytes: returned here as a PIL image);
    - torchvision (DINOv2's GaussianBlur): `F.gaussian_blur(img, [k, k], [sigma, sigma])`, what
      `transforms.GaussianBlur(k, ...)` calls on a PIL image with its drawn sigma."""
    library = (blur_filter or {}).get("library", "pillow")
    if library == "pillow":
        return img.filter(ImageFilter.GaussianBlur(radius=sigma))
    k = blur_filter["kernel"]
    if library == "opencv":
        import cv2
        return Image.fromarray(cv2.GaussianBlur(np.asarray(img), (k, k), sigma))
    if library == "torchvision":
        return F.gaussian_blur(img, [k, k], [sigma, sigma])
    raise ValueError(f"unknown blur library {library!r}")


def replay_steps(img, params, size=None):
    """The view of `params` step by step: yields (step name, PIL image) after every operation that
    ran, the last one being the view. Order: crop + resize, flip, jitter (drawn order), grayscale,
    blur, solarize, as every recipe's official Compose has them."""
    size = size or params["size"]
    c = params["crop"]
    interp = INTERPOLATION[params.get("interpolation") or "bicubic"]
    # RandomResizedCrop.forward: F.resized_crop(img, i, j, h, w, self.size, self.interpolation)
    img = F.resized_crop(img, c["y"], c["x"], c["h"], c["w"], [size, size], interpolation=interp)
    yield "crop+resize", img
    if params["flip"]:
        img = F.hflip(img)
        yield "flip", img
    jitter = params.get("jitter")
    if jitter is not None:
        for name in jitter["order"]:
            img = JITTER_OPS[name](img, jitter[name])
            yield name, img
    if params["grayscale"]:
        img = F.rgb_to_grayscale(img, num_output_channels=3)
        yield "grayscale", img
    if params.get("blur_sigma") is not None:
        img = blur(img, params["blur_sigma"], params.get("blur_filter"))
        yield "blur", img
    if params["solarize"]:
        # DINO's Solarization and torchvision's RandomSolarize(128) both call ImageOps.solarize(img, 128)
        img = ImageOps.solarize(img, 128)
        yield "solarize", img


def apply_view(img, params, size=None):
    """One view from given parameters: the PIL image the official transform would produce (before
    ToTensor) had it drawn these parameters."""
    out = img
    for _, out in replay_steps(img, params, size):
        pass
    return out


def pil_loader(path):
    """torchvision.datasets.folder.pil_loader, what ImageFolder reads with."""
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")
