"""The source classes: a fixed, ordered list of (image, label) pairs with one mode and a fingerprint.

Why together: :class:`Source` is the access contract (index checks, PIL or uint8 access, sizes, subsets,
``describe()``); kinds differ only in where pixels come from: one uint8 array (:class:`ArraySource`), some
samples of another source (:class:`SubsetSource`), or encoded bytes in files or containers (:mod:`.encoded`).
"""
from __future__ import annotations

import operator
import sys
from dataclasses import replace
from functools import cached_property
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..errors import SourceError
from ..hashing import content_digest
from .fingerprint import fingerprint_arrays, fingerprint_subset
from .spec import MODES, SourceSpec


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """PIL image in L or RGB -> uint8 CHW tensor (a fresh, writable copy)."""
    arr = np.array(img, dtype=np.uint8)
    return torch.from_numpy(arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1)))


def uint8_to_pil(t: torch.Tensor) -> Image.Image:
    """uint8 CHW tensor with 1 or 3 channels -> PIL image in L or RGB."""
    arr = t.numpy()
    return Image.fromarray(np.ascontiguousarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)))


class Source:
    """Subclasses implement ``_pil(i)`` or ``_uint8(i)`` (the other derives from it), ``_size(i)`` when
    cheaper than decoding, ``_compute_fingerprint()``, and ``_uint8_digest(i)`` with a ``digest_kind``
    when they hold the bytes an image comes from. Public methods validate indices."""

    #: what :meth:`load_with_digest` hashes; ``None``: this source cannot digest its samples
    digest_kind: Optional[str] = None
    #: read in order only (a stream): probes take the first samples, loaders one process
    sequential: bool = False
    #: mixing partners within this many samples of their image (a stream's window); 0: anywhere
    partner_window: int = 0

    def __init__(self, *, spec: str, split: str, classes: Sequence[str], mode: str, labels: np.ndarray):
        if mode not in MODES:
            raise SourceError(f"image mode must be L or RGB, not {mode!r}")
        self.spec, self.split, self.mode = spec, split, mode
        self.classes: list[str] = [str(c) for c in classes]
        arr = np.asarray(labels, dtype=np.int64).copy()
        arr.setflags(write=False)  # shared with callers: keep the source immutable
        self._labels = arr

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        """All labels, int64, in enumeration order (read-only)."""
        return self._labels

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex of what the source enumerates, in order (computed once, on first use)."""
        return self._compute_fingerprint()

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    def _index(self, i: Any) -> int:
        i = operator.index(i)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample index {i} out of range for {n} samples of {self.spec!r}")
        return i

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        i = self._index(i)
        return self._pil(i), int(self._labels[i])

    def load_uint8(self, i: int) -> torch.Tensor:
        """Sample ``i`` as a uint8 CHW tensor with ``channels`` channels."""
        return self._uint8(self._index(i))

    def load_with_digest(self, i: int) -> tuple[torch.Tensor, Optional[int]]:
        """Sample ``i`` as uint8 CHW and the content digest of the bytes it was decoded from, from the
        same read (``None`` where ``digest_kind`` is)."""
        return self._uint8_digest(self._index(i))

    def digest(self, i: int) -> Optional[int]:
        """The content digest of sample ``i`` alone (files are read, not decoded)."""
        return self._digest(self._index(i))

    def where(self, i: int) -> str:
        """What an error message calls sample ``i``: its file, else its index in this source."""
        return f"sample {self._index(i)} of {self.spec}"

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of sample ``i`` without decoding pixels where the format allows it."""
        return self._size(self._index(i))

    def typical_side(self, probes: int = 33) -> int:
        """Median short side over up to ``probes`` samples: what size-aware recipe defaults look at."""
        idx = self.probe_indices(probes).tolist()
        sides = []
        for i in idx:
            try:
                sides.append(min(self.image_size(i)))
            except SourceError:  # an undecodable image says nothing about the others (--skip-bad)
                continue
        if not sides:
            raise SourceError(f"{self.spec}: none of {len(idx)} probed images can be read")
        return int(np.median(sides))

    def loader_workers(self, requested: int) -> int:
        """``requested`` DataLoader workers, or 0 (said on stderr) for a stream, read in one process."""
        if requested > 0 and self.sequential:
            print(f"drkit: {self.spec} is a stream, read in order in one process: --workers {requested} "
                  "is not used", file=sys.stderr)
            return 0
        return requested

    def probe_indices(self, count: int) -> np.ndarray:
        """Up to ``count`` ascending indices for statistics and probes: evenly spaced (the first N of an
        ImageFolder would all be one class), or the first ``count`` of a stream."""
        n = len(self)
        if self.sequential:
            return np.arange(min(n, count), dtype=np.int64)
        return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))

    def subset(self, indices: Union[Iterable[int], np.ndarray]) -> "Source":
        """A view on some samples, in the given order (duplicates allowed)."""
        return SubsetSource(self, indices)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary, what a store manifest records about its data."""
        return {"spec": self.spec, "split": self.split, "len": len(self), "classes": list(self.classes),
                "mode": self.mode, "fingerprint": self.fingerprint}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, len={len(self)}, mode={self.mode})"

    def _pil(self, i: int) -> Image.Image:
        return uint8_to_pil(self._uint8(i))

    def _uint8(self, i: int) -> torch.Tensor:
        return pil_to_uint8(self._pil(i))

    def _size(self, i: int) -> tuple[int, int]:
        t = self._uint8(i)
        return int(t.shape[1]), int(t.shape[2])

    def _uint8_digest(self, i: int) -> tuple[torch.Tensor, Optional[int]]:
        return self._uint8(i), None

    def _digest(self, i: int) -> Optional[int]:
        return self._uint8_digest(i)[1]

    def _compute_fingerprint(self) -> str:
        raise NotImplementedError


class ArraySource(Source):
    """Images in one uint8 array, (N, H, W) for L or (N, H, W, 3) for RGB: ``load_uint8`` is a slice. A
    forced ``mode`` converts on access (RGB->L by PIL's luma, so both access paths agree)."""

    def __init__(self, *, images: np.ndarray, labels: np.ndarray, classes: Sequence[str], spec: str, split: str,
                 mode: Optional[str] = None):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
            raise SourceError(f"array source {spec!r} needs uint8 (N,H,W) or (N,H,W,3) images, got "
                              f"{images.dtype} {images.shape}")
        if images.shape[0] != len(labels):
            raise SourceError(f"array source {spec!r} has {images.shape[0]} images but {len(labels)} labels")
        self.native_mode = "L" if images.ndim == 3 else "RGB"
        super().__init__(spec=spec, split=split, classes=classes, mode=mode or self.native_mode, labels=labels)
        images = images.view()
        images.setflags(write=False)
        self._images = images

    def _uint8(self, i: int) -> torch.Tensor:
        a = self._images[i]
        if self.native_mode == "RGB" and self.mode == "L":
            return pil_to_uint8(Image.fromarray(a).convert("L"))
        t = torch.from_numpy(a.copy())
        t = t.unsqueeze(0) if a.ndim == 2 else t.permute(2, 0, 1).contiguous()
        if self.native_mode == "L" and self.mode == "RGB":
            t = t.expand(3, -1, -1).contiguous()
        return t

    def _pil(self, i: int) -> Image.Image:
        img = Image.fromarray(self._images[i])
        return img if img.mode == self.mode else img.convert(self.mode)

    def _size(self, i: int) -> tuple[int, int]:
        return int(self._images.shape[1]), int(self._images.shape[2])

    digest_kind = "crc32-array-v1"  # CRC-32 of the sample's native (H, W[, 3]) uint8 pixels

    def _uint8_digest(self, i: int) -> tuple[torch.Tensor, Optional[int]]:
        return self._uint8(i), content_digest(self._images[i])

    def _digest(self, i: int) -> Optional[int]:
        return content_digest(self._images[i])

    def _compute_fingerprint(self) -> str:
        return fingerprint_arrays(self._images, self._labels, self.classes, self.mode)


class SubsetSource(Source):
    """Some samples of a parent source, in a given order; subsets of subsets compose onto the root. A
    prefix ``range(k)`` gets the spec ``PARENT?n=k``; any other selection keeps the parent's spec, which
    does *not* reload it, and ``describe()`` says so under ``subset_of``."""

    def __init__(self, parent: Source, indices: Union[Iterable[int], np.ndarray]):
        if isinstance(indices, range):  # ?n=N on ImageNet: no 1.28M-element Python list
            indices = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
        idx = np.asarray(indices if isinstance(indices, (np.ndarray, torch.Tensor)) else list(indices))
        if idx.size == 0:
            idx = idx.astype(np.int64).reshape(0)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise SourceError(f"subset indices must be a 1-D sequence of integers, got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(parent)):
            raise SourceError(f"subset indices must lie in 0..{len(parent) - 1} for {parent.spec!r}")
        if isinstance(parent, SubsetSource):
            idx = parent._indices[idx]
            parent = parent._parent
        idx.setflags(write=False)
        self._parent, self._indices = parent, idx
        self.is_prefix = bool(idx.size) and bool(np.array_equal(idx, np.arange(idx.size)))
        spec = replace(SourceSpec.parse(parent.spec), n=int(idx.size)).format() if self.is_prefix else parent.spec
        super().__init__(spec=spec, split=parent.split, classes=parent.classes, mode=parent.mode,
                         labels=parent.labels[idx])
        self.digest_kind, self.sequential = parent.digest_kind, parent.sequential
        self.partner_window = parent.partner_window

    @property
    def parent(self) -> Source:
        return self._parent

    @property
    def indices(self) -> np.ndarray:
        """Indices into ``parent`` (read-only)."""
        return self._indices

    def _pil(self, i: int) -> Image.Image:
        return self._parent._pil(int(self._indices[i]))

    def _uint8(self, i: int) -> torch.Tensor:
        return self._parent._uint8(int(self._indices[i]))

    def _size(self, i: int) -> tuple[int, int]:
        return self._parent._size(int(self._indices[i]))

    def _uint8_digest(self, i: int) -> tuple[torch.Tensor, Optional[int]]:
        return self._parent._uint8_digest(int(self._indices[i]))

    def _digest(self, i: int) -> Optional[int]:
        return self._parent._digest(int(self._indices[i]))

    def where(self, i: int) -> str:
        return self._parent.where(int(self._indices[self._index(i)]))

    def path(self, i: int) -> str:
        """Delegates to the parent when it is file-backed."""
        getter = getattr(self._parent, "path", None)
        if getter is None:
            raise AttributeError(f"{type(self._parent).__name__} has no file paths")
        return getter(int(self._indices[self._index(i)]))

    def _compute_fingerprint(self) -> str:
        return fingerprint_subset(self._parent.fingerprint, self._indices)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if not self.is_prefix:
            out["subset_of"] = {"spec": self._parent.spec, "fingerprint": self._parent.fingerprint,
                                "len": len(self._parent)}
        return out
