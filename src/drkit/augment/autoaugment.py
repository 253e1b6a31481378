"""RandAugment and TrivialAugmentWide as replayable ops.

The op list and magnitude tables follow torchvision's ``_AutoAugmentBase`` (14 ops, 31 bins by
default). Two deliberate differences, both so replay works at any size: translations are stored
as a *fraction* of the image side (torchvision's RandAugment already uses 150/331 of the side;
TrivialAugmentWide's 32 px is taken as 32/224 of the side), and the op index, magnitude bin and
sign are integers drawn once per view, so the pixel work is a pure function of the record.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..device import to_device
from .base import FUSE_MAX_PIXELS, REFERENCE_SIDE, Op, register_op
from .codec import Field
from .device_ops import TWINS, inverse_matrix, sharpness_runs, warp
from .draws import BatchContext, Draws, chance, integers, normal

NEAREST = InterpolationMode.NEAREST


def _shear_x(img: torch.Tensor, m: float) -> torch.Tensor:
    return F.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(m)), 0.0],
                    interpolation=NEAREST, center=[0, 0])


def _shear_y(img: torch.Tensor, m: float) -> torch.Tensor:
    return F.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(m))],
                    interpolation=NEAREST, center=[0, 0])


def _translate_x(img: torch.Tensor, m: float) -> torch.Tensor:
    px = int(m * img.shape[-1])
    return F.affine(img, angle=0.0, translate=[px, 0], scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST)


def _translate_y(img: torch.Tensor, m: float) -> torch.Tensor:
    px = int(m * img.shape[-2])
    return F.affine(img, angle=0.0, translate=[0, px], scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST)


def _rotate(img: torch.Tensor, m: float) -> torch.Tensor:
    return F.rotate(img, m, interpolation=NEAREST)


# name -> (apply(img, magnitude), magnitude table(num_bins) for RA, for TA-wide, signed)
_Table = Callable[[int], torch.Tensor]
AA_OPS: list[tuple[str, Callable[[torch.Tensor, float], torch.Tensor], _Table, _Table, bool]] = [
    ("Identity", lambda x, m: x, lambda b: torch.zeros(b), lambda b: torch.zeros(b), False),
    ("ShearX", _shear_x, lambda b: torch.linspace(0.0, 0.3, b), lambda b: torch.linspace(0.0, 0.99, b), True),
    ("ShearY", _shear_y, lambda b: torch.linspace(0.0, 0.3, b), lambda b: torch.linspace(0.0, 0.99, b), True),
    ("TranslateX", _translate_x, lambda b: torch.linspace(0.0, 150.0 / 331.0, b),
     lambda b: torch.linspace(0.0, 32.0 / 224.0, b), True),
    ("TranslateY", _translate_y, lambda b: torch.linspace(0.0, 150.0 / 331.0, b),
     lambda b: torch.linspace(0.0, 32.0 / 224.0, b), True),
    ("Rotate", _rotate, lambda b: torch.linspace(0.0, 30.0, b), lambda b: torch.linspace(0.0, 135.0, b), True),
    ("Brightness", lambda x, m: F.adjust_brightness(x, 1.0 + m), lambda b: torch.linspace(0.0, 0.9, b),
     lambda b: torch.linspace(0.0, 0.99, b), True),
    ("Color", lambda x, m: F.adjust_saturation(x, 1.0 + m), lambda b: torch.linspace(0.0, 0.9, b),
     lambda b: torch.linspace(0.0, 0.99, b), True),
    ("Contrast", lambda x, m: F.adjust_contrast(x, 1.0 + m), lambda b: torch.linspace(0.0, 0.9, b),
     lambda b: torch.linspace(0.0, 0.99, b), True),
    ("Sharpness", lambda x, m: F.adjust_sharpness(x, 1.0 + m), lambda b: torch.linspace(0.0, 0.9, b),
     lambda b: torch.linspace(0.0, 0.99, b), True),
    ("Posterize", lambda x, m: F.posterize(x, int(m)),
     lambda b: 8 - (torch.arange(b) / ((b - 1) / 4)).round().int(),
     lambda b: 8 - (torch.arange(b) / ((b - 1) / 6)).round().int(), False),
    ("Solarize", lambda x, m: F.solarize(x, m), lambda b: torch.linspace(255.0, 0.0, b),
     lambda b: torch.linspace(255.0, 0.0, b), False),
    ("AutoContrast", lambda x, m: F.autocontrast(x), lambda b: torch.zeros(b), lambda b: torch.zeros(b), False),
    ("Equalize", lambda x, m: F.equalize(x), lambda b: torch.zeros(b), lambda b: torch.zeros(b), False),
]
AA_OP_NAMES = [o[0] for o in AA_OPS]


@functools.lru_cache(maxsize=None)
def magnitudes(op: int, num_bins: int, wide: bool) -> tuple[float, ...]:
    """The magnitude table of op ``op`` (computed once per table, not per view)."""
    _, _, ra_table, ta_table, _ = AA_OPS[op]
    return tuple(float(v) for v in (ta_table if wide else ra_table)(num_bins))


def signed_magnitude(op: int, mag_bin: int, sign: int, num_bins: int, wide: bool) -> float:
    """Table op ``op``'s magnitude at bin ``mag_bin``, negated when ``sign`` and the op is signed."""
    m = magnitudes(op, num_bins, wide)[mag_bin]
    return -m if AA_OPS[op][4] and sign else m


