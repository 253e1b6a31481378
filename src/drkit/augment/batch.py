"""The batched renderer: many views at once, on the CPU or the accelerator, same pixels as the
per-view reference (:meth:`Recipe.render`).

Input is what a loader worker can produce cheaply: decoded uint8 source images (each decoded
once, however many of the batch's views use it) and every view's parameters. The pixel work then
runs as tensor ops on the images' device:

* crops are cut per view and resized in groups of equal crop size (the same ``resize`` call the
  reference makes, so the same arithmetic), flips as one indexed flip;
* RandAugment / TrivialAugment views are grouped by their (op, magnitude bin, sign) choice and
  each group goes through the reference op once (RandAugment at a fixed magnitude has at most
  28 groups per stage);
* erasing fills come from the counter-based hash of (seed, pixel), computed for all erased views
  in one call; MixUp / CutMix mix the whole batch with per-view λ and boxes.

There is no device RNG anywhere. On the CPU the result equals the reference bit for bit (tested
for every op); on CUDA the integer ops agree exactly and interpolating ops (resize, rotate,
shear) follow that device's kernels, which is why a store records its renderer and device kind.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch

from ..hashing import noise_bytes
from .autoaugment import apply_aa
from .erasing import box_to_pixels
from .geometric import crop_resize
from .mixing import MODE_CUTMIX, MODE_MIXUP, bits_to_lam, cut_box_pixels
from .recipe import Recipe, ViewParams

#: name and version of the pixel arithmetic; stores record it with the device kind
RENDERER_NAME = "drkit"
RENDERER_VERSION = 2


def renderer_info(device: torch.device | str) -> dict[str, Any]:
    """What a store records about the renderer that made its pixels."""
    import torchvision

    return {"name": RENDERER_NAME, "version": RENDERER_VERSION, "device": torch.device(device).type,
            "torch": torch.__version__.split("+")[0], "torchvision": torchvision.__version__.split("+")[0]}


def render_batch(recipe: Recipe, images: Sequence[torch.Tensor], index: Sequence[int], params: Sequence[ViewParams],
                 size: int, partner_index: Sequence[int] | None = None,
                 partner_params: Sequence[ViewParams | None] | None = None) -> torch.Tensor:
    """uint8 ``[N, C, size, size]``: view ``r`` is ``params[r]`` applied to ``images[index[r]]``,
    mixed with ``partner_params[r]`` on ``images[partner_index[r]]`` when ``params[r]`` mixes.

    ``images`` are uint8 CHW on the device that should do the work (sizes may differ). A view's
    pixels do not depend on which other views share its batch."""
    out = render_base(recipe, images, index, params, size)
    if recipe.mixer is None:
        return out
    mixed = [r for r, p in enumerate(params) if p.get("mix") and p["mix"]["mode"]]
    if not mixed:
        return out
    if partner_index is None or partner_params is None:
        raise ValueError("mixed views need partner_index and partner_params")
    partners = render_base(recipe, images, [partner_index[r] for r in mixed],
                           [partner_params[r] for r in mixed], size)  # type: ignore[misc]
    return mix_batch(out, torch.as_tensor(mixed, device=out.device), partners, [params[r]["mix"] for r in mixed])


def render_base(recipe: Recipe, images: Sequence[torch.Tensor], index: Sequence[int], params: Sequence[ViewParams],
                size: int) -> torch.Tensor:
    """The recipe's base ops (crop first, then the rest in order) on a batch of views."""
    first, rest = recipe.ops[0], recipe.ops[1:]
    x = crop_batch(images, index, [p[first.name] for p in params], size)
    for op in rest:
        group = [p[op.name] for p in params]
        if op.name in ("ra", "ta"):
            x = augment_batch(x, op, group)
        elif op.name == "re" and getattr(op, "noise", "hash") == "hash":
            x = erase_batch(x, group)
        else:  # an op without a batched form: the reference, view by view
            x = torch.stack([op.apply(x[r], group[r], size) for r in range(x.shape[0])])
    return x


def crop_batch(images: Sequence[torch.Tensor], index: Sequence[int], boxes: Sequence[dict[str, int]],
               size: int) -> torch.Tensor:
    """Crop, resize and flip: the reference ``crop_resize`` per group of equal crop size."""
    channels = images[index[0]].shape[0] if len(index) else 1
    device = images[index[0]].device if len(index) else torch.device("cpu")
    out = torch.empty((0, channels, size, size), dtype=torch.uint8, device=device)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for r, box in enumerate(boxes):
        groups[(box["height"], box["width"])].append(r)
    pieces: list[torch.Tensor] = [out] * len(index)  # placeholders, all replaced below
    for (h, w), rows in groups.items():
        crops = torch.stack([_crop(images[index[r]], boxes[r]) for r in rows])
        resized = _resize(crops, size) if (h, w) != (size, size) else crops
        for k, r in enumerate(rows):
            pieces[r] = resized[k]
    out = torch.stack(pieces) if pieces else out
    flip = [r for r, box in enumerate(boxes) if box["flip"]]
    if flip:
        idx = torch.as_tensor(flip, device=device)
        out[idx] = out[idx].flip(-1)
    return out


