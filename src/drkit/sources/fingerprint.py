"""Source fingerprints: sha256 of what a source enumerates, in order.

Why its own module: a store manifest records its data's fingerprint and every later reader
compares against it, so the three recipes (pixel arrays, file lists, subsets of either) must never
drift; keeping them apart from the source classes makes a change to them stand out in review.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import SourceError


def _header(kind: str, **fields: Any) -> bytes:
    return (json.dumps({"drkit-fingerprint": kind, **fields}, sort_keys=True) + "\n").encode()


def _hash_lines(h: Any, lines: Iterable[str]) -> str:
    """Feed text lines to ``h`` in chunks (one ``update`` per 4,096 lines, not per line); its hex digest."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= 4096:
            h.update("".join(chunk).encode("utf-8", "surrogateescape"))
            chunk.clear()
    h.update("".join(chunk).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def fingerprint_arrays(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], mode: str) -> str:
    """sha256 of raw pixel bytes + labels + class names: the same data gives the same
    fingerprint whichever source (Debian files, torchvision) delivered it."""
    h = hashlib.sha256(
        _header("array-v1", shape=list(images.shape), mode=mode, classes=list(classes))
    )
    h.update(memoryview(np.ascontiguousarray(images, dtype=np.uint8)).cast("B"))
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


def fingerprint_files(
    root: str, relpaths: Sequence[str], labels: np.ndarray, classes: Sequence[str], mode: str
) -> str:
    """sha256 of relative paths + labels + file sizes (not contents): a stat per file, so it
    stays fast on ImageNet while still catching renamed, moved, added or rewritten files."""
    h = hashlib.sha256(_header("files-v1", count=len(relpaths), mode=mode, classes=list(classes)))

    def lines() -> Iterator[str]:
        for rel, label in zip(relpaths, labels.tolist()):
            path = os.path.join(root, rel)
            try:
                size = os.stat(path).st_size
            except OSError as exc:
                raise SourceError(f"cannot stat image {path}: {exc}") from exc
            yield f"{rel}\t{label}\t{size}\n"

    return _hash_lines(h, lines())


def fingerprint_subset(parent_fingerprint: str, indices: np.ndarray) -> str:
    """sha256 of the parent's fingerprint + the chosen indices (int64, in order)."""
    h = hashlib.sha256(_header("subset-v1", parent=parent_fingerprint, count=int(indices.size)))
    h.update(np.ascontiguousarray(indices, dtype="<i8").tobytes())
    return h.hexdigest()


def fingerprint_records(
    container: str, keys: Sequence[str], labels: np.ndarray, sizes: Sequence[int], classes: Sequence[str], mode: str
) -> str:
    """sha256 of record keys + labels + encoded byte sizes, for images stored as records inside a
    container (an Arrow table, tar shards, an LMDB): like :func:`fingerprint_files`, it decodes and
    hashes no image, so it stays cheap on ImageNet while catching added, removed, relabelled,
    reordered or re-encoded records. ``container`` names the packaging (``hf``, ``wds``, ``lmdb``)."""
    if not len(keys) == len(labels) == len(sizes):
        raise SourceError(f"{container} fingerprint: {len(keys)} keys, {len(labels)} labels, {len(sizes)} sizes")
    h = hashlib.sha256(_header("records-v1", container=container, count=len(keys), mode=mode,
                               classes=list(classes)))
    return _hash_lines(h, (f"{key}\t{label}\t{int(size)}\n" for key, label, size in zip(keys, labels.tolist(), sizes)))
