"""The batched renderer: many views at once, on the CPU or the accelerator, same pixels as the
per-view reference (:meth:`Recipe.render`).

Input is what a loader worker can produce cheaply: decoded uint8 source images (each decoded
once, however many of the batch's views use it) and every view's parameters. Crops are resized in
groups of equal size, RandAugment / TrivialAugment views grouped by their table choice, erasing
noise hashed for all erased views in one call, mixing done for the whole batch. There is no device
RNG anywhere. On the CPU the result equals the reference bit for bit (tested for every op); on CUDA
the integer ops agree exactly and interpolating ops (resize, rotate, shear) follow that device's
kernels, which is why a store records its renderer and device kind.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch

from ..device import to_device
from .geometric import crop_resize
from .mixing import MODE_CUTMIX, MODE_MIXUP, MixUpCutMix, bits_to_lam
from .recipe import Recipe, ViewParams

#: name and version of the pixel arithmetic; stores record it with the device kind
RENDERER_NAME = "drkit"
RENDERER_VERSION = 2


def renderer_info(device: torch.device | str) -> dict[str, Any]:
    import torchvision

    return {"name": RENDERER_NAME, "version": RENDERER_VERSION, "device": torch.device(device).type,
            "torch": torch.__version__.split("+")[0], "torchvision": torchvision.__version__.split("+")[0]}


class Parameters:
    """A batch's view parameters as one object (``default_convert`` walks lists of dicts: ~70 µs a view)."""

    def __init__(self, own: list[ViewParams], partners: list[ViewParams | None]):
        self.own, self.partners = own, partners


def stack_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, np.ndarray]:
    """One zero-padded ``[U, C, Hmax, Wmax]`` tensor (one block to move) and the true ``[U, 2]`` sizes."""
    sizes = np.array([img.shape[-2:] for img in images], dtype=np.int64)
    return _stack(images, range(len(images)))[0], sizes


def unstack_images(stack: torch.Tensor, sizes: Any, device: torch.device | None = None) -> list[torch.Tensor]:
    """The images of :func:`stack_images` again, as views into ``stack`` moved to ``device`` (one copy)."""
    if device is not None:
        stack = stack.to(device, non_blocking=True)
    return [stack[k, :, :h, :w] for k, (h, w) in enumerate(np.asarray(sizes).tolist())]


def render_batch(recipe: Recipe, images: Sequence[torch.Tensor], index: Sequence[int], params: Sequence[ViewParams],
                 size: int, partner_index: Sequence[int] | None = None,
                 partner_params: Sequence[ViewParams | None] | None = None) -> torch.Tensor:
    """uint8 ``[N, C, size, size]``: view ``r`` is ``params[r]`` applied to ``images[index[r]]`` (uint8
    CHW on the working device), mixed with ``partner_params[r]`` on ``images[partner_index[r]]``."""
    out = render_base(recipe, images, index, params, size)
    mixed = [r for r, p in enumerate(params) if p.get("mix") and p["mix"]["mode"]] if recipe.mixer else []
    if not mixed:
        return out
    if partner_index is None or partner_params is None:
        raise ValueError("mixed views need partner_index and partner_params")
    partners = render_base(recipe, images, [partner_index[r] for r in mixed],
                           [partner_params[r] for r in mixed], size)  # type: ignore[misc]
    return mix_batch(recipe.mixer, out, to_device(mixed, out.device), partners, [params[r]["mix"] for r in mixed])


def render_base(recipe: Recipe, images: Sequence[torch.Tensor], index: Sequence[int], params: Sequence[ViewParams],
                size: int) -> torch.Tensor:
    first, rest = recipe.ops[0], recipe.ops[1:]
    if "height" in {f.name for f in first.fields()}:  # a source-pixel box: rrc, padcrop, resize
        x = crop_batch(images, index, [p[first.name] for p in params], size)
    else:  # a crop in other pixels (padcrop@resize: the resized image's): the reference, view by view
        x = torch.stack([first.apply(images[i], p[first.name], size) for i, p in zip(index, params)])
    for op in rest:  # each op's batched form (the reference view by view, for an op without one)
        x = op.apply_batch(x, [p[op.name] for p in params], size)
    return x


