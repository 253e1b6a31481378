"""SplitMix64: the one cheap, well-mixed integer hash behind per-item choices that must not depend
on any RNG state (DR view order, plain-sample masks, fold assignment)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: int) -> int:
    """SplitMix64's finaliser on one Python integer (pure integer arithmetic)."""
    x = (x + GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def mix64_np(x: np.ndarray) -> np.ndarray:
    """:func:`mix64` on a uint64 array (numpy's uint64 arithmetic wraps like ``& MASK64``)."""
    x = x + np.uint64(GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


MASK32 = 0xFFFFFFFF


def _mul32(x: "torch.Tensor", c: int) -> "torch.Tensor":
    """``(x * c) mod 2**32`` for int64 tensors holding 32-bit values, with every intermediate
    below 2**49: no int64 overflow, so CPU and CUDA give the same bits."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + ((hi * c) & 0xFFFF) * 65536) & MASK32


def hash32(x: "torch.Tensor") -> "torch.Tensor":
    """The ``lowbias32`` integer hash (Wellons) of int64 tensors holding 32-bit values, in pure
    integer tensor arithmetic: a counter-based random source identical on every device."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def noise_bytes(seeds: "torch.Tensor", channels: int, height: int, width: int) -> "torch.Tensor":
    """uint8 noise ``[len(seeds), C, H, W]``: byte = top 8 bits of ``hash32(pixel ^ hash32(seed))``
    with ``pixel = (c * H + y) * W + x``. A view's noise depends on its 16-bit seed and the
    absolute pixel only, so a region cut from it is the same whichever box asks."""
    import torch

    key = hash32(seeds.to(torch.int64).reshape(-1, 1) ^ 0xA511E9B3)
    pixel = torch.arange(channels * height * width, dtype=torch.int64, device=seeds.device)
    return (hash32(pixel[None, :] ^ key) >> 24).to(torch.uint8).reshape(-1, channels, height, width)
