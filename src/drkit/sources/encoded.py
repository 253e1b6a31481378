"""Sources of encoded image bytes: files (:class:`FileSource`) or records in a container (:class:`EncodedSource`).

Why one family: they differ only in how a sample's bytes are found (``_read``) and named (``_name``),
so the same image files decode (one mode rule, :func:`to_native`) and digest (CRC-32 of the bytes)
alike in every packaging.
"""
from __future__ import annotations

import importlib
import io
import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import SourceError, one_line
from ..hashing import content_digest
from .base import Source, pil_to_uint8
from .fingerprint import fingerprint_files

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: PIL modes of 16/32-bit integer images, scaled to 8 bit by ``>> 8``
_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I")


def to_native(img: Image.Image) -> Image.Image:
    """Any PIL mode to "L" or "RGB": alpha dropped (as torchvision/timm's ``convert("RGB")``, the pixels
    teachers saw), 16/32-bit ``>> 8`` (PIL's ``convert("L")`` clips them to white), "F" as 0..255."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in _HIGH_BIT_DEPTH:
        return Image.fromarray((np.clip(np.asarray(img).astype(np.int64), 0, 65535) >> 8).astype(np.uint8))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    if mode in ("P", "PA"):
        # via RGBA so palette transparency never warns; the alpha is then dropped like RGBA's
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def open_image(path: str, mode: str, data: bytes | None = None) -> Image.Image:
    """Decode a file (or its bytes ``data``) fully in ``mode``; a failure names the file."""
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            img.load()
            out = to_native(img)
            out = out if out.mode == mode else out.convert(mode)
            if out is img:  # closing the file would release the pixels it shares
                out = img.copy()
        return out
    except Exception as exc:  # PIL raises many types for bad files; all mean "cannot decode"
        raise SourceError(f"cannot decode image {path}: {one_line(exc)}") from exc


def read_file(path: str) -> bytes:
    """A file's bytes; a failure names the file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SourceError(f"cannot read image {path}: {exc.strerror or exc}") from exc


def read_image_size(path: str, data: bytes | None = None) -> tuple[int, int]:
    """(H, W) of a file (or its bytes ``data``) from the header only: PIL opens lazily."""
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            width, height = img.size
    except Exception as exc:  # PIL raises many types for bad bytes; all mean "cannot read"
        raise SourceError(f"cannot read image header {path}: {one_line(exc)}") from exc
    return int(height), int(width)


class EncodedBytes(Source):
    """Encoded image bytes, read by ``_read(i)`` and named by ``_name(i)``."""

    digest_kind = "crc32-file-v1"  # CRC-32 of the encoded image bytes (what a file holds)

    def _read(self, i: int) -> bytes:
        raise NotImplementedError

    def _name(self, i: int) -> str:
        raise NotImplementedError

    def where(self, i: int) -> str:
        return self._name(self._index(i))

    def _pil(self, i: int) -> Image.Image:
        return open_image(self._name(i), self.mode, self._read(i))

    def _size(self, i: int) -> tuple[int, int]:
        return read_image_size(self._name(i), self._read(i))

    def _uint8_digest(self, i: int) -> tuple[torch.Tensor, Optional[int]]:
        data = self._read(i)
        return pil_to_uint8(open_image(self._name(i), self.mode, data)), content_digest(data)

    def _digest(self, i: int) -> Optional[int]:
        return content_digest(self._read(i))


class SampleIndexError(SourceError, IndexError):
    """An index outside the source: a one-line refusal in the CLI, still an ``IndexError`` so Python's
    sequence protocol (``for x in src``) ends on it."""


class EncodedSource(EncodedBytes):
    """Encoded images inside a container (``hf:``, ``hf-stream:``, ``wds:``, ``lmdb:``), read by key."""

    def _index(self, i: Any) -> int:
        try:
            return super()._index(i)
        except IndexError as exc:
            raise SampleIndexError(str(exc)) from None


def import_optional(module: str, scheme: str, library: str, extra: str) -> Any:
    """An optional dependency, imported when a source needs it; its absence says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SourceError(f"the {scheme}: source needs the {library} library: pip install 'drkit[{extra}]'") from None


def ascii_int(data: Any, what: str) -> int:
    """An ASCII integer stored as bytes (an LMDB value, a tar label member); else a refusal naming ``what``."""
    try:
        return int(bytes(data).decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise SourceError(f"{what} holds {bytes(data)[:20]!r}, not an integer") from None


def check_labels(labels: np.ndarray, classes: Optional[Sequence[str]], what: str) -> list[str]:
    """The class names for ``labels``: ``classes`` when given, else ``"0".."max"``; labels outside
    ``0..C-1`` are refused (a -1 usually marks an unlabelled test split)."""
    if labels.size and labels.min() < 0:
        raise SourceError(f"{what} has label {int(labels.min())}: labels must be 0 or more "
                          f"(unlabelled samples, e.g. a test split, cannot be reinforced)")
    if classes is None:
        return [str(c) for c in range(int(labels.max()) + 1 if labels.size else 0)]
    if labels.size and labels.max() >= len(classes):
        raise SourceError(f"{what} has label {int(labels.max())} but only {len(classes)} class names")
    return [str(c) for c in classes]


class FileSource(EncodedBytes):
    """Image files under ``root``; relative paths, so the fingerprint survives moving the dataset."""

    def __init__(self, *, root: str, relpaths: Sequence[str], labels: np.ndarray, classes: Sequence[str], spec: str,
                 split: str, mode: str):
        if len(relpaths) != len(labels):
            raise SourceError(f"file source {spec!r} has {len(relpaths)} files but {len(labels)} labels")
        super().__init__(spec=spec, split=split, classes=classes, mode=mode, labels=labels)
        self.root = root
        self._relpaths = list(relpaths)

    def path(self, i: int) -> str:
        """Absolute path of sample ``i``: what error messages and skip lists name."""
        return self.where(i)

    def _pil(self, i: int) -> Image.Image:
        return open_image(self._name(i), self.mode)

    def _name(self, i: int) -> str:
        return os.path.join(self.root, self._relpaths[i])

    def _read(self, i: int) -> bytes:
        return read_file(self._name(i))

    def _size(self, i: int) -> tuple[int, int]:
        return read_image_size(self._name(i))  # the header alone, not the whole file

    def _compute_fingerprint(self) -> str:
        return fingerprint_files(self.root, self._relpaths, self._labels, self.classes, self.mode)
