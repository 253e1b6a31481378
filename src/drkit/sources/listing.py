"""Cached image-folder listings: list a 1.28 M-file folder once, not on every rank and command.

A listing (classes, relative paths, labels) and its fingerprint are kept in
``$DRKIT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/drkit`` or ``~/.cache/drkit``; ``off`` disables
it) together with the modification time of every folder that was walked. Adding, removing or
renaming a file or folder changes its parent folder's time, so a listing is reused only while
every folder's time is unchanged: one ``stat`` per folder (about a thousand on ImageNet) instead
of a walk and a ``stat`` per file. A file rewritten in place keeps its folder's time; the
per-sample content digests catch that when the image is read. Listings taken less than
``RACY_S`` seconds after a folder changed are not cached (coarse file-system clocks), as git does
with its index.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

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


def cache_dir() -> Optional[Path]:
    """Where listings are kept, or ``None`` when ``DRKIT_CACHE_DIR=off``."""
    env = os.environ.get("DRKIT_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("off", "0", "") else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "drkit"


def cache_file(kind: str, key: str) -> Optional[Path]:
    """The cache entry for ``key`` among ``kind`` (``listings``, ``wds-index``), or ``None`` when
    caching is off."""
    where = cache_dir()
    if where is None:
        return None
    return where / kind / f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}.json"


def read_entry(path: Optional[Path]) -> Optional[dict[str, Any]]:
    """A cache entry's JSON object; ``None`` when absent or unreadable (a miss, never an error)."""
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_entry(path: Optional[Path], entry: dict[str, Any]) -> None:
    """Keep ``entry`` (compact JSON, written atomically); a read-only cache only means no cache."""
    if path is None:
        return
    try:
        atomic_write_bytes(path, json.dumps(entry, separators=(",", ":")).encode("utf-8", "surrogateescape"))
    except OSError:
        pass


def _cache_file(root: str, mode: str) -> Optional[Path]:
    return cache_file("listings", f"{os.path.realpath(root)}\0{mode}")


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def load_listing(root: str, mode: str) -> Optional[tuple[Listing, str]]:
    """(listing, fingerprint) cached for ``root`` in ``mode`` while no folder of it changed, else ``None``."""
    data = read_entry(_cache_file(root, mode))
    if data is None:
        return None
    try:
        if data.get("version") != VERSION or data.get("root") != os.path.realpath(root) or data.get("mode") != mode:
            return None
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
    path = _cache_file(root, mode)
    now = time.time_ns()
    if path is None or any(now - t < RACY_S * 1e9 for t in listing.dirs.values()):
        return
    entry = {"version": VERSION, "root": os.path.realpath(root), "mode": mode, "fingerprint": fingerprint,
             "classes": listing.classes, "dirs": listing.dirs, "relpaths": listing.relpaths,
             "labels": listing.labels.tolist()}
    write_entry(path, entry)  # a read-only home: every command lists the folder, as without a cache
