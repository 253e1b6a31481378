"""Integer hashes behind choices that must not depend on RNG state (SplitMix64: view order, masks,
folds; lowbias32: device-independent erasing noise) and the per-sample content digest."""
from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MASK64, MASK32 = (1 << 64) - 1, 0xFFFFFFFF
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


def content_digest(data: bytes | memoryview | np.ndarray) -> int:
    """CRC-32 of an image's stored bytes (file bytes or pixel array): memory speed, catches any
    accidental change, not meant to resist a forger."""
    return zlib.crc32(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data) & MASK32


def _mul32(x: "torch.Tensor", c: int) -> "torch.Tensor":
    """``(x * c) mod 2**32`` on 32-bit values in int64, every intermediate below 2**49 (no overflow)."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + ((hi * c) & 0xFFFF) * 65536) & MASK32


def hash32(x: "torch.Tensor") -> "torch.Tensor":
    """The ``lowbias32`` hash (Wellons) of 32-bit values in int64 tensors: identical on every device."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def noise_at(seeds: "torch.Tensor", c: "torch.Tensor", y: "torch.Tensor", x: "torch.Tensor", height: int,
             width: int) -> "torch.Tensor":
    """Erasing noise, one uint8 per listed pixel: the top 8 bits of ``hash32(pixel ^ hash32(seed ^
    0xA511E9B3))``, ``pixel = (c * height + y) * width + x``: the same for any box cut from it."""
    import torch

    key = hash32(seeds.to(torch.int64) ^ 0xA511E9B3)
    pixel = (c.to(torch.int64) * height + y) * width + x
    return (hash32(pixel ^ key) >> 24).to(torch.uint8)
