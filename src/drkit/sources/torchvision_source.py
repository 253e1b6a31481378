"""``torchvision:NAME:ROOT`` — ``torchvision.datasets`` (downloaded only with ``--download``): CIFAR and
MNIST as pixel arrays, Flowers102 and Food101 as files under ROOT.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from ..errors import SourceError
from .base import ArraySource, Source
from .encoded import FileSource
from .registry import register_source
from .spec import check_split, stamp

#: Supported datasets and their splits. File-backed ones take ``split=`` and list their files; the
#: others take ``train=`` and hold pixel arrays.
DATASETS: dict[str, tuple[str, ...]] = {"CIFAR10": ("train", "test"), "CIFAR100": ("train", "test"),
                                         "MNIST": ("train", "test"), "FashionMNIST": ("train", "test"),
                                         "Flowers102": ("train", "val", "test"), "Food101": ("train", "test")}
FILE_BACKED = ("Flowers102", "Food101")


def _open(name: str, root: str, split: str, download: bool) -> Any:
    import torchvision.datasets  # deferred: no heavy import at drkit import time

    kwargs = {"split": split} if name in FILE_BACKED else {"train": split == "train"}
    try:
        return getattr(torchvision.datasets, name)(root, download=download, **kwargs)
    except (RuntimeError, OSError, ValueError, ImportError) as exc:
        reason = " ".join(str(exc).split())
        if download:
            raise SourceError(f"torchvision:{name}: download to {root} failed: {reason}") from exc
        raise SourceError(f"torchvision:{name} not found under {root} ({reason}); "
                          f"pass --download (download=True) to fetch it") from exc


@register_source("torchvision")
def torchvision_source(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    name, _, root = (arg or "").partition(":")
    if not name or not root:
        raise SourceError(f"torchvision source needs NAME and ROOT: torchvision:NAME:ROOT "
                          f"(NAME one of {', '.join(DATASETS)})")
    canonical = {k.lower(): k for k in DATASETS}.get(name.lower())
    if canonical is None:
        raise SourceError(f"unsupported torchvision dataset {name!r}; supported: {', '.join(DATASETS)}")
    check_split(f"torchvision:{canonical}", split, DATASETS[canonical])
    root = os.path.abspath(os.path.expanduser(root))
    ds = _open(canonical, root, split, download)
    relpaths = None
    if canonical in FILE_BACKED:
        try:
            files, labels = ds._image_files, ds._labels  # torchvision keeps these private; no public list
        except AttributeError as exc:
            raise SourceError(f"this torchvision version hides the file list of {type(ds).__name__}") from exc
        relpaths = [os.path.relpath(os.fspath(p), root).replace(os.sep, "/") for p in files]
    else:
        labels = ds.targets
    labels = (labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)).astype(np.int64)
    classes = list(getattr(ds, "classes", None) or [str(c) for c in range(int(labels.max()) + 1)])
    images = None if relpaths is not None else np.ascontiguousarray(np.asarray(ds.data), dtype=np.uint8)
    native = "L" if images is not None and images.ndim == 3 else "RGB"
    fields = stamp("torchvision", f"{canonical}:{root}", split, mode, native)
    if relpaths is not None:
        return FileSource(root=root, relpaths=relpaths, labels=labels, classes=classes, **fields)
    return ArraySource(images=images, labels=labels, classes=classes, **fields)
