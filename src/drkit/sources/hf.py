"""``hf:PATH[:train|val|test]`` — a Hugging Face ``datasets`` dataset saved with ``save_to_disk``.

PATH holds one ``Dataset`` or a ``DatasetDict``; a DatasetDict picks the split (``val`` also finds
``validation``), a single Dataset only records it (as ``imagefolder`` does with a folder that has
no split subfolders). Access is by row, so only map-style (Arrow) datasets are supported; a
streamed ``IterableDataset`` has no random access.

Columns: the image comes from ``image`` or ``img`` (an ``Image`` feature, or raw encoded bytes), the
label from ``label``, ``labels`` or ``fine_label`` (CIFAR-100's fine classes); the spec grammar has
no column options, so a dataset with none or several of them is refused with the fix (rename).
Class names are the label's ``ClassLabel`` names, else the stringified integers ``0..max``.

The image column is read *without* decoding through ``datasets`` (``Image(decode=False)``), so
drkit decodes the stored bytes itself (one mode rule, :mod:`drkit.sources.images`) and the content
digest is the CRC-32 of those encoded bytes, as an ImageFolder of the same files would give.

"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import SourceError, one_line
from .base import Source
from .encoded import EncodedSource, check_labels
from .fingerprint import fingerprint_records
from .images import read_file
from .registry import register_source
from .spec import canonical_spec

IMAGE_COLUMNS: tuple[str, ...] = ("image", "img")
LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "fine_label")


def _import_datasets() -> Any:
    try:
        import datasets  # deferred: a heavy import, and an optional dependency
    except ImportError:
        raise SourceError("the hf: source needs the Hugging Face datasets library: pip install 'drkit[hf]'") from None
    return datasets


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


def _pick(columns: Sequence[str], candidates: Sequence[str], what: str, root: str) -> str:
    """The one column of ``candidates`` present; none or several is refused with the fix."""
    found = [c for c in candidates if c in columns]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SourceError(f"hf {root} has no {what} column (looked for {', '.join(candidates)}; it has "
                          f"{', '.join(columns)}): rename yours with Dataset.rename_column and save again")
    raise SourceError(f"hf {root} has several {what} columns ({', '.join(found)}): drop or rename all but "
                      f"one with Dataset.remove_columns / rename_column and save again")


def _labels(datasets: Any, ds: Any, col: str, root: str) -> tuple[np.ndarray, list[str]]:
    """All labels (one Arrow read) and the class names of the label column."""
    feature = ds.features[col]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    dtype = getattr(feature, "dtype", "")
    if names is None and not (isinstance(feature, datasets.Value) and "int" in str(dtype)):
        raise SourceError(f"hf {root}: label column {col!r} is {feature}, not integer class ids")
    column = ds.select_columns([col]).with_format("arrow")[:].column(col)
    if column.null_count:
        raise SourceError(f"hf {root}: label column {col!r} has {column.null_count} missing labels")
    labels = np.asarray(column.to_numpy(), dtype=np.int64)
    return labels, check_labels(labels, names, f"hf {root} column {col!r}")


class HFSource(EncodedSource):
    """Rows of an Arrow-backed ``datasets.Dataset``: image bytes read per row, decoded by drkit."""

    def __init__(self, *, images: Any, column: str, root: str, **kw: Any):
        super().__init__(**kw)
        self.root, self._images, self._column = root, images, column

    def _name(self, i: int) -> str:
        return f"hf {self.root}:{self.split} row {i}"

    def _read(self, i: int) -> bytes:
        value = self._images[i][self._column]
        if isinstance(value, dict):  # an Image feature: {"bytes", "path"}; bytes absent for a path-only row
            data, path = value.get("bytes"), value.get("path")
            if data is None and path:
                return read_file(path)  # save_to_disk normally embeds the bytes; a path is read as given
            value = data
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise SourceError(f"{self._name(i)} holds no image bytes ({type(value).__name__}); "
                              f"check the {self._column!r} column")
        return bytes(value)

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
    """``hf:PATH[:train|val|test][?mode=L|RGB]`` for a dataset written by ``save_to_disk``."""
    if not arg:
        raise SourceError("hf needs a path: hf:PATH[:train|val|test] (a folder written by Dataset.save_to_disk)")
    root = os.path.abspath(os.path.expanduser(arg))
    if not os.path.isdir(root):
        head, _, tail = root.rpartition(":")
        hint = f" (split {tail!r}? the spec names train, val or test)" if tail and os.path.isdir(head) else ""
        raise SourceError(f"hf {root} is not a directory{hint}")
    datasets = _import_datasets()
    ds = _open_split(datasets, root, split)
    image_col = _pick(ds.column_names, IMAGE_COLUMNS, "image", root)
    label_col = _pick(ds.column_names, LABEL_COLUMNS, "label", root)
    labels, classes = _labels(datasets, ds, label_col, root)
    images = ds.select_columns([image_col])
    feature = images.features[image_col]
    if isinstance(feature, datasets.Image):
        images = images.cast_column(image_col, datasets.Image(decode=False))  # encoded bytes, not PIL
    elif not (isinstance(feature, datasets.Value) and "binary" in str(feature.dtype)):
        raise SourceError(f"hf {root}: column {image_col!r} is {feature}, not an Image feature or encoded bytes")
    mode = mode or "RGB"
    spec = canonical_spec("hf", root, split, mode, "RGB")
    return HFSource(images=images, column=image_col, root=root, spec=spec, split=split, classes=classes,
                    mode=mode, labels=labels)
