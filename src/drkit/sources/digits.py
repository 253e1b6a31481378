"""scikit-learn's bundled 8x8 digits: a dataset that is always there, for tests and smoke runs.

Pixels 0..16 become uint8 as ``round(v * 255 / 16)``; train = the first 1,500, test = the last 297.
``digits:S`` gives them at S x S (a fine-tuning target at a student's resolution; ``digits:8`` is
``digits``); the resize is fixed (bilinear on float32, rounded half to even), so the spec names the pixels.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import SourceError
from .base import ArraySource, Source
from .registry import register_source
from .spec import check_split, stamp

TRAIN_SIZE = 1500
CLASSES = [str(d) for d in range(10)]
NATIVE_SIZE = 8
#: largest S accepted by ``digits:S`` (1,797 images of 256 x 256 is 118 MB, still a small array)
MAX_SIZE = 256


def parse_size(arg: Optional[str]) -> int:
    """The side length named by ``digits:S``; one-line refusal of anything but an integer in 8..256."""
    if not arg:
        return NATIVE_SIZE
    try:
        size = int(arg)
    except ValueError:
        size = -1
    if str(size) != arg.strip() or not NATIVE_SIZE <= size <= MAX_SIZE:
        raise SourceError(f"digits takes no argument but an image size S in {NATIVE_SIZE}..{MAX_SIZE}, got "
                          f"digits:{arg}; use digits[:S][:train|test], e.g. digits:28:train")
    return size


@register_source("digits")
def digits(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    size = parse_size(arg)
    check_split("digits", split, ("train", "test"))
    from PIL import Image
    from sklearn.datasets import load_digits  # deferred: no work (or heavy import) at import time

    bunch = load_digits()
    part = slice(0, TRAIN_SIZE) if split == "train" else slice(TRAIN_SIZE, None)
    values = bunch.images[part]
    if size == NATIVE_SIZE:  # round(v*255/16): only v=8 is a half (127.5 -> 128 either way)
        images = np.rint(np.asarray(values, dtype=np.float64) * 255.0 / 16.0).astype(np.uint8)
    else:  # bilinear on float32 (PIL), rounded
        scaled = np.asarray(values, dtype=np.float32) * np.float32(255.0 / 16.0)
        out = [np.asarray(Image.fromarray(img, mode="F").resize((size, size), Image.BILINEAR)) for img in scaled]
        images = np.clip(np.rint(np.stack(out)), 0, 255).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)[part]
    fields = stamp("digits", None if size == NATIVE_SIZE else str(size), split, mode, "L")
    return ArraySource(images=images, labels=labels, classes=CLASSES, **fields)
