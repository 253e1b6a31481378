"""``torchvision:NAME:ROOT`` — datasets through ``torchvision.datasets``.

Array-backed datasets (CIFAR10/100, MNIST, FashionMNIST) become :class:`ArraySource` (their pixel
arrays are hashed); file-backed ones (Flowers102, Food101) become :class:`FileSource` (file list
relative to ROOT + labels + sizes). Nothing is downloaded unless ``download=True`` (CLI
``--download``). Note that torchvision reads CIFAR's official files with pickle; drkit itself
writes none.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..errors import SourceError
from .base import ArraySource, FileSource, Source
from .registry import register_source
from .spec import canonical_spec, check_split


def _train_flag(split: str) -> dict[str, Any]:
    return {"train": split == "train"}


def _split_name(split: str) -> dict[str, Any]:
    return {"split": split}


def _from_arrays(ds: Any, root: str) -> dict[str, Any]:
    data = ds.data
    images = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    targets = ds.targets
    labels = targets.numpy() if hasattr(targets, "numpy") else np.asarray(targets)
    return {"images": np.ascontiguousarray(images, dtype=np.uint8), "labels": labels.astype(np.int64)}


def _from_files(ds: Any, root: str) -> dict[str, Any]:
    try:
        files, labels = ds._image_files, ds._labels  # torchvision keeps these private; no public list
    except AttributeError as exc:
        raise SourceError(f"this torchvision version hides the file list of {type(ds).__name__}") from exc
    relpaths = [os.path.relpath(os.fspath(p), root).replace(os.sep, "/") for p in files]
    return {"relpaths": relpaths, "labels": np.asarray(labels, dtype=np.int64)}


@dataclass(frozen=True)
class _Dataset:
    splits: tuple[str, ...]
    split_kwargs: Callable[[str], dict[str, Any]]
    extract: Callable[[Any, str], dict[str, Any]]


#: Supported torchvision datasets: how to ask for a split, how to read what it enumerates.
DATASETS: dict[str, _Dataset] = {
    "CIFAR10": _Dataset(("train", "test"), _train_flag, _from_arrays),
    "CIFAR100": _Dataset(("train", "test"), _train_flag, _from_arrays),
    "MNIST": _Dataset(("train", "test"), _train_flag, _from_arrays),
    "FashionMNIST": _Dataset(("train", "test"), _train_flag, _from_arrays),
    "Flowers102": _Dataset(("train", "val", "test"), _split_name, _from_files),
    "Food101": _Dataset(("train", "test"), _split_name, _from_files),
}


@register_source("torchvision")
def torchvision_source(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    """``torchvision:NAME:ROOT[:split]``; NAME is case-insensitive (CIFAR100, Flowers102, ...)."""
    name, _, root = (arg or "").partition(":")
    if not name or not root:
        raise SourceError(f"torchvision source needs NAME and ROOT: torchvision:NAME:ROOT "
                          f"(NAME one of {', '.join(DATASETS)})")
    canonical = {k.lower(): k for k in DATASETS}.get(name.lower())
    if canonical is None:
        raise SourceError(f"unsupported torchvision dataset {name!r}; supported: {', '.join(DATASETS)}")
    entry = DATASETS[canonical]
    check_split(f"torchvision:{canonical}", split, entry.splits)
    root = os.path.abspath(os.path.expanduser(root))
    import torchvision.datasets  # deferred: no heavy import at drkit import time

    cls = getattr(torchvision.datasets, canonical)
    try:
        ds = cls(root, download=download, **entry.split_kwargs(split))
    except (RuntimeError, OSError, ValueError, ImportError) as exc:
        reason = " ".join(str(exc).split())
        if download:
            raise SourceError(f"torchvision:{canonical}: download to {root} failed: {reason}") from exc
        raise SourceError(f"torchvision:{canonical} not found under {root} ({reason}); "
                          f"pass --download (download=True) to fetch it") from exc
    fields = entry.extract(ds, root)
    labels = fields["labels"]
    classes = list(getattr(ds, "classes", None) or [str(c) for c in range(int(labels.max()) + 1)])
    if "images" in fields:
        images = fields["images"]
        native = "L" if images.ndim == 3 else "RGB"
        mode = mode or native
        spec = canonical_spec("torchvision", f"{canonical}:{root}", split, mode, native)
        return ArraySource(images=images, labels=labels, classes=classes, spec=spec, split=split, mode=mode)
    mode = mode or "RGB"
    spec = canonical_spec("torchvision", f"{canonical}:{root}", split, mode, "RGB")
    return FileSource(root=root, relpaths=fields["relpaths"], labels=labels, classes=classes, spec=spec,
                      split=split, mode=mode)
