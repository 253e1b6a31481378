"""Crops that map the source image to the output size. Boxes are in *source* pixels, so a student
replaying at its own input size crops exactly the region the teacher saw; a box may extend past
the image (pad-crop), the outside being zero."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..errors import RecipeError
from .base import REFERENCE_SIDE, Op, register_op
from .codec import Field
from .draws import BatchContext, Draws, area_aspect_tries, chance, first_fit, integers

# 16-bit box fields: offsets may be negative (padding), sizes up to 65,536 px.
_BOX_FIELDS = [Field("top", -4096, 61439), Field("left", -4096, 61439),
               Field("height", 1, 65536), Field("width", 1, 65536), Field("flip", 0, 1)]


def crop_resize(img: torch.Tensor, p: dict[str, int], out_size: int) -> torch.Tensor:
    """Crop the source box (zero outside the image), resize to ``out_size``, maybe flip."""
    x = F.crop(img, p["top"], p["left"], p["height"], p["width"])
    if x.shape[-2:] != (out_size, out_size):
        x = F.resize(x, [out_size, out_size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if p["flip"]:
        x = F.horizontal_flip(x)
    return x.contiguous()


class _BoxCrop(Op):
    geometric_source = True

    def fields(self) -> list[Field]:
        return list(_BOX_FIELDS)

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        return crop_resize(img, params, out_size)


@register_op
class RandomResizedCrop(_BoxCrop):
    """torchvision's RandomResizedCrop sampling (10 tries, then centre fallback) + flip."""

    name = "rrc"
    defaults = {"scale_min": 0.08, "scale_max": 1.0, "ratio_min": 3 / 4, "ratio_max": 4 / 3, "flip": 0.5}
    limits = {"scale_min": (1e-4, 1.0), "scale_max": (1e-4, 1.0), "ratio_min": (1e-2, 1e2), "ratio_max": (1e-2, 1e2),
              "flip": (0.0, 1.0)}

    @classmethod
    def size_defaults(cls, side: int) -> dict[str, float]:
        """Below 224 px the smallest crop grows as 1 / side (at most 0.5): 8 % of 28 px is unlabelable."""
        return {} if side >= REFERENCE_SIDE else {"scale_min": round(min(0.5, 0.08 * REFERENCE_SIDE / side), 3)}

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        s = self.settings
        height, width = ctx.src_h[:, None], ctx.src_w[:, None]
        slots = d.uniform(23)  # 10 tries of (scale, ratio), then top, left, flip
        area, aspect = area_aspect_tries(slots[:, :20].reshape(ctx.n, 10, 2), s)
        target = (height * width) * area
        w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
        h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        found, h, w = first_fit((w > 0) & (w <= width) & (h > 0) & (h <= height), h, w)
        in_ratio = ctx.src_w / ctx.src_h  # the fallback: centre crop at the clamped ratio, as torchvision
        cw = np.where(in_ratio > s["ratio_max"], np.rint(ctx.src_h * s["ratio_max"]).astype(np.int64), ctx.src_w)
        ch = np.where(in_ratio < s["ratio_min"], np.rint(ctx.src_w / s["ratio_min"]).astype(np.int64), ctx.src_h)
        h, w = np.where(found, h, ch), np.where(found, w, cw)
        top = np.where(found, integers(slots[:, 20], 0, ctx.src_h - h), (ctx.src_h - h) // 2)
        left = np.where(found, integers(slots[:, 21], 0, ctx.src_w - w), (ctx.src_w - w) // 2)
        return {"top": top, "left": left, "height": h, "width": w, "flip": chance(slots[:, 22], s["flip"])}


@register_op
class PadCrop(_BoxCrop):
    """CIFAR-style: pad by ``pad`` px (or ``pad_frac`` of the short side), crop a source-sized box.

    ``resize`` >= 0 is the reference's ``Resize`` then ``RandomCrop(padding=pad)`` (its CIFAR recipe,
    ``drkit import-mldr``): the short side resized to ``resize`` (0: the output size) and an
    output-sized crop whose corner is stored in padded, resized pixels. Resize-then-crop has no
    source-pixel box, so such views replay at the size they were drawn for."""

    name = "padcrop"
    defaults = {"pad": -1, "pad_frac": 0.125, "flip": 0.5, "resize": -1}
    limits = {"pad": (-1, 4096), "pad_frac": (0.0, 1.0), "flip": (0.0, 1.0), "resize": (-1, 16384)}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        if self.settings["resize"] >= 0 and self.settings["pad"] < 0:
            raise RecipeError("op 'padcrop': resize needs pad in pixels (pad_frac would depend on the output size)")

    def fields(self) -> list[Field]:
        if self.settings["resize"] < 0:
            return super().fields()
        return [Field("top", 0, 65535), Field("left", 0, 65535), Field("flip", 0, 1)]

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        """``resize`` >= 0: torchvision ``RandomCrop`` corners for the output side ``resize`` implies
        (0: the source's short side; the output size is not known here)."""
        s, h, w = self.settings, ctx.src_h, ctx.src_w
        short = np.full(ctx.n, s["resize"], np.int64) if s["resize"] > 0 else np.minimum(h, w)
        pad = s["pad"] if s["pad"] >= 0 else np.rint(s["pad_frac"] * short).astype(np.int64)
        u = d.uniform(3)
        flip = chance(u[:, 2], s["flip"])
        if s["resize"] < 0:
            return {"top": integers(u[:, 0], -pad, pad), "left": integers(u[:, 1], -pad, pad), "height": h.copy(),
                    "width": w.copy(), "flip": flip}
        rh, rw = np.where(h <= w, short, short * h // w), np.where(h <= w, short * w // h, short)
        return {"top": integers(u[:, 0], 0, np.maximum(0, rh + 2 * pad - short)),
                "left": integers(u[:, 1], 0, np.maximum(0, rw + 2 * pad - short)), "flip": flip}

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        if self.settings["resize"] < 0:
            return crop_resize(img, params, out_size)
        x = F.resize(img, self.settings["resize"] or out_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        pad = self.settings["pad"]
        x = F.crop(x, params["top"] - pad, params["left"] - pad, out_size, out_size)
        return (F.horizontal_flip(x) if params["flip"] else x).contiguous()


@register_op
class Resize(_BoxCrop):
    """No augmentation: the whole image resized to the output size (a recipe of plain views)."""

    name = "resize"
    defaults = {"flip": 0.0}
    limits = {"flip": (0.0, 1.0)}

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        zero = np.zeros(ctx.n, np.int64)
        return {"top": zero, "left": zero.copy(), "height": ctx.src_h.copy(), "width": ctx.src_w.copy(),
                "flip": chance(d.uniform(1)[:, 0], self.settings["flip"])}


def eval_transform(img: torch.Tensor, out_size: int, crop_pct: float = 1.0) -> torch.Tensor:
    """The plain evaluation view: resize the short side to ``out_size / crop_pct``, centre-crop."""
    h, w = img.shape[-2:]
    if crop_pct >= 1.0 and h == w:
        if (h, w) == (out_size, out_size):
            return img
        return F.resize(img, [out_size, out_size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    short = int(math.floor(out_size / crop_pct))
    x = F.resize(img, short, interpolation=InterpolationMode.BILINEAR, antialias=True)
    return F.center_crop(x, [out_size, out_size]).contiguous()