def apply_aa(img: torch.Tensor, op: int, mag_bin: int, sign: int, num_bins: int, wide: bool) -> torch.Tensor:
    """Apply table op ``op`` at magnitude bin ``mag_bin`` (negated when ``sign`` and signed);
    ``img`` is one CHW image or a batch of them."""
    name, fn = AA_OPS[op][:2]
    m = signed_magnitude(op, mag_bin, sign, num_bins, wide)
    if img.device.type != "cpu" and name in TWINS:  # same pixels without synchronising the stream
        return TWINS[name](img, m)
    return fn(img, m)


@register_op
class RandAugment(Op):
    """RandAugment: ``n`` ops, magnitude ``m`` of ``bins`` (``mstd`` > 0 jitters it per op)."""

    name = "ra"
    defaults = {"n": 2, "m": 9, "bins": 31, "mstd": 0.0}
    limits = {"n": (0, 16), "m": (0, 1000), "bins": (2, 1000), "mstd": (0.0, 1000.0)}

    @classmethod
    def size_defaults(cls, side: int) -> dict[str, int]:
        """m = 9 is tuned for 224 px; smaller images get m scaled by sqrt(side / 224) (28 px: 3)."""
        return {} if side >= REFERENCE_SIDE else {"m": max(1, round(9 * math.sqrt(side / REFERENCE_SIDE)))}

    def fields(self) -> list[Field]:
        out: list[Field] = []
        for k in range(self.settings["n"]):
            out += [Field(f"op{k}", 0, len(AA_OPS) - 1), Field(f"mag{k}", 0, self.settings["bins"] - 1),
                    Field(f"sign{k}", 0, 1)]
        return out

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        s = self.settings
        out: dict[str, np.ndarray] = {}
        u = d.uniform(4 * s["n"])  # stage k: op, two for the magnitude's jitter, sign
        for k in range(s["n"]):
            out[f"op{k}"] = integers(u[:, 4 * k], 0, len(AA_OPS) - 1)
            m = np.full(ctx.n, s["m"], np.int64)
            if s["mstd"] > 0:
                m = np.rint(s["m"] + s["mstd"] * normal(u[:, 4 * k + 1], u[:, 4 * k + 2])).astype(np.int64)
            out[f"mag{k}"] = np.clip(m, 0, s["bins"] - 1)
            out[f"sign{k}"] = chance(u[:, 4 * k + 3], 0.5)
        return out

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        for k in range(self.settings["n"]):
            img = apply_aa(img, params[f"op{k}"], params[f"mag{k}"], params[f"sign{k}"],
                           self.settings["bins"], wide=False)
        return img

    def apply_batch(self, x: torch.Tensor, params: list[dict[str, int]], out_size: int) -> torch.Tensor:
        return augment_batch(x, self, params)


@register_op
class TrivialAugmentWide(Op):
    """TrivialAugmentWide: one op, uniformly random magnitude bin from the wide table."""

    name = "ta"
    defaults = {"bins": 31, "max_bin": -1}  # max_bin -1: the whole table (bins - 1)
    limits = {"bins": (2, 1000), "max_bin": (-1, 1000)}

    @classmethod
    def size_defaults(cls, side: int) -> dict[str, int]:
        """The top magnitude bin shrinks by sqrt(side / 224) below 224 px (28 px: bin 11 of 30)."""
        if side >= REFERENCE_SIDE:
            return {}
        return {"max_bin": max(1, round((cls.defaults["bins"] - 1) * math.sqrt(side / REFERENCE_SIDE)))}

    def fields(self) -> list[Field]:
        return [Field("op", 0, len(AA_OPS) - 1), Field("mag", 0, self.settings["bins"] - 1), Field("sign", 0, 1)]

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        top = self.settings["bins"] - 1
        if self.settings["max_bin"] >= 0:
            top = min(top, self.settings["max_bin"])
        u = d.uniform(3)
        return {"op": integers(u[:, 0], 0, len(AA_OPS) - 1), "mag": integers(u[:, 1], 0, top),
                "sign": chance(u[:, 2], 0.5)}

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        return apply_aa(img, params["op"], params["mag"], params["sign"], self.settings["bins"], wide=True)

    def apply_batch(self, x: torch.Tensor, params: list[dict[str, int]], out_size: int) -> torch.Tensor:
        return augment_batch(x, self, params)


