"""Ops the reference work (apple/ml-dr) stores that drkit's own ops do not express, so that an
imported store (``drkit import-mldr``) replays what its teacher saw: their boxes are in output
pixels (drkit's are in source pixels or 1/255 of the side) and cannot be converted exactly.
``rcrop`` also draws new views (the reference's CIFAR recipe); ``erase`` and ``refmix`` only replay."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from .base import Op, register_op
from .codec import Field
from .draws import BatchContext, Draws, chance, integers
from .mixing import MODE_MIXUP, MixUpCutMix, bits_to_lam

_SIDE = 65535  # 16-bit pixel coordinates


@register_op
class ResizePadCrop(Op):
    """The reference's ``random_crop``: resize the short side (0: output size), pad, crop, flip."""

    name = "rcrop"
    defaults = {"resize": 0, "pad": 0, "flip": 0.5}
    limits = {"resize": (0, 16384), "pad": (0, 4096), "flip": (0.0, 1.0)}
    geometric_source = True

    def fields(self) -> list[Field]:
        return [Field("top", 0, _SIDE), Field("left", 0, _SIDE), Field("flip", 0, 1)]

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        """torchvision ``RandomCrop(padding=pad)`` corners on the resized image, for the output
        side ``resize`` implies (0: the source's short side; the output size is not known here).
        ``recipes/cifar100_plus.py`` reinforces with it."""
        h, w, pad = ctx.src_h, ctx.src_w, int(self.settings["pad"])
        short = np.full(ctx.n, self.settings["resize"], np.int64) if self.settings["resize"] else np.minimum(h, w)
        rh, rw = np.where(h <= w, short, short * h // w), np.where(h <= w, short * w // h, short)
        u = d.uniform(3)
        return {"top": integers(u[:, 0], 0, np.maximum(0, rh + 2 * pad - short)),
                "left": integers(u[:, 1], 0, np.maximum(0, rw + 2 * pad - short)),
                "flip": chance(u[:, 2], self.settings["flip"])}

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        short = int(self.settings["resize"]) or out_size
        x = F.resize(img, short, interpolation=InterpolationMode.BILINEAR, antialias=True)
        pad = int(self.settings["pad"])
        x = F.crop(x, params["top"] - pad, params["left"] - pad, out_size, out_size)
        if params["flip"]:
            x = F.horizontal_flip(x)
        return x.contiguous()


@register_op
class ZeroErase(Op):
    """The reference's ``random_erase``: a box in output pixels, zero fill."""

    name = "erase"
    defaults = {"p": 0.25, "scale_min": 0.02, "scale_max": 0.33, "ratio_min": 0.3, "ratio_max": 3.3}
    limits = {"p": (0.0, 1.0), "scale_min": (0.0, 1.0), "scale_max": (0.0, 1.0), "ratio_min": (1e-2, 1e2),
              "ratio_max": (1e-2, 1e2)}

    def fields(self) -> list[Field]:
        return [Field("on", 0, 1), Field("top", 0, 4095), Field("left", 0, 4095), Field("h", 0, 4096),
                Field("w", 0, 4096)]

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        if not params["on"]:
            return img
        out = img.clone()
        out[:, params["top"]:params["top"] + params["h"], params["left"]:params["left"] + params["w"]] = 0
        return out


#: bits of an imported view's mixing mode: MixUp, then CutMix from the unmixed partner
REF_MIXUP, REF_CUTMIX = 1, 2


@register_op
class ReferenceMix(MixUpCutMix):
    """The reference's mixing, replayed from imported records only: MixUp, then CutMix (a pixel box
    from the partner's unmixed view, rendered from parameters stored in the record), or either."""

    name = "refmix"
    layout = "reference"
    defaults = {"mixup": 1.0, "div_by": 1.0, "mixup_p": 1.0, "cutmix": 1.0, "cutmix_p": 1.0}
    limits = {"mixup": (0.0, 100.0), "div_by": (1.0, 100.0), "mixup_p": (0.0, 1.0), "cutmix": (0.0, 100.0),
              "cutmix_p": (0.0, 1.0)}

    draw = Op.draw  # replays imported views only: refuses to draw new ones

    def mix(self, img: torch.Tensor, partner: torch.Tensor, p: dict[str, int]) -> torch.Tensor:
        out = super().mix(img, partner, {**p, "mode": MODE_MIXUP}) if p["mode"] & REF_MIXUP else img  # drkit's blend
        if p["mode"] & REF_CUTMIX:
            out = out.clone()
            out[:, p["top"]:p["bottom"], p["left"]:p["right"]] = partner[:, p["top"]:p["bottom"], p["left"]:p["right"]]
        return out

    def weight(self, p: dict[str, int], out_size: int) -> float:
        """The reference's label weight of the view's own image: λ, times the uncut share."""
        w = bits_to_lam(p["lam"]) if p["mode"] & REF_MIXUP else 1.0
        if p["mode"] & REF_CUTMIX:
            area = max(0, p["bottom"] - p["top"]) * max(0, p["right"] - p["left"])
            w *= 1.0 - area / float(out_size * out_size)
        return w