def crop_batch(images: Sequence[torch.Tensor], index: Sequence[int], boxes: Sequence[dict[str, int]],
               size: int, accelerator: bool | None = None) -> torch.Tensor:
    """Crop, resize and flip: exact-size crops by indexing, others by the reference ``resize`` on the CPU, by
    :func:`_sample_resize` (close, not equal) on an accelerator or where ``accelerator`` asks (benchmarks)."""
    if not len(index):
        return torch.empty((0, 1, size, size), dtype=torch.uint8)
    channels, device = images[index[0]].shape[0], images[index[0]].device
    same = [r for r, b in enumerate(boxes) if (b["height"], b["width"]) == (size, size)]
    other = [r for r, b in enumerate(boxes) if (b["height"], b["width"]) != (size, size)]
    out = torch.empty((len(index), channels, size, size), dtype=torch.uint8, device=device)
    if same:
        out[to_device(same, device)] = _gather(images, [index[r] for r in same], [boxes[r] for r in same], size)
    if other and (device.type != "cpu" if accelerator is None else accelerator):
        by_taps: dict[int, list[int]] = defaultdict(list)  # samples per output pixel: a few groups
        for r in other:
            by_taps[_samples_per_pixel(boxes[r], size)].append(r)
        for n, rows in by_taps.items():
            out[to_device(rows, device)] = _sample_resize(images, [index[r] for r in rows],
                                                          [boxes[r] for r in rows], size, n)
    elif other:
        pixels = {i: images[i].numpy() for i in dict.fromkeys(index[r] for r in other)}  # numpy slices: ~10x cheaper
        _resize_into(out, other, [_crop(pixels[index[r]], boxes[r]) for r in other])
    flip = [r for r, box in enumerate(boxes) if box["flip"]]
    if flip:
        idx = to_device(flip, device)
        out[idx] = out[idx].flip(-1)
    return out


def _stack(images: Sequence[torch.Tensor], used: Sequence[int], pad: int = 0) -> tuple[torch.Tensor, dict[int, int]]:
    """The used images as one zero-padded ``[U, C, H, W]`` tensor, and each image's position in it: one copy
    when they share a size (a copy per image is a launch each on an accelerator: ~400 a 4096-view batch at NS 10)."""
    order = {u: k for k, u in enumerate(dict.fromkeys(used))}
    if len({images[u].shape for u in order}) == 1:
        stack = torch.stack([images[u] for u in order])
        return (torch.nn.functional.pad(stack, (pad,) * 4) if pad else stack), order
    hs, ws = (max(images[u].shape[d] for u in order) for d in (-2, -1))
    first = images[next(iter(order))]
    stack = first.new_zeros((len(order), first.shape[0], hs + 2 * pad, ws + 2 * pad))
    for u, k in order.items():
        h, w = images[u].shape[-2:]
        stack[k, :, pad:pad + h, pad:pad + w] = images[u]
    return stack, order


