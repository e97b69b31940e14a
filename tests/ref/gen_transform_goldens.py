"""Writes tests/golden/transforms.safetensors, read by tests/test_transforms.c.

Regenerate from the repository root with Debian's Python (python3-pil 9.4, python3-torchvision 0.14):

    /usr/bin/python3 tests/ref/gen_transform_goldens.py

Inputs (uint8 HWC, grey stored as HxWx1), seeded with numpy RandomState(4321):
  "input/rgb"     13x9 RGB, random          "input/grey"   11x7 grey, random
  "input/rgba"    6x5 RGBA, random          "input/smooth" 32x32 RGB, smooth natural-ish content
  "input/flat"    8x6 RGB, three levels     "input/thin"   5x2 RGB (smaller than the 3x3 filter)

Every other tensor is one case, named "<op>/<input>/<p0>,<p1>,..." where the parameters are written
as Python's repr (ints plain), so the C test parses them back exactly and dispatches on <op>:
  torchvision.transforms.functional on PIL images:
    resize_shorter N,filter       F.resize(img, N, filter)       filter 0 nearest, 1 bilinear, 2 bicubic
    resize H,W,filter             F.resize(img, [H, W], filter)
    crop top,left,h,w             F.crop
    center_crop h,w               F.center_crop(img, [h, w])
    hflip                         F.hflip
    pad l,t,r,b,mode,f0,f1,f2,f3  F.pad(img, [l, t, r, b], fill, mode 0 constant / 1 reflect)
    to_grey / to_rgb              F.rgb_to_grayscale(img, 1) / img.convert("RGB")
    brightness|contrast|saturation|hue|sharpness f   F.adjust_*(img, f)
    autocontrast / equalize       F.autocontrast / F.equalize
    posterize bits / solarize t   F.posterize / F.solarize
  PIL directly (as FixMatch calls it):
    rotate angle,f0..f3           img.rotate(angle, NEAREST, expand=False, fillcolor=fill)
                                  (checked equal to F.rotate(img, angle, NEAREST, fill=fill))
    affine a,b,c,d,e,f,f0..f3     img.transform(img.size, AFFINE, (a..f), NEAREST, fillcolor=fill)
    shear_x|shear_y v,f0..f3      AFFINE (1, v, 0, 0, 1, 0) / (1, 0, 0, v, 1, 0)
    translate_x|translate_y px,f0..f3   AFFINE (1, 0, px, 0, 1, 0) / (1, 0, 0, 0, 1, px)
    cutout cx,cy,size,f0..f3      FixMatch's CutoutAbs(img, size) with its random centre given
  float32 CHW:
    to_float/<input>/<preset>     F.normalize(F.to_tensor(img), mean, std) (rgb: every preset; grey: none)
  FixMatch RandAugmentMC ops (kekmodel/FixMatch-pytorch dataset/randaugment.py, reimplemented below
  with the random sign made a parameter):
    ra/<Op>/<input>/v,negate,fill    fill -1 means no fillcolor (the kekmodel code: black)
"""
import os
import sys

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from torchvision.transforms import InterpolationMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_min import save  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
FILTERS = [InterpolationMode.NEAREST, InterpolationMode.BILINEAR, InterpolationMode.BICUBIC]
PRESETS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def make_inputs():
    rng = np.random.RandomState(4321)
    inputs = {
        "rgb": rng.randint(0, 256, (9, 13, 3)),
        "grey": rng.randint(0, 256, (7, 11, 1)),
        "rgba": rng.randint(0, 256, (5, 6, 4)),
        "thin": rng.randint(0, 256, (2, 5, 3)),
    }
    inputs["rgba"][0, :2, 3] = 0  # some transparent and opaque pixels
    inputs["rgba"][1, :2, 3] = 255
    # smooth, photo-like: low-frequency colour waves, a soft blob and a little noise, not spanning
    # the full range (so autocontrast and equalize have work to do)
    y, x = np.mgrid[0:32, 0:32].astype(np.float64)
    blob = np.exp(-((x - 20) ** 2 + (y - 11) ** 2) / 40.0)
    r = 110 + 60 * np.sin(x / 6.0) * np.cos(y / 9.0) + 70 * blob
    g = 95 + 45 * np.cos((x + y) / 8.0) + 30 * blob
    b = 80 + 35 * np.sin(y / 5.0 + 1.0) + 2.0 * x
    smooth = np.stack([r, g, b], axis=2) + rng.normal(0, 2.0, (32, 32, 3))
    inputs["smooth"] = np.clip(np.round(smooth), 0, 255)
    flat = np.full((6, 8, 3), 90)
    flat[2:4, 3:6] = 140
    flat[5, :, 1] = 91
    inputs["flat"] = flat
    return {k: v.astype(np.uint8) for k, v in inputs.items()}


