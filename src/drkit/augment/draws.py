"""Sampler 2: counter-based draws for a whole batch of views at once.

Draw ``slot`` of op ``k`` for view ``(seed, sample, view)`` is SplitMix64 of those integers and
nothing else. Why not a numpy ``Generator`` per view (sampler 1): it cost as much as a small
teacher's forward pass, and numpy keeps a stream only "on the same build of numpy". Here a view
draws the same numbers alone or in any batch, with any numpy, in a handful of array operations.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..hashing import mix64, mix64_np

_UNIT = float(2.0 ** -53)


@dataclass(frozen=True)
class BatchContext:
    """What a batch sampler may look at. ``window`` > 0 keeps mixing partners within that many
    samples of the view's own (a streamed source holds only recent images); 0: any sample."""

    src_h: np.ndarray  # int64 [n]
    src_w: np.ndarray  # int64 [n]
    sample_ids: np.ndarray  # int64 [n]
    num_samples: int
    num_views: int
    window: int = 0

    @property
    def n(self) -> int:
        return int(self.sample_ids.shape[0])


@functools.lru_cache(maxsize=256)
def _salts(salt: int, count: int) -> np.ndarray:
    out = np.array([mix64(salt ^ j) for j in range(count)], dtype=np.uint64)
    out.flags.writeable = False
    return out


class Draws:
    """Uniform draws for ``n`` views; :meth:`op` scopes them to one op of the recipe."""

    def __init__(self, seed: int, samples: Sequence[int] | np.ndarray, views: Sequence[int] | np.ndarray,
                 salt: int = 0, keys: np.ndarray | None = None):
        if keys is None:
            s = np.asarray(samples, dtype=np.int64).astype(np.uint64)
            v = np.asarray(views, dtype=np.int64).astype(np.uint64)
            keys = mix64_np(mix64_np(np.full(s.shape, mix64(int(seed) & (2**64 - 1)), np.uint64) ^ s) ^ v)
        self.keys, self.salt = keys, salt

    def op(self, position: int) -> Draws:
        """The draws of the recipe's op number ``position`` (the mixer is the last position)."""
        return Draws(0, (), (), salt=mix64(0x0D5A_0000 + position), keys=self.keys)

    def uniform(self, count: int) -> np.ndarray:
        """``[n, count]`` floats ``(bits >> 11) * 2**-53`` in [0, 1): slots ``0 .. count - 1``."""
        bits = mix64_np(self.keys[:, None] ^ _salts(self.salt, count)[None, :])
        return (bits >> np.uint64(11)).astype(np.float64) * _UNIT


def integers(u: np.ndarray, lo: int | np.ndarray, hi: int | np.ndarray) -> np.ndarray:
    """int64 in ``[lo, hi]`` inclusive from uniforms ``u`` (``lo``, ``hi``: scalars or arrays, ``hi >= lo``)."""
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    return np.minimum(lo + np.floor(u * (hi - lo + 1)).astype(np.int64), hi)


def chance(u: np.ndarray, p: float) -> np.ndarray:
    return (u < p).astype(np.int64)


def area_aspect_tries(u: np.ndarray, s: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's box tries from ``[n, tries, 2]`` uniforms: area share, log-uniform aspect ratio."""
    lo, hi = math.log(s["ratio_min"]), math.log(s["ratio_max"])
    return s["scale_min"] + (s["scale_max"] - s["scale_min"]) * u[..., 0], np.exp(lo + (hi - lo) * u[..., 1])


def first_fit(fits: np.ndarray, *tries: np.ndarray) -> tuple[np.ndarray, ...]:
    """Whether any of a view's tries fits (``fits``: ``[n, tries]``), then each array at the first that does."""
    rows, first = np.arange(fits.shape[0]), fits.argmax(axis=1)
    return (fits.any(axis=1), *(t[rows, first] for t in tries))


def normal(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Standard normal (Box-Muller) from two columns of uniforms."""
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


#: uniforms one :func:`gamma` reads (Marsaglia-Tsang: 8 proposals of 3, and 1 for shapes below 1)
GAMMA_SLOTS = 25


def gamma(u: np.ndarray, shape: float) -> np.ndarray:
    """Gamma(shape, 1) by Marsaglia-Tsang: 8 proposals at once, the first accepted wins (else the mean)."""
    boost = shape < 1.0  # Gamma(a) = Gamma(a + 1) * U**(1 / a)
    d = (shape + 1.0 if boost else shape) - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    p = u[:, :24].reshape(-1, 8, 3)
    x = normal(p[..., 0], p[..., 1])
    v = (1.0 + c * x) ** 3
    safe = np.where(v > 0, v, 1.0)
    ok = (v > 0) & (np.log1p(-p[..., 2]) < 0.5 * x * x + d - d * v + d * np.log(safe))
    first = ok.argmax(axis=1)
    g = np.where(ok.any(axis=1), d * v[np.arange(u.shape[0]), first], d + 1.0 / 3.0)
    return g * (1.0 - u[:, 24]) ** (1.0 / shape) if boost else g


def beta(u: np.ndarray, a: float, b: float) -> np.ndarray:
    """Beta(a, b) = X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b), from ``[n, 2 * GAMMA_SLOTS]`` uniforms."""
    x, y = gamma(u[:, :GAMMA_SLOTS], a), gamma(u[:, GAMMA_SLOTS:], b)
    total = x + y
    return np.where(total > 0, x / np.where(total > 0, total, 1.0), 0.5)