def _padded(images: Sequence[torch.Tensor], index: Sequence[int],
            boxes: Sequence[dict[str, int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`_stack` with a zero border as wide as any box reaches out, each view's position, the border."""
    pad = max([0] + [max(-b["top"], -b["left"], b["top"] + b["height"] - images[i].shape[-2],
                         b["left"] + b["width"] - images[i].shape[-1]) for i, b in zip(index, boxes)])
    stack, order = _stack(images, index, pad)
    return stack, to_device([order[i] for i in index], stack.device), pad


def _gather(images: Sequence[torch.Tensor], index: Sequence[int], boxes: Sequence[dict[str, int]],
            size: int) -> torch.Tensor:
    """Crops of exactly ``size`` x ``size``: one indexed gather, exact on every device."""
    stack, u, pad = _padded(images, index, boxes)
    dev = stack.device
    top = to_device([b["top"] + pad for b in boxes], dev)
    left = to_device([b["left"] + pad for b in boxes], dev)
    ar = torch.arange(size, device=dev)
    rows = (top[:, None] + ar)[:, :, None]  # [N, S, 1]
    cols = (left[:, None] + ar)[:, None, :]  # [N, 1, S]
    return stack.permute(0, 2, 3, 1)[u[:, None, None], rows, cols].permute(0, 3, 1, 2).contiguous()


def _samples_per_pixel(box: dict[str, int], size: int) -> int:
    """``ceil(crop / size)`` on the longer side, at most 16 and at most 1024 samples per axis."""
    return max(1, min(16, 1024 // size, -(-max(box["height"], box["width"]) // size)))


def _sample_resize(images: Sequence[torch.Tensor], index: Sequence[int], boxes: Sequence[dict[str, int]],
                   size: int, n: int) -> torch.Tensor:
    """All resized crops at once (accelerator): separable bilinear averaging ``n`` samples per output
    pixel and axis, a box-of-bilinear stand-in for the reference's antialiasing."""
    stack, u, pad = _padded(images, index, boxes)
    dev = stack.device
    y0, y1, wy = _taps(boxes, ("top", "height"), pad, size, n, dev)  # [N, S*n]
    x0, x1, wx = _taps(boxes, ("left", "width"), pad, size, n, dev)
    src = stack.to(torch.float32)
    rows = src[u[:, None], :, y0].permute(0, 2, 1, 3) * (1 - wy)[:, None, :, None] + \
        src[u[:, None], :, y1].permute(0, 2, 1, 3) * wy[:, None, :, None]  # [N, C, S*n, W]
    cols = torch.gather(rows, 3, x0[:, None, None, :].expand(-1, rows.shape[1], rows.shape[2], -1)) * \
        (1 - wx)[:, None, None, :] + \
        torch.gather(rows, 3, x1[:, None, None, :].expand(-1, rows.shape[1], rows.shape[2], -1)) * wx[:, None, None, :]
    out = torch.nn.functional.avg_pool2d(cols, n) if n > 1 else cols
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _taps(boxes: Sequence[dict[str, int]], keys: tuple[str, str], pad: int, size: int, n: int,
          dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along box ``keys`` (start, length): ``(j + (k + 0.5) / n) * length / size - 0.5``."""
    lo = to_device([b[keys[0]] + pad for b in boxes], dev, torch.float32)
    length = to_device([b[keys[1]] for b in boxes], dev, torch.float32)
    j = torch.arange(size * n, device=dev, dtype=torch.float32)
    pos = ((j[None, :] + 0.5) / n) * (length[:, None] / size) - 0.5
    pos = torch.minimum(pos.clamp(min=0.0), length[:, None] - 1)
    base = pos.floor()
    w = pos - base
    first = (base + lo[:, None]).long()
    second = torch.minimum(base + 1, length[:, None] - 1).long() + lo[:, None].long()
    return first, second, w


def _crop(img: torch.Tensor | np.ndarray, box: dict[str, int]) -> torch.Tensor | np.ndarray:
    """``F.crop`` of a CHW tensor or numpy image (~10x cheaper): a plain slice when the box lies inside."""
    top, left, h, w = box["top"], box["left"], box["height"], box["width"]
    if top >= 0 and left >= 0 and top + h <= img.shape[-2] and left + w <= img.shape[-1]:
        return img[:, top:top + h, left:left + w]
    if isinstance(img, np.ndarray):
        return _crop(torch.from_numpy(img), box).numpy()
    from torchvision.transforms.v2 import functional as F

    return F.crop(img, top, left, h, w)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.device.type == "cpu":
        return _interpolate(x, (size, size))
    return crop_resize(x, {"top": 0, "left": 0, "height": x.shape[-2], "width": x.shape[-1], "flip": 0}, size)


def _interpolate(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """The reference resize on the CPU: torchvision hands uint8 straight to ``interpolate``."""
    return torch.nn.functional.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)


def _resize_into(out: torch.Tensor, rows: Sequence[int], crops: Sequence[np.ndarray]) -> None:
    """``out[rows[k]] = _resize(crops[k])`` for numpy crops of any sizes, same bytes (CPU): torch's uint8
    resize is separable, x then y, so crops of one width go along x as one tall image, then crops of
    one height along y as one wide image, unless crops of one size are as few calls."""
    size = out.shape[-1]
    parts = list(crops)
    by_width: dict[int, list[int]] = defaultdict(list)
    by_height: dict[int, list[int]] = defaultdict(list)  # the pass along x keeps every height
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, c in enumerate(parts):
        by_width[c.shape[-1]].append(k)
        by_height[c.shape[-2]].append(k)
        by_size[c.shape[-2:]].append(k)
    if len(by_size) <= len(by_width) + len(by_height):
        for ks in by_size.values():
            crops = torch.from_numpy(np.stack([parts[k] for k in ks]))
            out[to_device([rows[k] for k in ks], out.device)] = _resize(crops, size)
        return
    for width, ks in by_width.items():
        if width != size:
            joined = torch.from_numpy(np.concatenate([parts[k] for k in ks], axis=1))[None]
            tall = _interpolate(joined, (joined.shape[-2], size))[0].numpy()
            ends = np.cumsum([parts[k].shape[1] for k in ks]).tolist()
            for k, a, b in zip(ks, [0] + ends[:-1], ends):
                parts[k] = tall[:, a:b]
    for height, ks in by_height.items():
        idx = to_device([rows[k] for k in ks], out.device)
        if height == size:
            out[idx] = torch.from_numpy(np.stack([parts[k] for k in ks]))
            continue
        joined = torch.from_numpy(np.concatenate([parts[k] for k in ks], axis=2))[None]
        wide = _interpolate(joined, (size, joined.shape[-1]))[0]  # [C, size, len(ks) * size]
        out[idx] = wide.unflatten(-1, (len(ks), size)).permute(2, 0, 1, 3)


def mix_batch(mixer: MixUpCutMix, out: torch.Tensor, rows: torch.Tensor, partners: torch.Tensor,
              mixes: Sequence[dict[str, int]]) -> torch.Tensor:
    """MixUp (the reference's float32 arithmetic), then CutMix of views ``rows`` with their partners."""
    out = out.clone()
    dev = out.device
    h, w = out.shape[-2:]
    mixup = [k for k, m in enumerate(mixes) if m["mode"] & MODE_MIXUP]
    cutmix = [k for k, m in enumerate(mixes) if m["mode"] & MODE_CUTMIX]
    if mixup:
        k = to_device(mixup, dev)
        lam = np.array([bits_to_lam(mixes[j]["lam"]) for j in mixup], dtype=np.float64)
        # the reference multiplies by Python floats: λ and 1 - λ are rounded to float32 separately
        lam_t = to_device(lam.astype(np.float32), dev)[:, None, None, None]
        rest_t = to_device((1.0 - lam).astype(np.float32), dev)[:, None, None, None]
        blend = out[rows[k]].to(torch.float32) * lam_t + partners[k].to(torch.float32) * rest_t
        out[rows[k]] = blend.round_().clamp_(0, 255).to(torch.uint8)
    if cutmix:
        k = to_device(cutmix, dev)
        boxes = to_device([mixer.cut_box(mixes[j], h, w) for j in cutmix], dev)  # y0, x0, y1, x1
        ys = torch.arange(h, device=dev)[None, :, None]
        xs = torch.arange(w, device=dev)[None, None, :]
        inside = (ys >= boxes[:, 0, None, None]) & (ys < boxes[:, 2, None, None]) & \
            (xs >= boxes[:, 1, None, None]) & (xs < boxes[:, 3, None, None])
        out[rows[k]] = torch.where(inside[:, None], partners[k], out[rows[k]])
    return out
