"""Source base class, spec grammar, image-mode normalisation and fingerprints.

Why these live together: every source shares one spec grammar, the "one image mode per source"
rule and one fingerprint recipe. Keeping them in one module makes those guarantees auditable in
one place, and lets a new source be a small factory registered with :func:`register_source`.

Spec grammar (see :func:`load_source`)::

    SCHEME[:ARG][:SPLIT][?n=N&mode=L|RGB]

``SPLIT`` is one of ``train``/``val``/``test``; ``?n=N`` keeps the first N samples and is
implemented as ``subset(range(N))`` of the full source, so its fingerprint is derived from the
full source's fingerprint; ``?mode=`` forces the image mode (``L`` or ``RGB``).
"""
from __future__ import annotations

import hashlib
import json
import operator
import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from drkit.errors import SourceError

SPLITS: tuple[str, ...] = ("train", "val", "test")
MODES: tuple[str, ...] = ("L", "RGB")
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
)
_QUERY_KEYS = ("n", "mode")


# --------------------------------------------------------------------------------------------
# spec grammar
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec string; ``format()`` gives the canonical form that ``parse`` reads back."""

    scheme: str
    arg: Optional[str] = None
    split: Optional[str] = None
    n: Optional[int] = None
    mode: Optional[str] = None

    @classmethod
    def parse(cls, spec: str) -> "SourceSpec":
        """Split a spec into scheme, argument, split suffix and query; refuse what is malformed."""
        if not isinstance(spec, str) or not spec.strip():
            raise SourceError(f"empty source spec {spec!r}; known sources: {_known()}")
        text = spec.strip()
        n: Optional[int] = None
        mode: Optional[str] = None
        if "?" in text:
            text, query = text.split("?", 1)
            n, mode = _parse_query(query, spec)
        scheme, _, rest = text.partition(":")
        scheme = scheme.strip().lower()
        if not scheme:
            raise SourceError(f"source spec {spec!r} has no scheme; known sources: {_known()}")
        split: Optional[str] = None
        arg: Optional[str] = rest
        if rest in SPLITS:  # "fashion-mnist:test": a bare split, no argument
            split, arg = rest, None
        elif ":" in rest:
            head, _, tail = rest.rpartition(":")
            if tail in SPLITS:
                split, arg = tail, head
        return cls(scheme=scheme, arg=arg or None, split=split, n=n, mode=mode)

    def format(self) -> str:
        """The canonical string: ``scheme[:arg][:split][?n=N&mode=M]``."""
        out = self.scheme
        if self.arg:
            out += ":" + self.arg
        if self.split:
            out += ":" + self.split
        query = []
        if self.n is not None:
            query.append(f"n={self.n}")
        if self.mode is not None:
            query.append(f"mode={self.mode}")
        if query:
            out += "?" + "&".join(query)
        return out


def _parse_query(query: str, spec: str) -> tuple[Optional[int], Optional[str]]:
    values: dict[str, str] = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise SourceError(f"bad query {part!r} in source spec {spec!r}; expected ?n=N&mode=L|RGB")
        if key not in _QUERY_KEYS:
            raise SourceError(f"unknown query key {key!r} in source spec {spec!r}; known: n, mode")
        if key in values:
            raise SourceError(f"query key {key!r} given twice in source spec {spec!r}")
        values[key] = value.strip()
    n: Optional[int] = None
    if "n" in values:
        try:
            n = int(values["n"])
        except ValueError:
            raise SourceError(f"?n= must be a positive integer in source spec {spec!r}") from None
        if n < 1:
            raise SourceError(f"?n= must be a positive integer in source spec {spec!r}")
    mode: Optional[str] = None
    if "mode" in values:
        mode = values["mode"].upper()
        if mode not in MODES:
            raise SourceError(f"?mode= must be L or RGB in source spec {spec!r}")
    return n, mode


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
#: A factory builds the full (un-truncated) source: ``factory(arg, split=, mode=, download=)``.
SourceFactory = Callable[..., "Source"]
SOURCES: dict[str, SourceFactory] = {}


def register_source(name: str) -> Callable[[SourceFactory], SourceFactory]:
    """Decorator adding a factory to :data:`SOURCES` so new schemes need no if/elif edits."""
    key = name.lower()

    def decorate(factory: SourceFactory) -> SourceFactory:
        if key in SOURCES and SOURCES[key] is not factory:
            raise ValueError(f"source scheme {key!r} is already registered")
        SOURCES[key] = factory
        return factory

    return decorate


def _known() -> str:
    return ", ".join(sorted(SOURCES)) or "(none registered)"


def load_source(spec: str, split: Optional[str] = None, download: bool = False) -> "Source":
    """Open a dataset from its spec string; ``split`` must agree with a ``:split`` suffix."""
    parsed = SourceSpec.parse(spec)
    if split is not None and split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if parsed.split is not None and split is not None and parsed.split != split:
        raise SourceError(
            f"source spec {spec!r} names split {parsed.split!r} but split {split!r} was also given"
        )
    factory = SOURCES.get(parsed.scheme)
    if factory is None:
        raise SourceError(f"unknown source scheme {parsed.scheme!r} in {spec!r}; known sources: {_known()}")
    chosen = parsed.split or split or "train"
    source = factory(parsed.arg, split=chosen, mode=parsed.mode, download=download)
    if parsed.n is not None:
        if parsed.n > len(source):
            raise SourceError(
                f"?n={parsed.n} asks for more than the {len(source)} samples of {source.spec!r}"
            )
        source = source.subset(range(parsed.n))
    return source


def canonical_spec(scheme: str, arg: Optional[str], split: str, mode: str, default_mode: str) -> str:
    """Spec string a factory stamps on its source; the mode appears only when it is not the default."""
    return SourceSpec(scheme, arg, split, None, None if mode == default_mode else mode).format()


def check_split(scheme: str, split: str, allowed: Sequence[str]) -> None:
    """Refuse a split the source does not have, naming the ones it does."""
    if split not in allowed:
        raise SourceError(f"{scheme} has no split {split!r}; available: {', '.join(allowed)}")


# --------------------------------------------------------------------------------------------
# image modes
# --------------------------------------------------------------------------------------------
_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I")


def to_native(img: Image.Image) -> Image.Image:
    """Reduce any PIL mode to "L" or "RGB" with explicit, documented rules.

    * alpha (RGBA, LA, PA, P with transparency) is *dropped*, as torchvision/timm loaders do with
      ``convert("RGB")`` — the pixels the teachers were trained on;
    * 16/32-bit integer images are scaled to 8 bit by ``>> 8`` (values clipped to 0..65535 first),
      because PIL's own ``convert("L")`` clips everything above 255 to white;
    * float ("F") images are treated as 0..255 (rounded, clipped), as PIL does;
    * "1" becomes 0/255; CMYK, YCbCr, HSV use PIL's conversion to RGB.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in _HIGH_BIT_DEPTH:
        arr = np.asarray(img).astype(np.int64)
        arr = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(arr)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    if mode in ("P", "PA"):
        # via RGBA so palette transparency never warns; the alpha is then dropped like RGBA's
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Bring an image of any PIL mode to ``mode`` ("L" or "RGB")."""
    native = to_native(img)
    return native if native.mode == mode else native.convert(mode)


def open_image(path: str, mode: str) -> Image.Image:
    """Decode a file fully into memory in ``mode``; any failure names the file."""
    try:
        with Image.open(path) as img:
            img.load()
            out = to_mode(img, mode)
            if out is img:  # closing the file would release the pixels it shares
                out = img.copy()
        return out
    except SourceError:
        raise
    except Exception as exc:  # PIL raises many types for bad files; all mean "cannot decode"
        raise SourceError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc


def read_image_size(path: str) -> tuple[int, int]:
    """(H, W) from the header only: PIL opens lazily and decodes no pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as exc:
        raise SourceError(f"cannot read image header {path}: {type(exc).__name__}: {exc}") from exc
    return int(height), int(width)


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """PIL image in L or RGB -> uint8 CHW tensor (a fresh, writable copy)."""
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    return torch.from_numpy(arr)


