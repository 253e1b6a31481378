"""Synchronisation-free twins of torchvision's affine (shears, translations), rotate and sharpness for
RandAugment / TrivialAugment on an accelerator. Why: torchvision builds each call's matrix or kernel with
``torch.tensor(..., device=...)``, a copy that waits for every queued render kernel (~40 per batch); the
twins send the same float32 values through pinned memory and do torchvision's arithmetic in its order,
so the pixels are identical (tested on the CPU and CUDA).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms.v2.functional import _color as tv_color
from torchvision.transforms.v2.functional import _geometry as tv_geometry

from ..device import to_device


def warp(img: torch.Tensor, matrices: Sequence[Sequence[float]]) -> torch.Tensor:
    """Nearest-neighbour resampling of ``img`` (uint8, [N,] C, H, W) through inverse affine matrices
    (one for all images, or one per image), zero outside, as torchvision's affine does it."""
    h, w = img.shape[-2:]
    dev = img.device
    theta = to_device(matrices, dev, torch.float32).reshape(-1, 2, 3)
    grid = torch.empty(1, h, w, 3, dtype=torch.float32, device=dev)
    grid[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=dev))
    grid[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=dev).unsqueeze_(-1))
    grid[..., 2].fill_(1)
    scale = theta.transpose(1, 2).div_(to_device([0.5 * w, 0.5 * h], dev, torch.float32))
    k = theta.shape[0]
    grid = grid.view(1, h * w, 3).expand(k, -1, -1).bmm(scale).view(k, h, w, 2)
    return tv_geometry._apply_grid_transform(img, grid, "nearest", fill=None)


@functools.lru_cache(maxsize=4096)
def inverse_matrix(name: str, m: float, h: int, w: int) -> tuple[float, ...] | None:
    """torchvision's inverse affine matrix of table op ``name`` at magnitude ``m``; ``None`` for ops
    that are not a warp (rotations by multiples of 90 degrees are index operations)."""
    geo = tv_geometry._get_inverse_affine_matrix
    if name in ("ShearX", "ShearY"):
        shear = [math.degrees(math.atan(m)), 0.0] if name == "ShearX" else [0.0, math.degrees(math.atan(m))]
        return tuple(geo([0.0 - w * 0.5, 0.0 - h * 0.5], 0.0, [0.0, 0.0], 1.0, shear))
    if name == "TranslateX":
        return tuple(geo([0.0, 0.0], 0.0, [float(int(m * w)), 0.0], 1.0, [0.0, 0.0]))
    if name == "TranslateY":
        return tuple(geo([0.0, 0.0], 0.0, [0.0, float(int(m * h))], 1.0, [0.0, 0.0]))
    if name == "Rotate":
        angle = m % 360
        if angle in (0, 180) or (h == w and angle in (90, 270)):
            return None
        return tuple(geo([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0]))
    return None


def _geometric(name: str) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def twin(img: torch.Tensor, m: float) -> torch.Tensor:
        matrix = inverse_matrix(name, m, *img.shape[-2:])
        if matrix is not None:
            return warp(img, [matrix])
        quarters = int(m % 360) // 90  # rotations torchvision does without resampling
        return torch.rot90(img, k=quarters, dims=(-2, -1)) if quarters else img.clone()
    return twin


#: table ops :func:`enhance` applies to a batch with a magnitude per image
PER_VIEW = ("Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize")


def enhance(img: torch.Tensor, name: str, m: np.ndarray) -> torch.Tensor:
    """Table op ``name`` (one of :data:`PER_VIEW`) on uint8 ``[N, C, H, W]``, image k at magnitude ``m[k]``: one
    call's kernels whatever the magnitudes, and torchvision's pixels (its float32 products, its blends' fused
    ``add_(other, alpha)`` as ``addcmul``, sharpness blending the inner pixels with their 3x3 smoothing)."""
    def col(v: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return to_device(v.reshape(-1, 1, 1, 1), img.device, dtype)

    c, h, w = img.shape[-3:]
    if name == "Posterize":
        return img & col(256 - (1 << (8 - m.astype(np.int64))), torch.uint8)  # the top ``m`` bits
    if name == "Solarize":
        return torch.where(img >= col(m), 255 - img, img)
    if (name == "Color" and c == 1) or (name == "Sharpness" and (img.numel() == 0 or h <= 2 or w <= 2)):
        return img
    if name == "Sharpness":
        out = img.to(torch.float32, copy=True)
        kernel = to_device([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], img.device, torch.float32) / 13.0
        inner = out[..., 1:-1, 1:-1]
        blurred = torch.nn.functional.conv2d(out, kernel.expand(c, 1, 3, 3), groups=c).round_()
        inner.addcmul_(blurred.sub_(inner), col(1.0 - (1.0 + m)))
        return out.clamp_(0, 255).to(torch.uint8)
    out = img.mul(col(1.0 + m))
    if name != "Brightness":
        gray = tv_color._rgb_to_grayscale_image(img, 1, preserve_dtype=False).floor_() if c == 3 else img.float()
        other = gray if name == "Color" else gray.mean(dim=(-3, -2, -1), keepdim=True)
        out = torch.addcmul(out, other, col(1.0 - (1.0 + m)))
    return out.clamp_(0, 255).to(torch.uint8)


#: table op name -> twin taking (uint8 image or batch, signed magnitude)
TWINS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    **{name: _geometric(name) for name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")},
    "Sharpness": lambda img, m: enhance(img.reshape(-1, *img.shape[-3:]), "Sharpness", np.full(1, m)).view(img.shape),
}
