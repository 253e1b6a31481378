"""``hf-stream:PATH_OR_NAME[:train|val|test]`` — a Hugging Face dataset read as a stream.

A streamed dataset (``datasets.load_dataset(..., streaming=True)``: hub datasets, or local parquet /
json / arrow files, never fully downloaded or converted) can only be read in order. drkit gives it a
stable sample index (its position in the stream), reads the labels in one label-only pass when the
source opens (length, classes and fingerprint come from it), and serves images from a window of
the ``WINDOW`` most recent ones, reading on as indices grow. Reinforce walks samples in order and
draws mixing partners within the window (the manifest records ``partner_window``), so one pass
suffices. An index behind the window restarts the stream from the beginning; a source restarted
more than ``MAX_RESTARTS`` times in a process is being read out of order and refuses with one line.
For random access (training with shuffling), keep a copy in a random-access packaging (``hf:``
saved with ``save_to_disk``, ``wds:``, ``lmdb:``, a folder): a store made from the stream serves
it when the content digests match.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import weakref
from collections import OrderedDict
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..errors import SourceError, one_line
from .encoded import EncodedSource, check_labels
from .registry import register_source
from .spec import canonical_spec

WINDOW = 1024
MAX_RESTARTS = 3
#: sources with an open stream, closed at exit while the libraries are still there to close it
_OPEN: "weakref.WeakSet[StreamedSource]" = weakref.WeakSet()


def _close_all() -> None:
    for src in list(_OPEN):
        src.close()
IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels", "fine_label")


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

    def _restart(self) -> dict[str, Any]:
        old = self._state.get(os.getpid())
        restarts = 0 if old is None else old["restarts"] + 1
        if restarts > MAX_RESTARTS:
            raise SourceError(f"{self.spec} is a stream read out of order (restarted {MAX_RESTARTS} times): "
                              "keep a random-access copy (hf: via save_to_disk, wds:, lmdb:, a folder) for this")
        if old is not None:
            old["it"].close()
        state = {"it": self._open_stream(), "next": 0, "cache": OrderedDict(), "restarts": restarts}
        self._state[os.getpid()] = state
        if not _OPEN:
            atexit.register(_close_all)
        _OPEN.add(self)
        return state

    def close(self) -> None:
        """Close this process's stream (reading again opens it anew)."""
        state = self._state.pop(os.getpid(), None)
        if state is not None:
            state["it"].close()

    def _read(self, i: int) -> bytes:
        state = self._state.get(os.getpid()) or self._restart()
        cache = state["cache"]
        if i in cache:
            return cache[i]
        if i < state["next"]:  # behind the window: from the beginning again
            state = self._restart()
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
    """``(encoded bytes, label)`` of every row of a streamed HF split, in order. A class, not a
    closure, so a source can be pickled (``spawn`` start method)."""

    def __init__(self, ds: Any, image: str, label: str, where: str):
        self.ds, self.image, self.label, self.where = ds, image, label, where

    def __call__(self) -> Iterator[tuple[bytes, int]]:
        for row in self.ds:
            img = row[self.image]
            data = img.get("bytes") if isinstance(img, dict) else None
            if data is None:
                raise SourceError(f"hf-stream {self.where}: a row's image has no bytes (path {img!r})")
            yield data, int(row[self.label])


def _import_datasets() -> Any:
    try:
        import datasets  # deferred: a heavy import, and an optional dependency
    except ImportError:
        raise SourceError("the hf-stream: source needs the Hugging Face datasets library: "
                          "pip install 'drkit[hf]'") from None
    return datasets


def _load(datasets: Any, where: str, split: str) -> Any:
    """The streamed split at ``where`` (a folder of data files, or a hub name)."""
    split_name = "validation" if split == "val" else split
    try:
        ds = datasets.load_dataset(where, split=split_name, streaming=True)
    except Exception as exc:  # datasets raises many types for a missing or foreign dataset
        raise SourceError(f"hf-stream {where}: cannot stream split {split_name!r} ({one_line(exc)})") from exc
    cols = list(ds.column_names or ds.features or [])
    image = [c for c in IMAGE_COLUMNS if c in cols]
    label = [c for c in LABEL_COLUMNS if c in cols]
    if len(image) != 1 or len(label) != 1:
        raise SourceError(f"hf-stream {where}: needs one image column ({'/'.join(IMAGE_COLUMNS)}) and one label "
                          f"column ({'/'.join(LABEL_COLUMNS)}); it has {', '.join(cols)}")
    return ds.cast_column(image[0], datasets.Image(decode=False)), image[0], label[0]


@register_source("hf-stream")
def hf_stream(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False,
              window: int = WINDOW) -> StreamedSource:
    """``hf-stream:PATH_OR_NAME[:split]``: labels read once (a label-only pass), images streamed."""
    if not arg:
        raise SourceError("hf-stream needs a dataset: hf-stream:PATH_OR_NAME[:train|val|test]")
    where = os.path.abspath(os.path.expanduser(arg)) if os.path.exists(os.path.expanduser(arg)) else arg
    datasets = _import_datasets()
    ds, image, label = _load(datasets, where, split)
    labels = np.asarray([int(row[label]) for row in ds.select_columns([label])], dtype=np.int64)
    if labels.size == 0:
        raise SourceError(f"hf-stream {where}: split {split!r} is empty")
    feature = (ds.features or {}).get(label)
    classes = check_labels(labels, getattr(feature, "names", None), f"hf-stream {where}")
    h = hashlib.sha256(f"hf-stream-v1\n{where}\n{split}\n{len(labels)}\n".encode())
    h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())

    spec = canonical_spec("hf-stream", where, split, mode or "RGB", "RGB")
    return StreamedSource(HFRows(ds, image, label, where), window=window, fingerprint=h.hexdigest(), spec=spec,
                          split=split, classes=classes, mode=mode or "RGB", labels=labels)
