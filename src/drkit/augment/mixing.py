"""MixUp / CutMix between two stored views: view ``v`` of sample ``i`` with view ``partner_view``
of another sample ``partner``, each rendered with its own base parameters. λ is kept as float16
bits, so the stored ``lam`` is exactly the value used; the CutMix box is quantised to 1/255 of the
output side like the erasing box. ``mode`` is bits: MixUp, then CutMix from the unmixed partner;
drkit draws one or the other, an imported view (``refmix``) may do both."""
from __future__ import annotations

import numpy as np
import torch

from .base import Op, register_op
from .codec import Field
from .draws import GAMMA_SLOTS, BatchContext, Draws, beta, integers

Q = 255
MODE_NONE, MODE_MIXUP, MODE_CUTMIX = 0, 1, 2  # bits


def bits_to_lam(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint16).view(np.float16)[0])


@register_op
class MixUpCutMix(Op):
    """timm-style switch between MixUp (Beta(mixup, mixup)) and CutMix (Beta(cutmix, cutmix))."""

    name = "mix"
    layout = "drkit"  # how records store it (see Recipe.mix_layout)
    defaults = {"p": 1.0, "mixup": 0.2, "cutmix": 1.0, "switch": 0.5}
    limits = {"p": (0.0, 1.0), "mixup": (0.0, 100.0), "cutmix": (0.0, 100.0), "switch": (0.0, 1.0)}

    def fields(self) -> list[Field]:
        return [Field("mode", 0, 2), Field("partner", 0, 2**32 - 1), Field("partner_view", 0, 65535),
                Field("lam", 0, 65535), Field("top", 0, Q), Field("left", 0, Q), Field("h", 0, Q), Field("w", 0, Q)]

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        s, n, sid = self.settings, ctx.n, ctx.sample_ids
        u = d.uniform(6 + 4 * GAMMA_SLOTS)  # on, partner, its view, switch, box centre; two Betas
        on = (u[:, 0] < s["p"]) & (ctx.num_samples >= 2)
        if ctx.window > 0:  # a streamed source: a partner among the samples within the window
            lo = np.maximum(0, sid - ctx.window)
            hi = np.minimum(ctx.num_samples - 1, sid + ctx.window)
            partner = lo + integers(u[:, 1], 0, np.maximum(hi - lo - 1, 0))
        else:
            partner = integers(u[:, 1], 0, max(ctx.num_samples - 2, 0))
        partner = partner + (partner >= sid)  # any sample but this one
        cut = np.full(n, s["cutmix"] > 0) & ((s["mixup"] <= 0) | (u[:, 3] < s["switch"]))
        a, b = u[:, 6:6 + 2 * GAMMA_SLOTS], u[:, 6 + 2 * GAMMA_SLOTS:]
        lam = np.where(cut, beta(a, s["cutmix"], s["cutmix"]) if s["cutmix"] > 0 else 1.0,
                       beta(b, s["mixup"], s["mixup"]) if s["mixup"] > 0 else 1.0)
        side = np.rint(np.sqrt(1.0 - lam) * Q).astype(np.int64)
        cy, cx = integers(u[:, 4], 0, Q - 1), integers(u[:, 5], 0, Q - 1)
        y0, y1 = np.clip(cy - side // 2, 0, Q), np.clip(cy + side // 2, 0, Q)
        x0, x1 = np.clip(cx - side // 2, 0, Q), np.clip(cx + side // 2, 0, Q)
        boxed = on & cut
        zero = np.zeros(n, np.int64)
        return {"mode": np.where(on, np.where(cut, MODE_CUTMIX, MODE_MIXUP), MODE_NONE).astype(np.int64),
                "partner": np.where(on, partner, sid),
                "partner_view": np.where(on, integers(u[:, 2], 0, ctx.num_views - 1), 0),
                "lam": np.where(on, lam, 1.0).astype(np.float16).view(np.uint16).astype(np.int64),
                "top": np.where(boxed, y0, zero), "left": np.where(boxed, x0, zero),
                "h": np.where(boxed, y1 - y0, zero), "w": np.where(boxed, x1 - x0, zero)}

    def cut_box(self, p: dict[str, int], h: int, w: int) -> tuple[int, int, int, int]:
        """The quantised CutMix box ``(y0, x0, y1, x1)`` in pixels of an ``h`` x ``w`` output (may be empty)."""
        y0 = (p["top"] * h + Q // 2) // Q
        y1 = ((p["top"] + p["h"]) * h + Q // 2) // Q
        x0 = (p["left"] * w + Q // 2) // Q
        x1 = ((p["left"] + p["w"]) * w + Q // 2) // Q
        return y0, x0, min(y1, h), min(x1, w)

    def mix(self, img: torch.Tensor, partner: torch.Tensor, p: dict[str, int]) -> torch.Tensor:
        out = img
        if p["mode"] & MODE_MIXUP:
            lam = bits_to_lam(p["lam"])
            out = (img.to(torch.float32) * lam + partner.to(torch.float32) * (1.0 - lam)).round_().clamp_(0, 255)
            out = out.to(torch.uint8)
        if p["mode"] & MODE_CUTMIX:
            y0, x0, y1, x1 = self.cut_box(p, img.shape[-2], img.shape[-1])
            out = out.clone()
            if y1 > y0 and x1 > x0:
                out[:, y0:y1, x0:x1] = partner[:, y0:y1, x0:x1]
        return out

    def weight(self, p: dict[str, int], out_size: int) -> float:
        """Share of the first image in the mix at this size: λ, times the uncut share (CutMix by pasted area)."""
        share = bits_to_lam(p["lam"]) if p["mode"] & MODE_MIXUP else 1.0
        if p["mode"] & MODE_CUTMIX:
            y0, x0, y1, x1 = self.cut_box(p, out_size, out_size)
            share *= 1.0 - max(0, y1 - y0) * max(0, x1 - x0) / float(out_size * out_size)
        return share

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        raise TypeError("mixing needs the partner view: use Recipe.render")


@register_op
class ReferenceMix(MixUpCutMix):
    """The reference's mixing, replayed from imported records only (``drkit import-mldr``). Kept apart
    from ``mix`` because neither its settings nor its records are ``mix``'s: it applies MixUp and
    CutMix each with its own probability (``mix`` switches between them), its box is in output
    pixels, and each record stores the partner's own parameters rather than a stored partner view."""

    name = "refmix"
    layout = "reference"
    defaults = {"mixup": 1.0, "div_by": 1.0, "mixup_p": 1.0, "cutmix": 1.0, "cutmix_p": 1.0}
    limits = {"mixup": (0.0, 100.0), "div_by": (1.0, 100.0), "mixup_p": (0.0, 1.0), "cutmix": (0.0, 100.0),
              "cutmix_p": (0.0, 1.0)}

    draw = Op.draw  # replays imported views only: refuses to draw new ones

    def cut_box(self, p: dict[str, int], h: int, w: int) -> tuple[int, int, int, int]:
        """The stored pixel box, as a slice reads it."""
        return p["top"], p["left"], p["top"] + p["h"], p["left"] + p["w"]
