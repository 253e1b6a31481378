"""Sources whose samples are encoded image bytes read by key (``hf:``, ``wds:``, ``lmdb:``).

Why a module of their own: the container sources differ only in how one sample's bytes are found
and named; decoding, content digests, header-only sizes and label checks are shared here.
"""
from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from ..errors import SourceError, one_line
from .base import EncodedBytes
from .images import open_image


class SampleIndexError(SourceError, IndexError):
    """A sample index outside the source: a :class:`SourceError` (one-line refusal in the CLI) that
    is still an ``IndexError``, so Python's sequence protocol (``for x in src``) ends on it."""


class EncodedSource(EncodedBytes):
    """Samples stored as encoded image bytes (PNG, JPEG, ...) that are read by key and decoded here.

    Why a shared base: the three container sources differ only in how one sample's bytes are found
    (``_read``) and named (``_name``); decoding and header-only sizes are the same, and the
    digests come from :class:`~drkit.sources.base.EncodedBytes`, which an image folder's
    :class:`~drkit.sources.base.FileSource` shares, so the same image files digest alike whether
    they sit in a folder, an Arrow table, a tar shard or an LMDB.
    """

    def _index(self, i: Any) -> int:
        try:
            return super()._index(i)
        except IndexError as exc:
            raise SampleIndexError(str(exc)) from None

    def where(self, i: int) -> str:
        return self._name(self._index(i))

    def _pil(self, i: int) -> Image.Image:
        return open_image(self._name(i), self.mode, self._read(i))

    def _size(self, i: int) -> tuple[int, int]:
        try:
            with Image.open(io.BytesIO(self._read(i))) as img:  # lazy: the header only
                width, height = img.size
        except Exception as exc:  # PIL raises many types for bad bytes; all mean "cannot read"
            raise SourceError(f"cannot read image header {self._name(i)}: {one_line(exc)}") from exc
        return int(height), int(width)


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
