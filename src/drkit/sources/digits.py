"""scikit-learn's bundled 8x8 digits: a dataset that is always there, for tests and smoke runs.

Pixels are 0..16 in the original; they become uint8 exactly as ``round(v * 255 / 16)``.
Split (deterministic, no shuffling): the first 1,500 samples are ``train``, the remaining 297
are ``test``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import SourceError
from .base import ArraySource, Source
from .registry import register_source
from .spec import canonical_spec, check_split

TRAIN_SIZE = 1500
CLASSES = [str(d) for d in range(10)]


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """0..16 -> 0..255 by round(v*255/16); only v=8 is a half (127.5 -> 128 either way)."""
    return np.rint(np.asarray(values, dtype=np.float64) * 255.0 / 16.0).astype(np.uint8)


@register_source("digits")
def digits(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    """``digits``: 1,797 8x8 grayscale digits; train = first 1,500, test = last 297."""
    if arg:
        raise SourceError(f"digits takes no argument, got digits:{arg}; use digits[:train|test]")
    check_split("digits", split, ("train", "test"))
    from sklearn.datasets import load_digits  # deferred: no work (or heavy import) at import time

    bunch = load_digits()
    images = scale_to_uint8(bunch.images)
    labels = np.asarray(bunch.target, dtype=np.int64)
    part = slice(0, TRAIN_SIZE) if split == "train" else slice(TRAIN_SIZE, None)
    mode = mode or "L"
    spec = canonical_spec("digits", None, split, mode, "L")
    return ArraySource(images=images[part], labels=labels[part], classes=CLASSES, spec=spec, split=split, mode=mode)
