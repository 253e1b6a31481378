"""Hugging Face ``datasets``: ``hf:PATH`` written by ``save_to_disk``, and ``hf-stream:PATH_OR_NAME``.

Images come from an ``image``/``img`` column, labels from ``label``/``labels``/``fine_label`` (none or
several is refused with the fix), read undecoded so drkit decodes and digests the bytes as an
ImageFolder of the same files would. Why a stream works for reinforce: labels come from one
label-only pass, images from a window of the ``WINDOW`` latest, and reinforce reads in order with
mixing partners within that window; more than ``MAX_RESTARTS`` restarts (reading out of order) refuse.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import weakref
from collections import OrderedDict
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..errors import SourceError, one_line
from .base import Source
from .encoded import EncodedSource, check_labels, import_optional, read_file
from .fingerprint import fingerprint_records
from .registry import register_source
from .spec import local_path, stamp

IMAGE_COLUMNS: tuple[str, ...] = ("image", "img")
LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "fine_label")
WINDOW = 1024
MAX_RESTARTS = 3
#: sources with an open stream, closed at exit while the libraries are still there to close it
_OPEN: "weakref.WeakSet[StreamedSource]" = weakref.WeakSet()


def _open_split(datasets: Any, root: str, split: str) -> Any:
    """The Dataset at ``root``, or the ``split`` of the DatasetDict there."""
    try:
        obj = datasets.load_from_disk(root)
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, ... for a foreign folder
        raise SourceError(f"hf {root} is not a dataset written by save_to_disk ({one_line(exc)})") from exc
    if isinstance(obj, datasets.DatasetDict):
        for name in (split, "validation") if split == "val" else (split,):
            if name in obj:
                return obj[name]
        raise SourceError(f"hf {root} has no split {split!r}; available: {', '.join(obj)} "
                          f"(the spec names train, val or test)")
    if not isinstance(obj, datasets.Dataset):
        raise SourceError(f"hf {root} holds a {type(obj).__name__}, not a map-style Dataset")
    return obj


def _pick(columns: Sequence[str], candidates: Sequence[str], what: str, where: str) -> str:
    """The one column of ``candidates`` present; none or several is refused with the fix."""
    found = [c for c in candidates if c in columns]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SourceError(f"{where} has no {what} column (looked for {', '.join(candidates)}; it has "
                          f"{', '.join(columns)}): rename yours with Dataset.rename_column and save again")
    raise SourceError(f"{where} has several {what} columns ({', '.join(found)}): drop or rename all but "
                      f"one with Dataset.remove_columns / rename_column and save again")


def _columns(columns: Sequence[str], where: str) -> tuple[str, str]:
    return _pick(columns, IMAGE_COLUMNS, "image", where), _pick(columns, LABEL_COLUMNS, "label", where)


def image_bytes(value: Any, name: str, column: str) -> bytes:
    """The encoded image of a row's ``column``: raw bytes, or an Image feature's ``{"bytes", "path"}``
    (a path-only value is read as given)."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data is None and path:
            return read_file(path)
        value = data
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise SourceError(f"{name} holds no image bytes ({type(value).__name__}); check the {column!r} column")
    return bytes(value)


class HFSource(EncodedSource):
    """Rows of an Arrow-backed ``datasets.Dataset``: image bytes read per row, decoded by drkit."""

    def __init__(self, *, images: Any, column: str, root: str, **kw: Any):
        super().__init__(**kw)
        self.root, self._images, self._column = root, images, column

    def _name(self, i: int) -> str:
        return f"hf {self.root}:{self.split} row {i}"

    def _read(self, i: int) -> bytes:
        return image_bytes(self._images[i][self._column], self._name(i), self._column)

    def _compute_fingerprint(self) -> str:
        import pyarrow.compute as pc  # datasets' own dependency: present whenever this source is

        keys: list[str] = []
        sizes: list[int] = []
        for chunk in self._images.with_format("arrow")[:].column(self._column).chunks:  # zero-copy, no decode
            if hasattr(chunk.type, "get_field_index"):  # Image feature: struct<bytes, path>
                data, paths = chunk.field("bytes"), chunk.field("path").to_pylist()
            else:
                data, paths = chunk, [None] * len(chunk)
            sizes += pc.fill_null(pc.binary_length(data), -1).to_pylist()
            keys += [str(len(keys) + k) if p is None else f"{len(keys) + k}:{p}" for k, p in enumerate(paths)]
        return fingerprint_records("hf", keys, self._labels, sizes, self.classes, self.mode)


