#!/usr/bin/env python3
"""JPEG files and Pillow's decode of each, for the decode crate's exactness tests
(decode/tests/turbo_pillow.rs): libjpeg-turbo through barlow must give Pillow's
`Image.open(f).convert('RGB')` byte for byte.

    python3 reference/make_decode_goldens.py [--out decode/tests/golden]

Needs Pillow (whose wheel bundles libjpeg-turbo). The source is a crop of the views' golden
photo (views/tests/golden/src_ladybird.png), at an odd size so that partial iMCUs occur at the
right and bottom edges. Writes `<name>.jpg`, `<name>_pillow.png` and cases.json.
"""
import argparse, json, os
from PIL import Image, __version__ as PIL_VERSION, features

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "views", "tests", "golden", "src_ladybird.png")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "decode", "tests", "golden"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    src = Image.open(SRC).convert("RGB").crop((7, 5, 7 + 237, 5 + 171))
    cases = []
    variants = []
    for sub, name in [(0, "444"), (1, "422"), (2, "420")]:
        for prog in (False, True):
            variants.append((f"rgb{name}{'_prog' if prog else ''}", src,
                             dict(quality=90, subsampling=sub, progressive=prog)))
    grey = src.convert("L")
    variants.append(("gray", grey, dict(quality=90)))
    variants.append(("gray_prog", grey, dict(quality=90, progressive=True)))
    cmyk = src.convert("CMYK")
    variants.append(("cmyk", cmyk, dict(quality=92)))
    variants.append(("cmyk_prog", cmyk, dict(quality=92, progressive=True)))
    # Restart markers, as some cameras write them.
    variants.append(("rgb420_restart", src, dict(quality=85, subsampling=2, restart_marker_blocks=3)))
    for name, img, opts in variants:
        jpg = f"{name}.jpg"
        img.save(os.path.join(args.out, jpg), "JPEG", **opts)
        decoded = Image.open(os.path.join(args.out, jpg))
        mode = decoded.mode
        decoded = decoded.convert("RGB")
        png = f"{name}_pillow.png"
        decoded.save(os.path.join(args.out, png))
        cases.append({"input": jpg, "mode": mode, "output": png})
    meta = {"pillow": PIL_VERSION, "libjpeg_turbo": features.version("libjpeg_turbo"), "cases": cases}
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(cases)} cases in {args.out} (Pillow {PIL_VERSION})")


if __name__ == "__main__":
    main()