def uint8_to_pil(t: torch.Tensor) -> Image.Image:
    """uint8 CHW tensor with 1 or 3 channels -> PIL image in L or RGB."""
    arr = t.numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(np.ascontiguousarray(arr[0]))
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))


# --------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------
def _header(kind: str, **fields: Any) -> bytes:
    return (json.dumps({"drkit-fingerprint": kind, **fields}, sort_keys=True) + "\n").encode()


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
    lines = []
    for rel, label in zip(relpaths, labels.tolist()):
        path = os.path.join(root, rel)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise SourceError(f"cannot stat image {path}: {exc}") from exc
        lines.append(f"{rel}\t{label}\t{size}\n")
        if len(lines) >= 4096:
            h.update("".join(lines).encode("utf-8", "surrogateescape"))
            lines.clear()
    h.update("".join(lines).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def fingerprint_subset(parent_fingerprint: str, indices: np.ndarray) -> str:
    """sha256 of the parent's fingerprint + the chosen indices (int64, in order)."""
    h = hashlib.sha256(_header("subset-v1", parent=parent_fingerprint, count=int(indices.size)))
    h.update(np.ascontiguousarray(indices, dtype="<i8").tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
class Source:
    """A fixed, ordered list of (image, label) pairs with one image mode and a fingerprint.

    Subclasses implement ``_pil(i)`` or ``_uint8(i)`` (the other derives from it), ``_size(i)``
    when cheaper than decoding, and ``_compute_fingerprint()``. Public methods validate indices.
    """

    def __init__(self, *, spec: str, split: str, classes: Sequence[str], mode: str, labels: np.ndarray):
        if mode not in MODES:
            raise SourceError(f"image mode must be L or RGB, not {mode!r}")
        self.spec = spec
        self.split = split
        self.classes: list[str] = [str(c) for c in classes]
        self.mode = mode
        arr = np.asarray(labels, dtype=np.int64).copy()
        arr.setflags(write=False)  # shared with callers: keep the source immutable
        self._labels = arr

    # -- properties ----------------------------------------------------------------------
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

    # -- access --------------------------------------------------------------------------
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

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of sample ``i`` without decoding pixels where the format allows it."""
        return self._size(self._index(i))

    def typical_side(self, probes: int = 33) -> int:
        """Median short side over up to ``probes`` evenly spaced samples (headers only where the
        format allows): what size-aware recipe defaults look at."""
        n = len(self)
        idx = sorted({int(round(x)) for x in np.linspace(0, n - 1, min(n, probes))})
        return int(np.median([min(self.image_size(i)) for i in idx]))

    def subset(self, indices: Union[Iterable[int], np.ndarray]) -> "Source":
        """A view on some samples, in the given order (duplicates allowed)."""
        return SubsetSource(self, indices)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary, what a store manifest records about its data."""
        return {
            "spec": self.spec,
            "split": self.split,
            "len": len(self),
            "classes": list(self.classes),
            "mode": self.mode,
            "fingerprint": self.fingerprint,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, len={len(self)}, mode={self.mode})"

    # -- hooks ---------------------------------------------------------------------------
    def _pil(self, i: int) -> Image.Image:
        return uint8_to_pil(self._uint8(i))

    def _uint8(self, i: int) -> torch.Tensor:
        return pil_to_uint8(self._pil(i))

    def _size(self, i: int) -> tuple[int, int]:
        t = self._uint8(i)
        return int(t.shape[1]), int(t.shape[2])

    def _compute_fingerprint(self) -> str:
        raise NotImplementedError


class ArraySource(Source):
    """Images held in one uint8 array: (N, H, W) for L or (N, H, W, 3) for RGB.

    Why: Fashion-MNIST, digits, MNIST and CIFAR arrive as arrays, so ``load_uint8`` is a slice
    with no PIL round trip. A forced ``mode`` converts on access (L->RGB replicates the channel,
    RGB->L uses PIL's ITU-R 601-2 luma so both access paths agree).
    """

    def __init__(
        self, *, images: np.ndarray, labels: np.ndarray, classes: Sequence[str], spec: str, split: str,
        mode: Optional[str] = None,
    ):
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

    def _compute_fingerprint(self) -> str:
        return fingerprint_arrays(self._images, self._labels, self.classes, self.mode)


class FileSource(Source):
    """Images as files under ``root`` (relative paths), decoded with PIL on access.

    Why relative paths: the fingerprint must survive moving the dataset to another disk.
    """

    def __init__(
        self, *, root: str, relpaths: Sequence[str], labels: np.ndarray, classes: Sequence[str], spec: str,
        split: str, mode: str,
    ):
        if len(relpaths) != len(labels):
            raise SourceError(f"file source {spec!r} has {len(relpaths)} files but {len(labels)} labels")
        super().__init__(spec=spec, split=split, classes=classes, mode=mode, labels=labels)
        self.root = root
        self._relpaths = list(relpaths)

    def path(self, i: int) -> str:
        """Absolute path of sample ``i``: what error messages and skip lists name."""
        return os.path.join(self.root, self._relpaths[self._index(i)])

    def _pil(self, i: int) -> Image.Image:
        return open_image(os.path.join(self.root, self._relpaths[i]), self.mode)

    def _size(self, i: int) -> tuple[int, int]:
        return read_image_size(os.path.join(self.root, self._relpaths[i]))

    def _compute_fingerprint(self) -> str:
        return fingerprint_files(self.root, self._relpaths, self._labels, self.classes, self.mode)


class SubsetSource(Source):
    """Some samples of a parent source, in a given order.

    Subsets of subsets compose onto the root source, so the fingerprint depends only on which
    samples are enumerated. A prefix ``range(k)`` gets the spec ``PARENT?n=k`` (it round-trips
    through :func:`load_source`); any other selection keeps the parent's spec, which then does
    *not* reload the subset — ``describe()`` says so under ``subset_of``.
    """

    def __init__(self, parent: Source, indices: Union[Iterable[int], np.ndarray]):
        if isinstance(indices, range):  # ?n=N on ImageNet: no 1.28M-element Python list
            idx = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
        elif isinstance(indices, (np.ndarray, torch.Tensor)):
            idx = np.asarray(indices)
        else:
            idx = np.asarray(list(indices))
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
        self._parent = parent
        self._indices = idx
        self.is_prefix = bool(idx.size) and bool(np.array_equal(idx, np.arange(idx.size)))
        spec = parent.spec
        if self.is_prefix:
            spec = replace(SourceSpec.parse(parent.spec), n=int(idx.size)).format()
        super().__init__(spec=spec, split=parent.split, classes=parent.classes, mode=parent.mode,
                         labels=parent.labels[idx])

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