@register_source("hf")
def hf(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    root = local_path(arg, "hf needs a path: hf:PATH[:train|val|test] (a folder written by Dataset.save_to_disk)")
    if not os.path.isdir(root):
        head, _, tail = root.rpartition(":")
        hint = f" (split {tail!r}? the spec names train, val or test)" if tail and os.path.isdir(head) else ""
        raise SourceError(f"hf {root} is not a directory{hint}")
    datasets = import_optional("datasets", "hf", "Hugging Face datasets", "hf")
    ds = _open_split(datasets, root, split)
    image_col, label_col = _columns(ds.column_names, f"hf {root}")
    feature = ds.features[label_col]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    if names is None and not (isinstance(feature, datasets.Value) and "int" in str(feature.dtype)):
        raise SourceError(f"hf {root}: label column {label_col!r} is {feature}, not integer class ids")
    column = ds.select_columns([label_col]).with_format("arrow")[:].column(label_col)  # all labels, one read
    if column.null_count:
        raise SourceError(f"hf {root}: label column {label_col!r} has {column.null_count} missing labels")
    labels = np.asarray(column.to_numpy(), dtype=np.int64)
    classes = check_labels(labels, names, f"hf {root} column {label_col!r}")
    images = ds.select_columns([image_col])
    feature = images.features[image_col]
    if isinstance(feature, datasets.Image):
        images = images.cast_column(image_col, datasets.Image(decode=False))  # encoded bytes, not PIL
    elif not (isinstance(feature, datasets.Value) and "binary" in str(feature.dtype)):
        raise SourceError(f"hf {root}: column {image_col!r} is {feature}, not an Image feature or encoded bytes")
    return HFSource(images=images, column=image_col, root=root, classes=classes, labels=labels,
                    **stamp("hf", root, split, mode, "RGB"))


class StreamedSource(EncodedSource):
    """Samples of an in-order stream of ``(encoded bytes, label)``, ``window`` of them kept."""

    sequential = True  # statistics and probes read the first samples, not evenly spaced ones

    def __init__(self, open_stream: Callable[[], Iterator[tuple[bytes, int]]], *, window: int = WINDOW,
                 fingerprint: str, **kw: Any):
        super().__init__(**kw)
        self._open_stream, self.partner_window, self._fp = open_stream, int(window), fingerprint
        self._state: dict[int, dict[str, Any]] = {}  # per process: iterator, next index, window, restarts

    def _compute_fingerprint(self) -> str:
        return self._fp

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the open streams: the receiving process opens its own."""
        return {**self.__dict__, "_state": {}}

    def _name(self, i: int) -> str:
        return f"{self.spec} sample {i}"

    def _restart(self, counted: bool = True) -> dict[str, Any]:
        old = self._state.get(os.getpid())
        restarts = 0 if old is None else old["restarts"] + counted
        if restarts > MAX_RESTARTS:
            raise SourceError(f"{self.spec} is a stream read out of order (restarted {MAX_RESTARTS} times): "
                              "keep a random-access copy (hf: via save_to_disk, wds:, lmdb:, a folder) for this")
        if old is not None:
            old["it"].close()
        state = {"it": self._open_stream(), "next": 0, "cache": OrderedDict(), "restarts": restarts}
        self._state[os.getpid()] = state
        if not _OPEN:
            atexit.register(lambda: [s.close() for s in list(_OPEN)])  # every open stream, at exit
        _OPEN.add(self)
        return state

    def close(self) -> None:
        """Close this process's stream (reading again opens it anew)."""
        state = self._state.pop(os.getpid(), None)
        if state is not None:
            state["it"].close()

    def _read(self, i: int) -> bytes:
        state = self._state.get(os.getpid()) or self._restart()
        if i in state["cache"]:
            return state["cache"][i]
        if i < state["next"]:  # behind the window: from the beginning again (a new pass from 0 is in order)
            state = self._restart(counted=i > 0)
        cache = state["cache"]
        while state["next"] <= i:
            try:
                data, _ = next(state["it"])
            except StopIteration:
                raise SourceError(f"{self.spec} ended after {state['next']} samples; it listed {len(self)}: "
                                  "the dataset changed since the source was opened") from None
            cache[state["next"]] = data
            state["next"] += 1
            if len(cache) > self.partner_window * 2 + 1:  # the window either side of the latest index
                cache.popitem(last=False)
        return cache[i]


class HFRows:
    """``(encoded bytes, label)`` of every row of a streamed split, in order; a class, not a closure,
    so a source pickles (``spawn`` start method)."""

    def __init__(self, ds: Any, image: str, label: str, where: str):
        self.ds, self.image, self.label, self.where = ds, image, label, where

    def __call__(self) -> Iterator[tuple[bytes, int]]:
        for k, row in enumerate(self.ds):
            yield image_bytes(row[self.image], f"hf-stream {self.where} row {k}", self.image), int(row[self.label])


@register_source("hf-stream")
def hf_stream(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False,
              window: int = WINDOW) -> StreamedSource:
    if not arg:
        raise SourceError("hf-stream needs a dataset: hf-stream:PATH_OR_NAME[:train|val|test]")
    where = os.path.abspath(os.path.expanduser(arg)) if os.path.exists(os.path.expanduser(arg)) else arg
    datasets = import_optional("datasets", "hf-stream", "Hugging Face datasets", "hf")
    split_name = "validation" if split == "val" else split
    try:  # a folder of data files, or a hub name
        ds = datasets.load_dataset(where, split=split_name, streaming=True)
    except Exception as exc:  # datasets raises many types for a missing or foreign dataset
        raise SourceError(f"hf-stream {where}: cannot stream split {split_name!r} ({one_line(exc)})") from exc
    image, label = _columns(list(ds.column_names or ds.features or []), f"hf-stream {where}")
    ds = ds.cast_column(image, datasets.Image(decode=False))
    labels = np.asarray([int(row[label]) for row in ds.select_columns([label])], dtype=np.int64)
    if labels.size == 0:
        raise SourceError(f"hf-stream {where}: split {split!r} is empty")
    feature = (ds.features or {}).get(label)
    classes = check_labels(labels, getattr(feature, "names", None), f"hf-stream {where}")
    st = stamp("hf-stream", where, split, mode, "RGB")  # the mode and the class names decide the samples too
    h = hashlib.sha256(f"hf-stream-v2\n{where}\n{split}\n{st['mode']}\n{list(classes)!r}\n{len(labels)}\n".encode())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return StreamedSource(HFRows(ds, image, label, where), window=window, fingerprint=h.hexdigest(),
                          classes=classes, labels=labels, **st)