def to_pil(array):
    c = array.shape[2]
    return Image.fromarray(array[:, :, 0] if c == 1 else array, MODES[c])


def to_array(image):
    a = np.asarray(image, dtype=np.uint8)
    return a.reshape(a.shape[0], a.shape[1], -1).copy()


def fill_value(fill, channels):
    """The PIL fill for an image of `channels` from four per-channel values."""
    return int(fill[0]) if channels == 1 else tuple(int(v) for v in fill[:channels])


def cutout_abs(img, cx, cy, v, fill):
    """FixMatch's CutoutAbs with the centre (np.random.uniform(0, w), (0, h)) given."""
    w, h = img.size
    x0 = int(max(0, cx - v / 2.0))
    y0 = int(max(0, cy - v / 2.0))
    x1 = int(min(w, x0 + v))
    y1 = int(min(h, y0 + v))
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, x1, y1), fill)
    return img


# ---- FixMatch RandAugmentMC ops (behaviour of kekmodel/FixMatch-pytorch dataset/randaugment.py) ----
PARAMETER_MAX = 10


def _float_parameter(v, max_v):
    return float(v) * max_v / PARAMETER_MAX


def _int_parameter(v, max_v):
    return int(v * max_v / PARAMETER_MAX)


def ra_op(img, name, v, negate, fill):
    """One fixmatch_augment_pool() op; `negate` replaces the op's random.random() < 0.5 sign draw;
    fill None is the original (no fillcolor), a tuple the derivatives' fillcolor."""
    opts = {} if fill is None else {"fillcolor": fill}
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Brightness":
        return ImageEnhance.Brightness(img).enhance(_float_parameter(v, 0.9) + 0.05)
    if name == "Color":
        return ImageEnhance.Color(img).enhance(_float_parameter(v, 0.9) + 0.05)
    if name == "Contrast":
        return ImageEnhance.Contrast(img).enhance(_float_parameter(v, 0.9) + 0.05)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Identity":
        return img
    if name == "Posterize":
        return ImageOps.posterize(img, _int_parameter(v, 4) + 4)
    if name == "Rotate":
        v = _int_parameter(v, 30) + 0
        return img.rotate(-v if negate else v, **opts)
    if name == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(_float_parameter(v, 0.9) + 0.05)
    if name in ("ShearX", "ShearY"):
        v = _float_parameter(v, 0.3) + 0
        v = -v if negate else v
        m = (1, v, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, v, 1, 0)
        return img.transform(img.size, Image.AFFINE, m, **opts)
    if name == "Solarize":
        return ImageOps.solarize(img, 256 - (_int_parameter(v, 256) + 0))
    if name in ("TranslateX", "TranslateY"):
        v = _float_parameter(v, 0.3) + 0
        v = -v if negate else v
        if name == "TranslateX":
            return img.transform(img.size, Image.AFFINE, (1, 0, int(v * img.size[0]), 0, 1, 0), **opts)
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, int(v * img.size[1])), **opts)
    raise ValueError(name)


