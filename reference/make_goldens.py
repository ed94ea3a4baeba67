#!/usr/bin/env python3
"""Golden outputs of the paper's view pipeline, made with Pillow + numpy (the torchvision PIL path
of facebookresearch/barlowtwins main.py `Transform`), for barlow's loader tests.

    python3 reference/make_goldens.py [--out views/tests/golden]

Needs Pillow and numpy, and the photos of Debian's mate-backgrounds package (see README.md).
Writes small PNG/JPEG inputs, Pillow's outputs, and cases.json describing every case.
"""
import argparse, io, json, math, os
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps, __version__ as PIL_VERSION

PHOTOS = [  # mate-backgrounds 1.26, GPL-2+ (see README.md)
    ("ladybird", "/usr/share/backgrounds/mate/nature/LadyBird.jpg", (1300, 700)),
    ("yellowflower", "/usr/share/backgrounds/mate/nature/YellowFlower.jpg", (1000, 600)),
    ("storm", "/usr/share/backgrounds/mate/nature/Storm.jpg", (900, 500)),
]
OP_SIZE = 112          # side of the per-op test images
SRC_SIZE = (320, 240)  # crop-resize and whole-chain sources
MASK32 = 0xFFFFFFFF


# --- the ops, as torchvision's PIL functional does them -------------------------------------
def adjust_hue(img, hue_factor):
    """torchvision.transforms._functional_pil.adjust_hue (uint8 wrap-around)."""
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    np_h += np.int32(hue_factor * 255).astype(np.uint8)
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert("RGB")


def grayscale(img):
    """torchvision rgb_to_grayscale(img, num_output_channels=3)."""
    g = np.array(img.convert("L"), dtype=np.uint8)
    return Image.fromarray(np.dstack([g, g, g]), "RGB")


def apply_op(img, op, factor=None):
    if op == "brightness":
        return ImageEnhance.Brightness(img).enhance(factor)
    if op == "contrast":
        return ImageEnhance.Contrast(img).enhance(factor)
    if op == "saturation":
        return ImageEnhance.Color(img).enhance(factor)
    if op == "hue":
        return adjust_hue(img, factor)
    if op == "grayscale":
        return grayscale(img)
    if op == "solarize":
        return ImageOps.solarize(img, 128)
    if op == "blur":
        return img.filter(ImageFilter.GaussianBlur(factor))
    raise ValueError(op)


def apply_view(img, p, size=224):
    """One view with given parameters (the loader's ViewParams JSON)."""
    c = p["crop"]
    img = img.crop((c["x"], c["y"], c["x"] + c["w"], c["y"] + c["h"])).resize((size, size), Image.BICUBIC)
    if p["flip"]:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    j = p["jitter"]
    if j is not None:
        for name in j["order"]:
            img = apply_op(img, name, j[name])
    if p["grayscale"]:
        img = grayscale(img)
    if p["blur_sigma"] is not None:
        img = img.filter(ImageFilter.GaussianBlur(p["blur_sigma"]))
    if p["solarize"]:
        img = ImageOps.solarize(img, 128)
    return img


