"""RandomErasing with its box relative to the output size and its noise fill recorded.

The box is quantised to 1/255 of the output side, so the same relative region is erased at
any replay size. The fill is per-pixel noise from a recorded 16-bit seed: a counter-based hash of
(seed, pixel), identical on every device and batchable (``fill="hash"``, renderer 2), or, for
stores of renderer 1, a CPU ``torch.Generator`` (``fill="generator"``). An imported store
(``drkit import-mldr``) erases the reference's boxes: ``units="px"`` (output pixels, which no
relative box expresses exactly, so such a box only replays) and ``fill="zero"``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import RecipeError
from ..hashing import noise_at
from ..device import to_device
from .base import FUSE_MAX_PIXELS, Op, register_op
from .codec import Field
from .draws import BatchContext, Draws, area_aspect_tries, first_fit, integers

Q = 255  # box quantisation steps per output side
#: erasing noise: renderer 2's counter-based hash, or renderer 1's CPU generator (old stores)
FILLS = ("hash", "generator", "zero")
#: box units: 1/255 of the output side (drawn), or output pixels (imported, replay only)
UNITS = ("rel", "px")


def box_to_pixels(top: Any, left: Any, h: Any, w: Any, size: int) -> tuple[Any, Any, Any, Any]:
    """Quantised box (units of size/255) -> pixel box, at least one pixel (ints or int64 arrays)."""
    y0 = (top * size + Q // 2) // Q
    x0 = (left * size + Q // 2) // Q
    y1 = np.maximum(y0 + 1, ((top + h) * size + Q // 2) // Q)
    x1 = np.maximum(x0 + 1, ((left + w) * size + Q // 2) // Q)
    return y0, x0, np.minimum(y1, size), np.minimum(x1, size)


def erase_box(p: dict[str, Any], h: int, w: int, units: str = "rel") -> tuple[int, int, int, int]:
    """The erased box ``(y0, x0, y1, x1)`` of record(s) ``p`` in an ``h`` x ``w`` output."""
    if units == "px":  # clipped to the image, as a slice would be (it may be empty)
        y0, x0 = np.minimum(p["top"], h), np.minimum(p["left"], w)
        return y0, x0, np.minimum(p["top"] + p["h"], h), np.minimum(p["left"] + p["w"], w)
    y0, x0, y1, _ = box_to_pixels(p["top"], p["left"], p["h"], p["w"], h)
    _, x0, _, x1 = box_to_pixels(p["top"], p["left"], p["h"], p["w"], w)
    return y0, x0, y1, x1


@register_op
class RandomErasing(Op):
    """timm/torchvision-style erasing (area scale, log-ratio) with per-pixel noise fill."""

    name = "re"
    defaults = {"p": 0.25, "scale_min": 0.02, "scale_max": 1 / 3, "ratio_min": 0.3, "ratio_max": 3.3, "fill": "hash",
                "units": "rel"}
    limits = {"p": (0.0, 1.0), "scale_min": (0.0, 1.0), "scale_max": (0.0, 1.0), "ratio_min": (1e-2, 1e2),
              "ratio_max": (1e-2, 1e2)}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        for key, allowed in (("fill", FILLS), ("units", UNITS)):
            if self.settings[key] not in allowed:
                raise RecipeError(f"op 're': {key}={self.settings[key]!r} must be one of {', '.join(allowed)}")

    def fields(self) -> list[Field]:
        side = Q if self.settings["units"] == "rel" else 4096  # px: the reference's 12-bit boxes
        noise = [Field("seed", 0, 65535)] if self.settings["fill"] != "zero" else []
        return [Field("on", 0, 1), Field("top", 0, side - 1), Field("left", 0, side - 1),
                Field("h", 0, side), Field("w", 0, side), *noise]

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        s = self.settings
        if s["units"] == "px":
            return super().draw(d, ctx)  # a pixel box needs the output size, unknown here: refused
        slots = d.uniform(24)  # on, 10 tries of (area, ratio), top, left, noise seed
        area, aspect = area_aspect_tries(slots[:, 1:21].reshape(ctx.n, 10, 2), s)
        h = np.rint(np.sqrt(area / aspect) * Q).astype(np.int64)
        w = np.rint(np.sqrt(area * aspect) * Q).astype(np.int64)
        found, h, w = first_fit((h >= 1) & (h < Q) & (w >= 1) & (w < Q), h, w)
        on = (slots[:, 0] < s["p"]) & found
        h, w = np.where(on, h, 0), np.where(on, w, 0)
        top = np.minimum(integers(slots[:, 21], 0, Q - h), Q - 1)
        left = np.minimum(integers(slots[:, 22], 0, Q - w), Q - 1)
        seed = {"seed": np.where(on, integers(slots[:, 23], 0, 65535), 0)} if s["fill"] != "zero" else {}
        return {"on": on.astype(np.int64), "top": np.where(on, top, 0), "left": np.where(on, left, 0), "h": h, "w": w,
                **seed}

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        fill, units = self.settings["fill"], self.settings["units"]
        if fill == "hash" or not params["on"]:
            return erase_batch(img[None], [params], units)[0]
        y0, x0, y1, x1 = erase_box(params, *img.shape[-2:], units)
        out = img.clone()
        if fill == "zero":
            out[:, y0:y1, x0:x1] = 0
            return out
        gen = torch.Generator().manual_seed(params["seed"])
        out[:, y0:y1, x0:x1] = torch.randint(0, 256, (img.shape[0], y1 - y0, x1 - x0), generator=gen, dtype=torch.uint8)
        return out

    def apply_batch(self, x: torch.Tensor, params: list[dict[str, int]], out_size: int) -> torch.Tensor:
        if self.settings["fill"] == "hash":
            return erase_batch(x, params, self.settings["units"])
        return super().apply_batch(x, params, out_size)


def erase_batch(x: torch.Tensor, params: Sequence[dict[str, int]], units: str = "rel") -> torch.Tensor:
    """Hash-noise erasing: every erased pixel of the batch listed flat, hashed and stored at once."""
    rows = [r for r, p in enumerate(params) if p["on"]]
    if not rows:
        return x
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    dev = x.device
    if dev.type == "cpu" and h * w >= FUSE_MAX_PIXELS:  # big images: slices beat flat index arithmetic
        out = x.clone()
        for r in rows:
            y0, x0, y1, x1 = erase_box(params[r], h, w, units)
            cy, yy, xx = torch.meshgrid(torch.arange(c, device=dev), torch.arange(y0, y1, device=dev),
                                        torch.arange(x0, x1, device=dev), indexing="ij")
            out[r, :, y0:y1, x0:x1] = noise_at(torch.full_like(cy, params[r]["seed"]), cy, yy, xx, h, w)
        return out
    fields = {k: np.array([params[r][k] for r in rows], dtype=np.int64) for k in ("top", "left", "h", "w")}
    host = np.stack(erase_box(fields, h, w, units), axis=1)  # [E, 4]: y0, x0, y1, x1
    total = int((c * (host[:, 2] - host[:, 0]) * (host[:, 3] - host[:, 1])).sum())  # known here: no device sync
    boxes = to_device(host, dev)
    bh, bw = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    counts = c * bh * bw
    owner = torch.repeat_interleave(torch.arange(len(rows), device=dev), counts, output_size=total)
    local = torch.arange(total, device=dev) - (torch.cumsum(counts, 0) - counts)[owner]
    area = (bh * bw)[owner]
    ch, rest = local // area, local % area
    ys = boxes[owner, 0] + rest // bw[owner]
    xs = boxes[owner, 1] + rest % bw[owner]
    seeds = to_device([params[r]["seed"] for r in rows], dev)[owner]
    out = x.clone()
    out[to_device(rows, dev)[owner], ch, ys, xs] = noise_at(seeds, ch, ys, xs, h, w)
    return out
