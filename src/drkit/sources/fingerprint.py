"""Source fingerprints: sha256 of what a source enumerates, in order.

Why apart from the source classes: a store records its data's fingerprint and every reader compares
against it, so the recipes must never drift, and a change to them stands out in review.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import SourceError


def _header(kind: str, **fields: Any) -> bytes:
    return (json.dumps({"drkit-fingerprint": kind, **fields}, sort_keys=True) + "\n").encode()


def _hash_table(kind: str, keys: Sequence[str], labels: np.ndarray, sizes: Iterable[int], **fields: Any) -> str:
    """sha256 of a header and one ``key, label, size`` line per sample (fed 4,096 lines per ``update``)."""
    h = hashlib.sha256(_header(kind, count=len(keys), **fields))
    chunk: list[str] = []
    for key, label, size in zip(keys, labels.tolist(), sizes):
        chunk.append(f"{key}\t{label}\t{int(size)}\n")
        if len(chunk) >= 4096:
            h.update("".join(chunk).encode("utf-8", "surrogateescape"))
            chunk.clear()
    h.update("".join(chunk).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def fingerprint_arrays(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], mode: str) -> str:
    """sha256 of raw pixel bytes + labels + class names: the same data gives the same
    fingerprint whichever source (Debian files, torchvision) delivered it."""
    h = hashlib.sha256(_header("array-v1", shape=list(images.shape), mode=mode, classes=list(classes)))
    h.update(memoryview(np.ascontiguousarray(images, dtype=np.uint8)).cast("B"))
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


def fingerprint_files(root: str, relpaths: Sequence[str], labels: np.ndarray, classes: Sequence[str], mode: str) -> str:
    """sha256 of relative paths + labels + file sizes (a stat per file, no read: fast on ImageNet)."""
    sizes = (_size(os.path.join(root, rel)) for rel in relpaths)
    return _hash_table("files-v1", relpaths, labels, sizes, mode=mode, classes=list(classes))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise SourceError(f"cannot stat image {path}: {exc}") from exc


def fingerprint_subset(parent_fingerprint: str, indices: np.ndarray) -> str:
    """sha256 of the parent's fingerprint + the chosen indices (int64, in order)."""
    h = hashlib.sha256(_header("subset-v1", parent=parent_fingerprint, count=int(indices.size)))
    h.update(np.ascontiguousarray(indices, dtype="<i8").tobytes())
    return h.hexdigest()


def fingerprint_records(container: str, keys: Sequence[str], labels: np.ndarray, sizes: Sequence[int],
                        classes: Sequence[str], mode: str) -> str:
    """sha256 of record keys + labels + encoded byte sizes of the records in a ``container`` (``hf``,
    ``wds``, ``lmdb``): like :func:`fingerprint_files`, cheap yet catching changed records."""
    if not len(keys) == len(labels) == len(sizes):
        raise SourceError(f"{container} fingerprint: {len(keys)} keys, {len(labels)} labels, {len(sizes)} sizes")
    return _hash_table("records-v1", keys, labels, sizes, container=container, mode=mode, classes=list(classes))
