"""Cached listings: list a 1.28 M-file folder (or index a tar shard) once, not on every rank and command.

Entries live in ``$DRKIT_CACHE_DIR`` (default ``~/.cache/drkit``; ``off`` disables it), stamped with
what must be unchanged for reuse: every folder's modification time (adding, removing or renaming a
file changes it: one ``stat`` per folder, not per file), a shard's size and time. Entries taken
within ``RACY_S`` of a change are not kept (coarse clocks), as git does with its index.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from ..fileio import atomic_write_bytes

VERSION = 1
RACY_S = 2.0


@dataclass(frozen=True)
class Listing:
    """What a folder enumerates, and the folder times it was read at."""

    classes: list[str]
    relpaths: list[str]
    labels: np.ndarray
    dirs: dict[str, int]  # folder (relative to the root, "." for the root) -> st_mtime_ns


def cache_file(kind: str, key: str) -> Optional[Path]:
    """The cache entry for ``key`` among ``kind`` (``listings``, ``wds-index``); ``None``: caching is off."""
    env = os.environ.get("DRKIT_CACHE_DIR")
    if env is not None and env.strip().lower() in ("off", "0", ""):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    where = Path(env).expanduser() if env is not None else Path(base) / "drkit"
    return where / kind / f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}.json"


def load_cached(kind: str, key: str, stamp: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The entry for ``key`` while its ``stamp`` fields are unchanged; ``None`` (a miss, never an
    error) when absent, unreadable or stale."""
    path = cache_file(kind, key)
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and all(data.get(k) == v for k, v in stamp.items()) else None


def save_cached(kind: str, key: str, entry: dict[str, Any], changed_ns: Iterable[int]) -> None:
    """Keep ``entry`` (compact JSON, written atomically) unless something it stamps changed within
    ``RACY_S``; a read-only cache only means no cache."""
    path, now = cache_file(kind, key), time.time_ns()
    if path is None or any(now - t < RACY_S * 1e9 for t in changed_ns):
        return
    try:
        atomic_write_bytes(path, json.dumps(entry, separators=(",", ":")).encode("utf-8", "surrogateescape"))
    except OSError:
        pass


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _stamp(root: str, mode: str) -> dict[str, Any]:
    return {"version": VERSION, "root": os.path.realpath(root), "mode": mode}


def load_listing(root: str, mode: str) -> Optional[tuple[Listing, str]]:
    """(listing, fingerprint) cached for ``root`` in ``mode`` while no folder of it changed, else ``None``."""
    stamp = _stamp(root, mode)
    data = load_cached("listings", f"{stamp['root']}\0{mode}", stamp)
    if data is None:
        return None
    try:
        dirs = {str(k): int(v) for k, v in data["dirs"].items()}
        relpaths, labels, classes = list(data["relpaths"]), data["labels"], list(data["classes"])
        fingerprint = str(data["fingerprint"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a malformed cache entry is a miss; the folder is listed again
    if any(_mtime(os.path.join(root, d)) != t for d, t in dirs.items()):
        return None
    if len(relpaths) != len(labels) or any(p.startswith("/") or ".." in p.split("/") for p in relpaths):
        return None  # never read outside the root on the word of a cache file
    return Listing(classes, relpaths, np.asarray(labels, dtype=np.int64), dirs), fingerprint


def save_listing(root: str, mode: str, listing: Listing, fingerprint: str) -> None:
    """Keep ``listing`` for the next command, unless a folder changed too recently to trust its time."""
    stamp = _stamp(root, mode)
    entry = {**stamp, "fingerprint": fingerprint, "classes": listing.classes, "dirs": listing.dirs,
             "relpaths": listing.relpaths, "labels": listing.labels.tolist()}
    save_cached("listings", f"{stamp['root']}\0{mode}", entry, listing.dirs.values())