def _crop(img: torch.Tensor, box: dict[str, int]) -> torch.Tensor:
    """``F.crop``: zero outside the image (a plain slice when the box lies inside)."""
    top, left, h, w = box["top"], box["left"], box["height"], box["width"]
    if top >= 0 and left >= 0 and top + h <= img.shape[-2] and left + w <= img.shape[-1]:
        return img[:, top:top + h, left:left + w]
    from torchvision.transforms.v2 import functional as F

    return F.crop(img, top, left, h, w)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """The reference resize (bilinear, antialiased). On the CPU torchvision hands uint8 straight
    to ``interpolate``, so calling it directly is the same arithmetic without the dispatch."""
    if x.device.type == "cpu":
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                               align_corners=False)
    return crop_resize(x, {"top": 0, "left": 0, "height": x.shape[-2], "width": x.shape[-1], "flip": 0}, size)


def augment_batch(x: torch.Tensor, op: Any, params: Sequence[dict[str, int]]) -> torch.Tensor:
    """RandAugment / TrivialAugment: each stage groups views by (op, bin, sign) and applies the
    reference table op to the group at once."""
    wide = op.name == "ta"
    stages = [("op", "mag", "sign")] if wide else [(f"op{k}", f"mag{k}", f"sign{k}") for k in range(op.settings["n"])]
    bins = op.settings["bins"]
    x = x.clone()
    for keys in stages:
        groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for r, p in enumerate(params):
            groups[(p[keys[0]], p[keys[1]], p[keys[2]])].append(r)
        for (choice, mag, sign), rows in groups.items():
            if choice == 0:  # Identity
                continue
            idx = torch.as_tensor(rows, device=x.device)
            x[idx] = apply_aa(x[idx], choice, mag, sign, bins, wide)
    return x


def erase_batch(x: torch.Tensor, params: Sequence[dict[str, int]]) -> torch.Tensor:
    """RandomErasing with hash noise: one noise call for every erased view, then box masks."""
    rows = [r for r, p in enumerate(params) if p["on"]]
    if not rows:
        return x
    n, c, h, w = len(rows), x.shape[1], x.shape[2], x.shape[3]
    boxes = np.array([_erase_box(params[r], h, w) for r in rows], dtype=np.int64)  # y0, x0, y1, x1
    seeds = torch.as_tensor([params[r]["seed"] for r in rows], device=x.device)
    noise = noise_bytes(seeds, c, h, w)
    b = torch.as_tensor(boxes, device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= b[:, 0, None, None]) & (ys < b[:, 2, None, None]) & (xs >= b[:, 1, None, None]) & \
        (xs < b[:, 3, None, None])
    idx = torch.as_tensor(rows, device=x.device)
    out = x.clone()
    out[idx] = torch.where(inside[:, None], noise, x[idx])
    return out


def _erase_box(p: dict[str, int], h: int, w: int) -> tuple[int, int, int, int]:
    y0, x0, y1, _ = box_to_pixels(p["top"], p["left"], p["h"], p["w"], h)
    _, x0, _, x1 = box_to_pixels(p["top"], p["left"], p["h"], p["w"], w)
    return y0, x0, y1, x1


def mix_batch(out: torch.Tensor, rows: torch.Tensor, partners: torch.Tensor, mixes: Sequence[dict[str, int]]) -> torch.Tensor:
    """MixUp (per-view λ, the reference's float32 arithmetic) and CutMix (per-view box) of views
    ``rows`` of ``out`` with their rendered partners."""
    out = out.clone()
    own = out[rows]
    h, w = own.shape[-2:]
    mode = torch.as_tensor([m["mode"] for m in mixes], device=out.device)
    lam = np.array([bits_to_lam(m["lam"]) for m in mixes], dtype=np.float64)
    # the reference multiplies by Python floats: λ and 1 - λ are rounded to float32 separately
    lam_t = torch.as_tensor(lam.astype(np.float32), device=out.device)[:, None, None, None]
    rest_t = torch.as_tensor((1.0 - lam).astype(np.float32), device=out.device)[:, None, None, None]
    blended = (own.to(torch.float32) * lam_t + partners.to(torch.float32) * rest_t).round_().clamp_(0, 255)
    boxes = torch.as_tensor([cut_box_pixels(m, h, w) for m in mixes], device=out.device)  # y0, x0, y1, x1
    ys = torch.arange(h, device=out.device)[None, :, None]
    xs = torch.arange(w, device=out.device)[None, None, :]
    inside = (ys >= boxes[:, 0, None, None]) & (ys < boxes[:, 2, None, None]) & \
        (xs >= boxes[:, 1, None, None]) & (xs < boxes[:, 3, None, None])
    cut = torch.where(inside[:, None], partners, own)
    result = torch.where((mode == MODE_MIXUP)[:, None, None, None], blended.to(torch.uint8),
                         torch.where((mode == MODE_CUTMIX)[:, None, None, None], cut, own))
    out[rows] = result
    return out
