"""``lmdb:PATH`` — encoded images in an LMDB environment (the split is only recorded). Layout::

    b"__len__"                  -> ASCII integer N
    b"__classes__"              -> JSON list of class names (optional: else "0".."max")
    f"{i:08d}".encode()         -> the encoded image (the file's bytes), i = 0..N-1
    f"{i:08d}.cls".encode()     -> ASCII integer label

Why: keys sort in sample order and images are file bytes, so digests agree with an ImageFolder of
the same files. Opened read-only once per process, closed before every ``fork``.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np

from ..errors import SourceError, one_line
from .base import Source
from .encoded import EncodedSource, ascii_int, check_labels, import_optional
from .fingerprint import fingerprint_records
from .registry import register_source
from .spec import local_path, stamp

LEN_KEY = b"__len__"
CLASSES_KEY = b"__classes__"

#: open environments by (real path, process id), closed before every fork (:func:`_before_fork`)
_ENVS: dict[tuple[str, int], Any] = {}
#: held while an environment is opened, read or closed, so a fork in another thread waits for reads
_LOCK = threading.Lock()
_FORK_HOOKED: list[bool] = []


def _before_fork() -> None:
    """Close this process's environments before it forks. Why: py-lmdb keeps a process-wide table of
    open environments that a child inherits, so a worker could neither use its parent's handle nor
    open its own; closed first, the parent reopens on its next read and each child opens its own."""
    _LOCK.acquire()
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


def _open(path: str) -> Any:
    lmdb = import_optional("lmdb", "lmdb", "lmdb", "lmdb")
    subdir = os.path.isdir(path)
    if subdir and not os.path.isfile(os.path.join(path, "data.mdb")):
        raise SourceError(f"lmdb {path} is not an LMDB environment (no data.mdb inside)")
    if not _FORK_HOOKED:  # once per process, on first use: no work at import
        os.register_at_fork(before=_before_fork, after_in_parent=_LOCK.release, after_in_child=_LOCK.release)
        _FORK_HOOKED.append(True)
    try:
        return lmdb.open(path, subdir=subdir, readonly=True, lock=False, readahead=False, max_dbs=0)
    except lmdb.Error as exc:
        raise SourceError(f"lmdb {path} cannot be opened as an LMDB environment ({one_line(exc)})") from exc


@contextmanager
def transaction(path: str, buffers: bool = False) -> Iterator[Any]:
    """A read transaction on this process's read-only, lock-free handle on ``path``, opened on first use."""
    key = (os.path.realpath(path), os.getpid())
    with _LOCK:
        env = _ENVS.get(key)
        if env is None:
            env = _ENVS[key] = _open(path)
        with env.begin(buffers=buffers) as txn:
            yield txn


def _get(txn: Any, key: bytes, path: str) -> Any:
    value = txn.get(key)
    if value is None:
        raise SourceError(f"lmdb {path} has no key {key.decode()!r}; see drkit.sources.lmdb_source for the layout")
    return value


def _int(txn: Any, key: bytes, path: str) -> int:
    return ascii_int(_get(txn, key, path), f"lmdb {path} key {key.decode()!r}")


def _read_index(path: str) -> tuple[np.ndarray, np.ndarray, Optional[list[str]]]:
    """(labels, image byte sizes, class names or None), every key of the layout checked."""
    with transaction(path, buffers=True) as txn:  # buffers: sizes without copying the images
        n = _int(txn, LEN_KEY, path)
        if n < 1:
            raise SourceError(f"lmdb {path} says __len__ = {n}; it needs at least one sample")
        raw = txn.get(CLASSES_KEY)
        classes = None
        if raw is not None:
            try:
                classes = json.loads(bytes(raw).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                classes = None
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise SourceError(f"lmdb {path} key '__classes__' is not a JSON list of names")
        rows = [(_int(txn, f"{i:08d}.cls".encode(), path), len(_get(txn, f"{i:08d}".encode(), path))) for i in range(n)]
    labels, sizes = np.ascontiguousarray(np.asarray(rows, np.int64).T)
    return labels, sizes, classes


class LmdbSource(EncodedSource):
    """Images stored as values of an LMDB, read through a per-process read-only handle."""

    def __init__(self, *, path: str, sizes: np.ndarray, **kw: Any):
        super().__init__(**kw)
        self.path, self._sizes = path, sizes

    def _name(self, i: int) -> str:
        return f"lmdb {self.path} key {i:08d}"

    def _read(self, i: int) -> bytes:
        with transaction(self.path) as txn:
            return bytes(_get(txn, f"{i:08d}".encode(), self.path))

    def _compute_fingerprint(self) -> str:
        keys = [f"{i:08d}" for i in range(len(self))]
        return fingerprint_records("lmdb", keys, self._labels, self._sizes.tolist(), self.classes, self.mode)


@register_source("lmdb")
def lmdb_source(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    path = local_path(arg, "lmdb needs a path: lmdb:PATH (an LMDB environment in drkit's layout)")
    if not os.path.exists(path):
        raise SourceError(f"lmdb {path} does not exist")
    labels, sizes, classes = _read_index(path)
    classes = check_labels(labels, classes, f"lmdb {path}")
    return LmdbSource(path=path, sizes=sizes, classes=classes, labels=labels, **stamp("lmdb", path, split, mode, "RGB"))
