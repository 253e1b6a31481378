"""``imagefolder:PATH`` — the ImageNet layout, PATH/CLASS/.../IMAGE (PATH/SPLIT/... when it has splits).

Why torchvision's ``ImageFolder`` order: indices line up with torchvision's (except that hidden
entries are skipped and ``.gif`` counts). Class folders without images stay in ``classes``, so
label ids do not shift when one split lacks a class.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from ..errors import SourceError
from .base import Source
from .encoded import IMAGE_EXTENSIONS, FileSource
from .listing import Listing, load_listing, save_listing
from .registry import register_source
from .spec import local_path, split_folder, stamp


def scan_image_folder(root: str) -> Listing:
    """Classes, relative paths and labels of an ImageNet-layout folder, in torchvision's order,
    with the modification time of every folder walked (read before it is listed)."""
    dirs = {".": _mtime_ns(root)}
    try:
        with os.scandir(root) as entries:
            classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise SourceError(f"cannot list imagefolder {root}: {exc}") from exc
    if not classes:
        raise SourceError(f"imagefolder {root} has no class folders (expected PATH/CLASS/IMAGE)")
    relpaths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for dirpath, mtime, filenames in _walk(os.path.join(root, name)):
            rel_dir = os.path.relpath(dirpath, root)
            dirs[rel_dir.replace(os.sep, "/")] = mtime
            if any(part.startswith(".") for part in rel_dir.split(os.sep)):
                continue
            for fname in sorted(filenames):
                if fname.startswith(".") or not fname.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                relpaths.append(os.path.join(rel_dir, fname).replace(os.sep, "/"))
                labels.append(label)
    if not relpaths:
        raise SourceError(f"imagefolder {root} holds no images (extensions: {' '.join(IMAGE_EXTENSIONS)})")
    return Listing(classes, relpaths, np.asarray(labels, dtype=np.int64), dirs)


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError as exc:
        raise SourceError(f"cannot list {path}: {exc}") from exc


def _walk(top: str) -> list[tuple[str, int, list[str]]]:
    """(folder, its mtime, file names) under ``top`` in ``sorted(os.walk(top, followlinks=True))``
    order, hidden folders skipped; a symlink back into its own ancestry is refused."""
    found: list[tuple[str, int, list[str]]] = []

    def visit(path: str, ancestors: frozenset[str]) -> None:
        real = os.path.realpath(path)
        if real in ancestors:
            raise SourceError(f"imagefolder: symlink loop at {path} (it leads back to {real}); remove the link")
        mtime = _mtime_ns(path)
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            raise SourceError(f"cannot list {path}: {exc}") from exc
        found.append((path, mtime, [e.name for e in entries if not e.is_dir()]))
        for e in entries:
            if e.is_dir() and not e.name.startswith("."):
                visit(os.path.join(path, e.name), ancestors | {real})

    visit(top, frozenset())
    return sorted(found)


class ImageFolderSource(FileSource):
    """A folder source whose listing and fingerprint are cached between commands (:mod:`.listing`)."""

    def __init__(self, listing: Listing, fingerprint: Optional[str], **kw: Any):
        super().__init__(relpaths=listing.relpaths, labels=listing.labels, classes=listing.classes, **kw)
        self._listing, self._cached = listing, fingerprint

    def _compute_fingerprint(self) -> str:
        if self._cached is not None:
            return self._cached
        fingerprint = super()._compute_fingerprint()
        save_listing(self.root, self.mode, self._listing, fingerprint)
        return fingerprint


@register_source("imagefolder")
def imagefolder(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    root = local_path(arg, "imagefolder needs a path: imagefolder:PATH[:train|val|test] "
                           "(write imagefolder:./train for a relative folder named like a split)")
    if not os.path.isdir(root):
        raise SourceError(f"imagefolder {root} is not a directory")
    split_root = split_folder(root, split, "imagefolder")
    fields = stamp("imagefolder", root, split, mode, "RGB")
    cached = load_listing(split_root, fields["mode"])
    listing, fingerprint = cached if cached is not None else (scan_image_folder(split_root), None)
    return ImageFolderSource(listing, fingerprint, root=split_root, **fields)
