"""Writes the image goldens read by tests/test_image.c.

Regenerate from the repository root with Debian's Python (python3-pil 9.4, python3-torchvision 0.14):

    /usr/bin/python3 tests/ref/gen_image_goldens.py

tests/golden/image_resize.safetensors
  "<input>"                      uint8 HWC input image; inputs: rgb (13x9), grey (7x11), rgba (10x8),
                                 random, seeded (numpy RandomState(1234)); grey is stored as HxWx1.
  "<input>/<filter>/<W>x<H>"     torchvision.transforms.functional.resize(pil_image, [H, W],
                                 interpolation=<filter>, antialias=True) as uint8 HWC; filters
                                 nearest, bilinear, bicubic; sizes 5x4, 20x17, 6x9 (up and down).
tests/golden/image_formats.safetensors
  "jpeg/bytes", "jpeg/pixels"    a 16x8 RGB JPEG (quality 95, 4:4:4) written by PIL, and PIL's decode
  "gif/bytes", "gif/pixels"      a 9x7 GIF (palette) written by PIL, and PIL's decode as RGB
"""
import io
import os
import sys

import numpy as np
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_min import save  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")


def main():
    rng = np.random.RandomState(1234)
    inputs = {
        "rgb": rng.randint(0, 256, (9, 13, 3)).astype(np.uint8),
        "grey": rng.randint(0, 256, (11, 7, 1)).astype(np.uint8),
        "rgba": rng.randint(0, 256, (8, 10, 4)).astype(np.uint8),
    }
    # some fully transparent and fully opaque pixels in rgba (PIL treats them specially)
    inputs["rgba"][0, :3, 3] = 0
    inputs["rgba"][1, :3, 3] = 255
    modes = {"rgb": "RGB", "grey": "L", "rgba": "RGBA"}
    filters = {
        "nearest": InterpolationMode.NEAREST,
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
    }
    sizes = [(5, 4), (20, 17), (6, 9)]  # (W, H)
    tensors = dict(inputs)
    for name, array in inputs.items():
        pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, modes[name])
        for fname, mode in filters.items():
            for w, h in sizes:
                out = F.resize(pil, [h, w], interpolation=mode, antialias=True)
                assert out.size == (w, h) and out.mode == modes[name]
                res = np.asarray(out, dtype=np.uint8).reshape(h, w, array.shape[2])
                tensors[f"{name}/{fname}/{w}x{h}"] = res
    save(os.path.join(GOLDEN, "image_resize.safetensors"), tensors)

    formats = {}
    rgb = np.zeros((8, 16, 3), np.uint8)  # smooth content so JPEG stays close to the source
    for y in range(8):
        for x in range(16):
            rgb[y, x] = (x * 15, y * 30, 128 + (x - y) * 4)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=95, subsampling=0)
    formats["jpeg/bytes"] = np.frombuffer(buf.getvalue(), np.uint8).copy()
    formats["jpeg/pixels"] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    pal = rng.randint(0, 4, (7, 9)).astype(np.uint8)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 10]], np.uint8)
    img = Image.fromarray(pal, "P")
    img.putpalette(colours.flatten().tolist() + [0] * (768 - 12))
    buf = io.BytesIO()
    img.save(buf, format="GIF")
    formats["gif/bytes"] = np.frombuffer(buf.getvalue(), np.uint8).copy()
    formats["gif/pixels"] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    save(os.path.join(GOLDEN, "image_formats.safetensors"), formats)


if __name__ == "__main__":
    main()