def rrc_params(r, width, height, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision RandomResizedCrop.get_params -> (top, left, h, w)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * r.uniform(*scale)
        aspect = math.exp(r.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(r.integers(0, height - h + 1)), int(r.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_params(r, width, height, blur_p=1.0, solar_p=0.2, jitter_p=1.0, gray_p=0.2):
    i, j, h, w = rrc_params(r, width, height)
    names = ["brightness", "contrast", "saturation", "hue"]
    jitter = None
    flip = bool(r.random() < 0.5)
    if r.random() < jitter_p:
        order = [names[k] for k in r.permutation(4)]
        jitter = {"order": order, "brightness": float(r.uniform(0.6, 1.4)), "contrast": float(r.uniform(0.6, 1.4)),
                  "saturation": float(r.uniform(0.8, 1.2)), "hue": float(r.uniform(-0.1, 0.1))}
    return {"crop": {"x": j, "y": i, "w": w, "h": h}, "flip": flip, "jitter": jitter,
            "grayscale": bool(r.random() < gray_p),
            "blur_sigma": float(r.random() * 1.9 + 0.1) if r.random() < blur_p else None,
            "solarize": bool(r.random() < solar_p)}


# --- exhaustive checks, stored as checksums --------------------------------------------------
def checksum(img):
    """sum(v_i * ((i * 2654435761) mod 2^32)) mod 2^64 over the interleaved bytes."""
    v = np.asarray(img, dtype=np.uint8).reshape(-1).astype(np.uint64)
    i = np.arange(v.size, dtype=np.uint64)
    w = (i * np.uint64(2654435761)) & np.uint64(MASK32)
    return int(np.sum(v * w, dtype=np.uint64))


def all_colours():
    """4096 x 4096 RGB holding every colour once: pixel k = (k >> 16, (k >> 8) & 255, k & 255)."""
    k = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(k >> 16) & 255, (k >> 8) & 255, k & 255], axis=1).astype(np.uint8)
    return Image.fromarray(rgb.reshape(4096, 4096, 3), "RGB")


def noise(width, height):
    """Byte i = ((i * 2654435761) mod 2^32) >> 13 & 255 (same formula in the Rust tests)."""
    i = np.arange(width * height * 3, dtype=np.uint64)
    v = (((i * np.uint64(2654435761)) & np.uint64(MASK32)) >> np.uint64(13)) & np.uint64(255)
    return Image.fromarray(v.astype(np.uint8).reshape(height, width, 3), "RGB")


# --- crop + resize with either filter (torchvision's RandomResizedCrop, BILINEAR or BICUBIC) ---
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def crop_resize(img, crop, size, interpolation):
    x, y, w, h = crop
    return img.crop((x, y, x + w, y + h)).resize(size, FILTERS[interpolation])


def resize_goldens(cases, sources, save_png):
    """Bilinear crop + resize of the photo crops (PNGs, 96 and 224 among the sizes: enlarging,
    shrinking, one axis only, Pillow 13's vertical-first order), and crop + resize of noise images
    with both filters, stored as checksums (any size, no file)."""
    bilinear = [("src_ladybird.png", (0, 0, 320, 240), 96), ("src_ladybird.png", (17, 33, 100, 80), 224),
                ("src_ladybird.png", (200, 10, 119, 229), 64), ("src_ladybird.png", (1, 1, 3, 200), 64),
                ("src_ladybird.png", (30, 40, 7, 9), 224), ("src_ladybird.png", (50, 5, 96, 200), 96),
                ("src_ladybird.png", (60, 20, 224, 150), 224), ("op_storm.png", (0, 0, 112, 112), 224),
                ("op_storm.png", (3, 5, 100, 90), 96), ("op_yellowflower.png", (10, 10, 50, 60), 224),
                ("op_yellowflower.png", (0, 0, 112, 112), 96)]
    for k, (name, crop, size) in enumerate(bilinear):
        x, y, w, h = crop
        res = crop_resize(sources[name], crop, (size, size), "bilinear")
        cases["resize_bilinear"].append({"input": name, "crop": {"x": x, "y": y, "w": w, "h": h}, "size": size,
                                         "output": save_png(res, f"bilinear_{k}.png")})
    r = np.random.default_rng(26)  # its own generator: the other goldens' draws stay as they were
    for (w, h) in [(500, 375), (61, 47), (224, 224)]:
        img = noise(w, h)
        crops = [(0, 0, w, h), (w // 3, h // 4, 1, 2)]
        for _ in range(8):
            i, j, ch, cw = rrc_params(r, w, h)
            crops.append((j, i, cw, ch))
        for crop in crops:
            for size in [(224, 224), (96, 96), (160, 90), (7, 300)]:
                for interpolation in FILTERS:
                    x, y, cw, ch = crop
                    cases["resize_checksums"].append({
                        "image": f"noise_{w}x{h}", "interpolation": interpolation,
                        "crop": {"x": x, "y": y, "w": cw, "h": ch}, "width": size[0], "height": size[1],
                        "sum": checksum(crop_resize(img, crop, size, interpolation))})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "views", "tests", "golden"))
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    r = np.random.default_rng(20240531)
    cases = {"pillow": PIL_VERSION, "numpy": np.__version__, "ops": [], "resize": [], "chain": [],
             "decode": [], "checksums": [], "crop_samples": [], "resize_bilinear": [], "resize_checksums": []}

    def save_png(img, name):
        img.save(os.path.join(out, name), optimize=True)
        return name

    sources = {}

    op_factors = [("brightness", 0.6), ("brightness", 1.37), ("contrast", 0.63), ("contrast", 1.4),
                  ("saturation", 0.8), ("saturation", 1.2), ("hue", -0.1), ("hue", 0.063),
                  ("grayscale", None), ("solarize", None), ("blur", 0.1), ("blur", 0.93), ("blur", 2.0)]
    for pi, (name, path, (x0, y0)) in enumerate(PHOTOS):
        photo = Image.open(path).convert("RGB")
        small = photo.crop((x0, y0, x0 + OP_SIZE, y0 + OP_SIZE))
        inp = save_png(small, f"op_{name}.png")
        sources[inp] = small
        for op, f in op_factors:
            res = apply_op(small, op, f)
            tag = op if f is None else f"{op}_{f}"
            cases["ops"].append({"input": inp, "op": op, "factor": f,
                                 "output": save_png(res, f"op_{name}_{tag}.png")})
        if pi > 0:
            continue
        # Crop-resize and the whole chain on one larger source.
        src = photo.crop((x0 - 100, y0 - 60, x0 - 100 + SRC_SIZE[0], y0 - 60 + SRC_SIZE[1]))
        src_png = save_png(src, f"src_{name}.png")
        sources[src_png] = src
        for k, (box, size) in enumerate([((0, 0, 320, 240), 224), ((17, 33, 100, 80), 224),
                                         ((5, 3, 301, 229), 224), ((200, 10, 119, 229), 64),
                                         ((1, 1, 3, 200), 64)]):
            x, y, w, h = box
            res = src.crop((x, y, x + w, y + h)).resize((size, size), Image.BICUBIC)
            cases["resize"].append({"input": src_png, "crop": {"x": x, "y": y, "w": w, "h": h}, "size": size,
                                    "output": save_png(res, f"resize_{name}_{k}.png")})
        jpg = f"src_{name}_q90.jpg"
        src.save(os.path.join(out, jpg), quality=90)
        decoded = Image.open(os.path.join(out, jpg)).convert("RGB")
        cases["decode"].append({"input": jpg, "mode": "RGB", "output": save_png(decoded, f"src_{name}_q90_pillow.png")})
        for k in range(4):
            p = random_params(r, *decoded.size, blur_p=[1.0, 0.0, 1.0, 0.5][k], solar_p=[0.0, 1.0, 0.5, 0.2][k])
            cases["chain"].append({"input": jpg, "params": p, "size": 224,
                                   "output": save_png(apply_view(decoded, p), f"chain_{name}_{k}.png")})
        # Decoding quirks: grayscale, progressive, CMYK (Adobe, inverted), PNG named .JPEG.
        q = src.resize((160, 120), Image.LANCZOS)
        quirks = [("gray.jpg", lambda f: q.convert("L").save(f, "JPEG", quality=90)),
                  ("progressive.jpg", lambda f: q.save(f, "JPEG", quality=85, progressive=True)),
                  ("cmyk.jpg", lambda f: q.convert("CMYK").save(f, "JPEG", quality=92)),
                  ("png_named.JPEG", lambda f: q.save(f, "PNG")),
                  ("rgb444.jpg", lambda f: q.save(f, "JPEG", quality=95, subsampling=0))]
        for fname, write in quirks:
            write(os.path.join(out, fname))
            dec = Image.open(os.path.join(out, fname))
            mode = dec.mode
            dec = dec.convert("RGB")
            cases["decode"].append({"input": fname, "mode": mode,
                                    "output": save_png(dec, fname.split(".")[0] + "_pillow.png")})

    # Exhaustive checks as checksums.
    allc = all_colours()
    for op, f in [("grayscale", None), ("hue", 0.0), ("hue", -0.1), ("hue", 0.037), ("hue", 0.5), ("hue", -0.5),
                  ("saturation", 0.8), ("saturation", 1.2), ("saturation", 0.0), ("brightness", 1.4),
                  ("brightness", 0.6), ("contrast", 0.6), ("contrast", 1.4)]:
        cases["checksums"].append({"image": "all_colours", "op": op, "factor": f,
                                   "sum": checksum(apply_op(allc, op, f))})
    for (w, h) in [(61, 47), (3, 50), (224, 224), (1, 9)]:
        img = noise(w, h)
        sigmas = list(np.round(np.linspace(0.1, 2.0, 39), 4)) + [0.1234567, 1.9999, 5.0]
        for s in sigmas:
            cases["checksums"].append({"image": f"noise_{w}x{h}", "op": "blur", "factor": float(s),
                                       "sum": checksum(apply_op(img, "blur", float(s)))})
        for op, f in [("contrast", 0.61), ("contrast", 1.33)]:
            cases["checksums"].append({"image": f"noise_{w}x{h}", "op": op, "factor": f,
                                       "sum": checksum(apply_op(img, op, f))})

    resize_goldens(cases, sources, save_png)

    # Reference crop samples: (area fraction, aspect w/h) from torchvision's get_params.
    for (w, h) in [(500, 375), (300, 400), (240, 240)]:
        n = 5000
        s = np.empty((n, 2), np.float32)
        for k in range(n):
            _, _, ch, cw = rrc_params(r, w, h)
            s[k] = (cw * ch / (w * h), cw / ch)
        fname = f"crops_{w}x{h}.f32"
        s.tofile(os.path.join(out, fname))
        cases["crop_samples"].append({"width": w, "height": h, "n": n, "file": fname})

    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
    print(f"wrote {len(os.listdir(out))} files, {total / 1e6:.2f} MB, to {out}")


if __name__ == "__main__":
    main()