# ----------------------------------------------------------------------------------------------
# the batched form (the batched renderer's RandAugment / TrivialAugment step)
# ----------------------------------------------------------------------------------------------
def augment_batch(x: torch.Tensor, op: Op, params: Sequence[dict[str, int]]) -> torch.Tensor:
    """RandAugment / TrivialAugment. Each stage sorts the views by (op, signed magnitude), so that
    every group is a slice of one gathered copy, applies the reference table op to each slice at
    once (unsigned ops ignore the sign, some the bin), and warps all shears, translations and
    rotations with one grid sample and a matrix per view, and all sharpenings with one smoothing;
    each view gets the bytes its own op call gives. On the CPU, images above 64 x 64 px skip the
    fusing: per-view grids and one big smoothing cost more there than the calls they save."""
    wide = op.name == "ta"
    stages = [("op", "mag", "sign")] if wide else [(f"op{k}", f"mag{k}", f"sign{k}") for k in range(op.settings["n"])]
    bins = op.settings["bins"]
    table = _magnitude_table(bins, wide)
    h, w = x.shape[-2:]
    n = len(params)
    fuse = x.device.type != "cpu" or h * w <= FUSE_MAX_PIXELS
    every = [k for keys in stages for k in keys]
    codes = np.array([[p[k] for k in every] for p in params], dtype=np.int64).reshape(n, len(every))
    for s in range(len(stages)):
        choice, mag, sign = codes[:, 3 * s:3 * s + 3].T
        m = table[choice, mag, sign]
        order = np.lexsort((m, choice))
        choice, mag, sign, m = choice[order], mag[order], sign[order], m[order]
        starts = np.flatnonzero(np.r_[True, (choice[1:] != choice[:-1]) | (m[1:] != m[:-1])])
        xs = x[to_device(order, x.device)]
        warped: list[int] = []
        matrices: list[tuple[float, ...]] = []
        sharpen: list[tuple[int, int, float]] = []
        for a, b in zip(starts.tolist(), np.r_[starts[1:], n].tolist()):
            name = AA_OP_NAMES[choice[a]]
            matrix = inverse_matrix(name, float(m[a]), h, w) if fuse else None
            if matrix is not None:
                warped += range(a, b)
                matrices += [matrix] * (b - a)
            elif fuse and name == "Sharpness":  # one smoothing for every magnitude
                sharpen.append((a, b, float(m[a])))
            elif name != "Identity":
                xs[a:b] = apply_aa(xs[a:b], int(choice[a]), int(mag[a]), int(sign[a]), bins, wide)
        if warped:
            idx = _run_or_index(warped, x.device)  # the table's warps are ops 1-5: one run once sorted
            xs[idx] = warp(xs[idx], matrices)
        if sharpen:
            span = slice(sharpen[0][0], sharpen[-1][1])
            xs[span] = sharpness_runs(xs[span], [(a - span.start, b - span.start, v) for a, b, v in sharpen])
        back = np.empty_like(order)
        back[order] = np.arange(n)
        x = xs[to_device(back, x.device)]  # a gather back: cheaper than scattering into a new tensor
    return x


def _run_or_index(rows: list[int], device: torch.device) -> slice | torch.Tensor:
    """Ascending ``rows`` as a slice when they are one run, else as an index."""
    return slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows) else to_device(rows, device)




@functools.lru_cache(maxsize=None)
def _magnitude_table(bins: int, wide: bool) -> np.ndarray:
    """``[op, bin, sign]`` -> the signed magnitude :func:`apply_aa` applies (float64)."""
    return np.array([[[signed_magnitude(o, b, s, bins, wide) for s in (0, 1)] for b in range(bins)]
                     for o in range(len(AA_OP_NAMES))], dtype=np.float64)