RA_OPS = ["AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "Posterize",
          "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY"]
RA_SIGNED = {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"}
RA_UNPARAMETERISED = {"AutoContrast", "Equalize", "Identity"}


def functional(op, img, p):
    c = len(img.getbands())
    if op == "resize_shorter":
        return F.resize(img, p[0], FILTERS[p[1]])
    if op == "resize":
        return F.resize(img, [p[0], p[1]], FILTERS[p[2]])
    if op == "crop":
        return F.crop(img, *p)
    if op == "center_crop":
        return F.center_crop(img, [p[0], p[1]])
    if op == "hflip":
        return F.hflip(img)
    if op == "pad":
        mode = ["constant", "reflect"][p[4]]
        return F.pad(img, list(p[:4]), fill=fill_value(p[5:9], c), padding_mode=mode)
    if op == "to_grey":
        return F.rgb_to_grayscale(img, 1)
    if op == "to_rgb":
        return img.convert("RGB")
    if op in ("brightness", "contrast", "saturation", "hue", "sharpness"):
        return getattr(F, "adjust_" + op)(img, p[0])
    if op == "autocontrast":
        return F.autocontrast(img)
    if op == "equalize":
        return F.equalize(img)
    if op == "posterize":
        return F.posterize(img, p[0])
    if op == "solarize":
        return F.solarize(img, p[0])
    if op == "rotate":
        fill = fill_value(p[1:5], c)
        out = img.rotate(p[0], Image.NEAREST, expand=False, fillcolor=fill)
        via_tv = F.rotate(img, p[0], InterpolationMode.NEAREST, fill=list(p[1:1 + c]))
        assert np.array_equal(to_array(out), to_array(via_tv)), "F.rotate differs from img.rotate"
        return out
    if op == "affine":
        return img.transform(img.size, Image.AFFINE, tuple(p[:6]), Image.NEAREST,
                             fillcolor=fill_value(p[6:10], c))
    if op in ("shear_x", "shear_y", "translate_x", "translate_y"):
        v = p[0]
        m = {"shear_x": (1, v, 0, 0, 1, 0), "shear_y": (1, 0, 0, v, 1, 0),
             "translate_x": (1, 0, v, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, v)}[op]
        return img.transform(img.size, Image.AFFINE, m, Image.NEAREST, fillcolor=fill_value(p[1:5], c))
    if op == "cutout":
        return cutout_abs(img, p[0], p[1], p[2], fill_value(p[3:7], c))
    raise ValueError(op)


GREY128 = (128, 128, 128, 255)
FUNCTIONAL_CASES = [
    # geometry
    ("resize_shorter", "rgb", (5, 1)), ("resize_shorter", "rgb", (20, 1)),
    ("resize_shorter", "grey", (4, 2)), ("resize_shorter", "rgb", (9, 1)),
    ("resize", "rgb", (6, 4, 1)), ("resize", "grey", (3, 14, 0)),
    ("crop", "rgb", (2, 3, 4, 5)), ("crop", "rgb", (-2, 10, 5, 6)), ("crop", "rgba", (3, -1, 4, 4)),
    ("center_crop", "rgb", (5, 5)), ("center_crop", "rgb", (4, 7)), ("center_crop", "rgb", (9, 13)),
    ("center_crop", "rgb", (12, 15)), ("center_crop", "grey", (10, 4)), ("center_crop", "grey", (2, 8)),
    ("center_crop", "rgba", (8, 3)),
    ("hflip", "rgb", ()), ("hflip", "grey", ()), ("hflip", "rgba", ()),
    ("pad", "rgb", (1, 2, 3, 4, 0, 0, 0, 0, 0)), ("pad", "rgb", (2, 0, 1, 3, 0, 10, 20, 30, 0)),
    ("pad", "rgba", (1, 1, 2, 2, 0, 0, 0, 0, 0)), ("pad", "rgb", (4, 4, 4, 4, 1, 0, 0, 0, 0)),
    ("pad", "grey", (8, 3, 12, 9, 1, 0, 0, 0, 0)), ("pad", "thin", (6, 5, 7, 4, 1, 0, 0, 0, 0)),
    ("to_grey", "rgb", ()), ("to_grey", "rgba", ()), ("to_grey", "grey", ()),
    ("to_rgb", "grey", ()), ("to_rgb", "rgba", ()),
    # colour
    ("brightness", "smooth", (0.3,)), ("brightness", "smooth", (1.7,)), ("brightness", "rgb", (0.5,)),
    ("brightness", "grey", (1.5,)), ("brightness", "rgba", (0.8,)), ("brightness", "rgb", (0.0,)),
    # (float)0.7 and (float)0.9 are below 0.7 and 0.9: PIL's float blend truncates 7 * 10 to 6
    ("brightness", "rgb", (0.7,)), ("saturation", "rgb", (0.9,)), ("contrast", "grey", (0.7,)),
    ("contrast", "smooth", (0.2,)), ("contrast", "smooth", (1.6,)), ("contrast", "rgb", (0.5,)),
    ("contrast", "grey", (1.4,)), ("contrast", "rgba", (0.7,)), ("contrast", "flat", (3.0,)),
    ("saturation", "smooth", (0.0,)), ("saturation", "smooth", (0.4,)), ("saturation", "smooth", (1.9,)),
    ("saturation", "rgb", (1.5,)), ("saturation", "grey", (0.5,)), ("saturation", "rgba", (0.5,)),
    ("hue", "smooth", (-0.5,)), ("hue", "smooth", (-0.25,)), ("hue", "smooth", (0.1,)),
    ("hue", "smooth", (0.45,)), ("hue", "rgb", (0.3,)), ("hue", "rgb", (-0.07,)), ("hue", "grey", (0.2,)),
    ("hue", "flat", (0.5,)),
    ("sharpness", "smooth", (0.0,)), ("sharpness", "smooth", (0.5,)), ("sharpness", "smooth", (2.0,)),
    ("sharpness", "rgb", (1.5,)), ("sharpness", "grey", (0.3,)), ("sharpness", "thin", (0.2,)),
    ("sharpness", "rgba", (1.8,)),
    ("autocontrast", "smooth", ()), ("autocontrast", "rgb", ()), ("autocontrast", "grey", ()),
    ("autocontrast", "flat", ()),
    ("equalize", "smooth", ()), ("equalize", "rgb", ()), ("equalize", "grey", ()), ("equalize", "flat", ()),
    ("posterize", "smooth", (1,)), ("posterize", "rgb", (4,)), ("posterize", "grey", (7,)),
    ("posterize", "rgb", (0,)), ("posterize", "rgb", (8,)),
    ("solarize", "rgb", (0,)), ("solarize", "rgb", (100,)), ("solarize", "grey", (128,)),
    ("solarize", "smooth", (256,)), ("solarize", "rgb", (77.5,)),
    # PIL geometry as FixMatch uses it
    ("rotate", "rgb", (30,) + GREY128), ("rotate", "rgb", (-17.5,) + GREY128), ("rotate", "rgb", (90, 0, 0, 0, 0)),
    ("rotate", "rgb", (180, 0, 0, 0, 0)), ("rotate", "rgb", (270, 9, 8, 7, 0)), ("rotate", "rgb", (0, 0, 0, 0, 0)),
    ("rotate", "rgb", (-390, 5, 5, 5, 0)), ("rotate", "grey", (45, 7, 0, 0, 0)),
    ("rotate", "smooth", (12,) + GREY128), ("rotate", "smooth", (90, 0, 0, 0, 0)),
    ("rotate", "smooth", (-90, 0, 0, 0, 0)), ("rotate", "rgba", (33.3, 1, 2, 3, 4)),
    ("affine", "rgb", (0.7, 0.2, 1.5, -0.1, 1.2, -0.8, 128, 128, 128, 255)),
    ("affine", "rgb", (1.3, 0, -2, 0, 0.8, 1, 0, 0, 0, 0)), ("affine", "rgb", (-1, 0, 13, 0, 1, 0, 0, 0, 0, 0)),
    ("affine", "rgb", (1, 5000, -2500, 0, 1, 0, 3, 3, 3, 0)),
    ("shear_x", "rgb", (0.3,) + GREY128), ("shear_x", "rgb", (-0.21,) + GREY128),
    ("shear_y", "rgb", (0.17,) + GREY128), ("shear_y", "grey", (-0.3, 128, 0, 0, 0)),
    ("translate_x", "rgb", (4,) + GREY128), ("translate_x", "rgb", (-3,) + GREY128),
    ("translate_y", "rgb", (2,) + GREY128), ("translate_y", "grey", (-5, 128, 0, 0, 0)),
    ("translate_x", "rgba", (2, 128, 128, 128, 255)),
    ("cutout", "rgb", (5.7, 2.2, 4, 127, 127, 127, 255)), ("cutout", "rgb", (0.3, 8.9, 6, 127, 127, 127, 255)),
    ("cutout", "rgb", (12.99, 0.0, 5, 1, 2, 3, 255)), ("cutout", "smooth", (16.5, 16.5, 16, 127, 127, 127, 255)),
    ("cutout", "grey", (3.5, 3.5, 3, 127, 0, 0, 0)), ("cutout", "rgba", (2.0, 2.0, 2, 127, 127, 127, 255)),
]

RA_CASES = []
for op in RA_OPS:
    magnitudes = [1] if op in RA_UNPARAMETERISED else [1, 5, 9]
    for v in magnitudes:
        RA_CASES.append((op, "smooth", v, 0, 128))
    if op in RA_SIGNED:
        RA_CASES.append((op, "smooth", 9, 1, 128))
        RA_CASES.append((op, "rgb", 7, 1, 128))   # non-square: width vs height matters
        RA_CASES.append((op, "smooth", 5, 1, -1))  # the kekmodel code's black fill
RA_CASES += [("Posterize", "grey", 10, 0, 128), ("Solarize", "grey", 10, 0, 128),
             ("Equalize", "grey", 1, 0, 128), ("Rotate", "grey", 9, 0, 128)]


def fmt(value):
    return str(value) if isinstance(value, int) else repr(float(value))


def main():
    inputs = make_inputs()
    tensors = {f"input/{k}": v for k, v in inputs.items()}
    for op, name, params in FUNCTIONAL_CASES:
        out = to_array(functional(op, to_pil(inputs[name]), params))
        key = f"{op}/{name}/" + ",".join(fmt(p) for p in params)
        assert key not in tensors, key
        tensors[key] = out
    for op, name, v, negate, fill in RA_CASES:
        img = to_pil(inputs[name])
        c = inputs[name].shape[2]
        pil_fill = None if fill < 0 else (fill if c == 1 else (fill,) * 3 + ((255,) if c == 4 else ()))
        out = to_array(ra_op(img, op, v, negate, pil_fill))
        tensors[f"ra/{op}/{name}/{v},{negate},{fill}"] = out
    for name in ("rgb", "grey"):
        for preset, (mean, std) in PRESETS.items():
            if name == "grey" and preset != "none":
                continue  # torchvision refuses three means for one channel
            t = F.to_tensor(to_pil(inputs[name]))
            t = F.normalize(t, list(mean)[: t.shape[0]], list(std)[: t.shape[0]])
            tensors[f"to_float/{name}/{preset}"] = t.numpy().astype(np.float32)
    path = os.path.join(GOLDEN, "transforms.safetensors")
    save(path, tensors, {"generator": "tests/ref/gen_transform_goldens.py",
                         "torchvision": __import__("torchvision").__version__,
                         "pillow": Image.__version__, "torch": torch.__version__})
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
