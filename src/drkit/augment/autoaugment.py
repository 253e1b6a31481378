"""RandAugment and TrivialAugmentWide as replayable ops.

The op list and magnitude tables follow torchvision's ``_AutoAugmentBase`` (14 ops, 31 bins by
default), except that translations are a *fraction* of the image side (TrivialAugmentWide's 32 px
as 32/224) so replay works at any size; op, bin and sign are integers drawn once per view.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..device import to_device
from .base import FUSE_MAX_PIXELS, REFERENCE_SIDE, Op, register_op
from .codec import Field
from .device_ops import PER_VIEW, TWINS, enhance, inverse_matrix, warp
from .draws import BatchContext, Draws, chance, integers, normal

NEAREST = InterpolationMode.NEAREST


def _shear(axis: int) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def op(img: torch.Tensor, m: float) -> torch.Tensor:
        shear = [math.degrees(math.atan(m)), 0.0]
        return F.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear if axis == 0 else shear[::-1],
                        interpolation=NEAREST, center=[0, 0])
    return op


def _translate(axis: int) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def op(img: torch.Tensor, m: float) -> torch.Tensor:
        px = int(m * img.shape[-1 - axis])
        return F.affine(img, angle=0.0, translate=[px, 0] if axis == 0 else [0, px], scale=1.0, shear=[0.0, 0.0],
                        interpolation=NEAREST)
    return op


_Table = Callable[[int], torch.Tensor]


def _lin(ra: float, ta: float, start: float = 0.0) -> tuple[_Table, _Table]:
    return lambda b: torch.linspace(start, ra, b), lambda b: torch.linspace(start, ta, b)


_ZERO: tuple[_Table, _Table] = (torch.zeros, torch.zeros)
_ENHANCE = _lin(0.9, 0.99)
_POSTERIZE = tuple(lambda b, q=q: 8 - (torch.arange(b) / ((b - 1) / q)).round().int() for q in (4, 6))
# name -> (apply(img, magnitude), magnitude table(num_bins) for RA, for TA-wide, signed)
AA_OPS: list[tuple[str, Callable[[torch.Tensor, float], torch.Tensor], _Table, _Table, bool]] = [
    (name, fn, *tables, signed) for name, fn, tables, signed in [
        ("Identity", lambda x, m: x, _ZERO, False),
        ("ShearX", _shear(0), _lin(0.3, 0.99), True),
        ("ShearY", _shear(1), _lin(0.3, 0.99), True),
        ("TranslateX", _translate(0), _lin(150.0 / 331.0, 32.0 / 224.0), True),
        ("TranslateY", _translate(1), _lin(150.0 / 331.0, 32.0 / 224.0), True),
        ("Rotate", lambda x, m: F.rotate(x, m, interpolation=NEAREST), _lin(30.0, 135.0), True),
        ("Brightness", lambda x, m: F.adjust_brightness(x, 1.0 + m), _ENHANCE, True),
        ("Color", lambda x, m: F.adjust_saturation(x, 1.0 + m), _ENHANCE, True),
        ("Contrast", lambda x, m: F.adjust_contrast(x, 1.0 + m), _ENHANCE, True),
        ("Sharpness", lambda x, m: F.adjust_sharpness(x, 1.0 + m), _ENHANCE, True),
        ("Posterize", lambda x, m: F.posterize(x, int(m)), _POSTERIZE, False),
        ("Solarize", lambda x, m: F.solarize(x, m), _lin(0.0, 0.0, start=255.0), False),
        ("AutoContrast", lambda x, m: F.autocontrast(x), _ZERO, False),
        ("Equalize", lambda x, m: F.equalize(x), _ZERO, False),
    ]
]
AA_OP_NAMES = [o[0] for o in AA_OPS]


@functools.lru_cache(maxsize=None)
def magnitudes(op: int, num_bins: int, wide: bool) -> tuple[float, ...]:
    """The magnitude table of op ``op`` (computed once per table, not per view)."""
    _, _, ra_table, ta_table, _ = AA_OPS[op]
    return tuple(float(v) for v in (ta_table if wide else ra_table)(num_bins))


def apply_aa(img: torch.Tensor, op: int, mag_bin: int, sign: int, num_bins: int, wide: bool) -> torch.Tensor:
    """Table op ``op`` at magnitude bin ``mag_bin`` (negated when ``sign`` and signed), CHW or NCHW."""
    name, fn = AA_OPS[op][:2]
    m = float(_magnitude_table(num_bins, wide)[op, mag_bin, sign])
    if img.device.type != "cpu" and name in TWINS:  # same pixels without synchronising the stream
        return TWINS[name](img, m)
    return fn(img, m)


class _TableOp(Op):
    def apply_batch(self, x: torch.Tensor, params: list[dict[str, int]], out_size: int) -> torch.Tensor:
        """Each stage sorts the views by (op, signed magnitude): all warps go through one grid sample and each
        colour op and sharpening through one call with a magnitude per view (on the CPU only up to
        ``FUSE_MAX_PIXELS``), other ops once per group: each view gets the bytes its own op call gives."""
        wide = self.name == "ta"
        bins = self.settings["bins"]
        h, w = x.shape[-2:]
        n = len(params)
        fuse = x.device.type != "cpu" or h * w <= FUSE_MAX_PIXELS
        every = [f.name for f in self.fields()]  # (op, magnitude bin, sign) of each stage
        codes = np.array([[p[k] for k in every] for p in params], dtype=np.int64).reshape(n, len(every))
        for s in range(len(every) // 3):
            choice, mag, sign = codes[:, 3 * s:3 * s + 3].T
            m = _magnitude_table(bins, wide)[choice, mag, sign]
            order = np.lexsort((m, choice))
            choice, mag, sign, m = choice[order], mag[order], sign[order], m[order]
            starts = np.flatnonzero(np.r_[True, (choice[1:] != choice[:-1]) | (m[1:] != m[:-1])])
            xs = x[to_device(order, x.device)]
            warped: list[int] = []
            matrices: list[tuple[float, ...]] = []
            for a, b in zip(starts.tolist(), np.r_[starts[1:], n].tolist()):
                name = AA_OP_NAMES[choice[a]]
                matrix = inverse_matrix(name, float(m[a]), h, w) if fuse else None
                if matrix is not None:
                    warped += range(a, b)
                    matrices += [matrix] * (b - a)
                elif name in PER_VIEW and fuse:  # at the op's first group, one call for all its magnitudes
                    if a == 0 or choice[a - 1] != choice[a]:
                        end = int(np.searchsorted(choice, choice[a], side="right"))
                        xs[a:end] = enhance(xs[a:end], name, m[a:end])
                elif name != "Identity":
                    xs[a:b] = apply_aa(xs[a:b], int(choice[a]), int(mag[a]), int(sign[a]), bins, wide)
            if warped:  # the table's warps are ops 1-5: one run once sorted (a slice), else an index
                run = warped[-1] - warped[0] + 1 == len(warped)
                idx = slice(warped[0], warped[-1] + 1) if run else to_device(warped, x.device)
                xs[idx] = warp(xs[idx], matrices)
            x = xs[to_device(np.argsort(order), x.device)]  # a gather back: cheaper than scattering into a new tensor
        return x


@register_op
class RandAugment(_TableOp):
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


@register_op
class TrivialAugmentWide(_TableOp):
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


@functools.lru_cache(maxsize=None)
def _magnitude_table(bins: int, wide: bool) -> np.ndarray:
    """``[op, bin, sign]`` -> the signed magnitude :func:`apply_aa` applies (float64)."""
    table = np.array([magnitudes(o, bins, wide) for o in range(len(AA_OPS))], dtype=np.float64)
    signed = np.array([o[4] for o in AA_OPS])[:, None]
    return np.stack([table, np.where(signed, -table, table)], axis=-1)
