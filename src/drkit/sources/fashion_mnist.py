"""Fashion-MNIST from IDX files (Debian's ``dataset-fashion-mnist`` package by default).

Why read IDX ourselves: the files are tiny and the format is four header fields, so the demo and
tests need neither torchvision's folder layout nor a network.
"""
from __future__ import annotations

import gzip
import os
from typing import Optional

import numpy as np

from ..errors import SourceError
from .base import ArraySource, Source
from .registry import register_source
from .spec import check_split, stamp

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
#: torchvision's names, so the same data gives the same fingerprint through either source.
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Read a uint8 IDX file (gzip or plain) into an array, checking its header and length."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SourceError(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4 + 4 * ndim or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise SourceError(f"{path} is not a uint8 IDX file with {ndim} dimensions")
    dims = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise SourceError(f"{path} holds {len(data) - offset} bytes of data, its header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


@register_source("fashion-mnist")
def fashion_mnist(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    check_split("fashion-mnist", split, tuple(_PREFIX))
    directory = os.path.abspath(os.path.expanduser(arg)) if arg else DEFAULT_DIR
    prefix = _PREFIX[split]
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [next((p for p in (f"{directory}/{n}.gz", f"{directory}/{n}") if os.path.isfile(p)), None) for n in names]
    if None in paths:
        missing = names[paths.index(None)] + ".gz"
        raise SourceError(f"Fashion-MNIST not found: {os.path.join(directory, missing)} is missing; apt-get install "
                          "dataset-fashion-mnist or pass fashion-mnist:DIR (or use torchvision:FashionMNIST:ROOT with "
                          "--download)")
    images = read_idx(paths[0], 3)
    labels = read_idx(paths[1], 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise SourceError(f"{paths[0]} has {images.shape[0]} images but {paths[1]} has {labels.shape[0]} labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise SourceError(f"{paths[1]} has label {int(labels.max())}, Fashion-MNIST has {len(CLASSES)} classes")
    return ArraySource(images=images, labels=labels, classes=CLASSES,
                       **stamp("fashion-mnist", directory if arg else None, split, mode, "L"))
