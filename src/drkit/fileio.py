"""Atomic file writes and hashing: a reader never sees half a file, a crash never leaves one."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes, tag: str = "") -> None:
    """Write to a temp file in the same folder, fsync, rename over ``path``, fsync the folder.
    ``tag`` goes into the temp file's name (``.NAME.TAG*.tmp``) so a job can tell its own debris."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{tag + '.' if tag else ''}", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # some filesystems refuse directory fsync; the rename is still atomic
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def inside(root: str | os.PathLike, name: Any, what: str, error: type[Exception]) -> Path:
    """``root / name`` for a relative ``name`` that resolves inside ``root`` (symlinks followed), else
    ``error``: paths read from a manifest or config must never reach outside their directory."""
    base = Path(root).resolve()
    if not isinstance(name, str) or not name or "\x00" in name or Path(name).is_absolute():
        raise error(f"{what} names {name!r}, not a relative path inside {root}")
    try:
        target = (base / name).resolve()
    except (OSError, ValueError, RuntimeError):  # too long, a symlink loop, ...
        raise error(f"{what} names {name!r}, which does not resolve to a file inside {root}") from None
    if target != base and base not in target.parents:
        raise error(f"{what} names {name!r}, which resolves outside {root}; refusing to read it")
    return Path(root) / name


def read_json_object(path: str | os.PathLike, error: type[Exception], what: str = "") -> dict[str, Any]:
    """``path``'s JSON object, else ``error`` in one line (``{what}{path} is not ...``): never a traceback."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{what}{path} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise error(f"{what}{path} is not a JSON object")
    return doc


def atomic_write_json(path: str | os.PathLike, obj: Any, tag: str = "") -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), tag=tag)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
