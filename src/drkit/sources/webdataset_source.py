"""``wds:PATH`` — WebDataset tar shards, read by random access.

PATH is a folder of ``.tar`` shards, one shard, a brace range (``/data/train-{000000..000009}.tar``,
also ``{a,b}`` lists) or a glob (``*``, ``[..]``; ``?`` would start the spec's query). Shards are
sorted by path; samples keep their order inside each shard. A folder that holds ``train/`` and
``val/`` or ``test/`` picks the split's subfolder; otherwise the split is only recorded.

A sample is WebDataset's: the members sharing a key (the name up to the first dot of its last path
part). Each needs exactly one image member (jpg, jpeg, png, webp, bmp, gif, tif, tiff, ppm, pgm)
and one label member (``.cls``, ``.cls.txt`` or ``.label``: an ASCII integer); other members
(``.json``, ...) are ignored. Class names come from ``classes.txt`` (one per line) beside the first
shard, else they are the stringified integers ``0..max``.

Why random access works: an uncompressed tar stores each member contiguously, so one pass over the
headers (``tarfile`` seeks past the data; only the tiny label members are read) gives every
image's offset and size, and a sample is then one seek and read. Compressed shards (``.tar.gz``)
cannot be seeked and are refused. The index of each shard is cached like folder listings
(:mod:`drkit.sources.listing`), reused while the shard's size and modification time are unchanged.
Reading needs no WebDataset library: only the tests write shards with ``webdataset.TarWriter``.
"""
from __future__ import annotations

import glob
import os
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import SourceError, one_line
from .base import Source
from .encoded import EncodedSource, check_labels
from .fingerprint import fingerprint_records
from .images import IMAGE_EXTENSIONS
from .listing import RACY_S, cache_file, read_entry, write_entry
from .registry import register_source
from .spec import canonical_spec, split_folder

#: WebDataset's split of a member name into sample key and extension (``webdataset.tariterators``)
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
IMAGE_EXTS = frozenset(e.lstrip(".") for e in IMAGE_EXTENSIONS)
LABEL_EXTS: tuple[str, ...] = ("cls", "cls.txt", "label")
INDEX_VERSION = 1


@dataclass(frozen=True)
class ShardIndex:
    """What one shard enumerates: per sample its key, image member name, byte offset, size and label."""

    keys: list[str]
    members: list[str]
    offsets: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray


def expand_braces(pattern: str) -> list[str]:
    """``{000..012}`` numeric ranges (zero padding kept) and ``{a,b}`` lists, left to right, as
    WebDataset's ``braceexpand`` does for shard names."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end():]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.groups()
        if int(lo) > int(hi):
            raise SourceError(f"wds: brace range {{{body}}} runs backwards in {pattern}")
        width = max(len(lo), len(hi)) if lo.startswith("0") or hi.startswith("0") else 0
        parts = [str(k).zfill(width) for k in range(int(lo), int(hi) + 1)]
    elif "," in body:
        parts = body.split(",")
    else:
        raise SourceError(f"wds: cannot expand {{{body}}} in {pattern} (write {{000..009}} or {{a,b}})")
    return [out for part in parts for out in expand_braces(head + part + tail)]


def resolve_shards(arg: str, split: str) -> list[str]:
    """The shard files PATH names, sorted; a name that matches nothing is refused."""
    path = os.path.abspath(os.path.expanduser(arg))
    if os.path.isdir(path):
        folder = split_folder(path, split, "wds")
        shards = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                        if n.endswith(".tar") and not n.startswith("."))
        if not shards:
            raise SourceError(f"wds {folder} holds no .tar shards")
        return shards
    found: set[str] = set()
    for name in expand_braces(path):
        if glob.has_magic(name):
            hits = [p for p in glob.glob(name) if os.path.isfile(p)]
            if not hits:
                raise SourceError(f"wds: no shard matches {name}")
            found.update(hits)
        elif os.path.isfile(name):
            found.add(name)
        else:
            raise SourceError(f"wds: shard {name} does not exist")
    return sorted(found)


def _group(tf: tarfile.TarFile, shard: str) -> dict[str, dict[str, Any]]:
    """key -> {extension: TarInfo, or the label member's bytes}, in the shard's order."""
    samples: dict[str, dict[str, Any]] = {}
    for info in tf:  # headers only: tarfile seeks past member data in an uncompressed file
        hit = _KEY_EXT.match(info.name) if info.isfile() else None
        if hit is None:
            continue
        key, ext = hit.group(1), hit.group(2).lower()
        parts = samples.setdefault(key, {})
        if ext in parts:
            raise SourceError(f"wds {shard} holds {info.name} twice (sample keys must be unique in a shard)")
        parts[ext] = info
        if ext in LABEL_EXTS:
            parts[ext] = (info.name, tf.extractfile(info).read())  # type: ignore[union-attr]
    return samples


def _is_image(ext: str) -> bool:
    return ext.rsplit(".", 1)[-1] in IMAGE_EXTS  # "jpg", also "input.jpg"


def _is_label(ext: str) -> bool:
    return ext in LABEL_EXTS


def _one(parts: dict[str, Any], wanted: Callable[[str], bool], what: str, shard: str, key: str) -> Any:
    """The one member of a sample that ``wanted`` accepts; none or several is refused."""
    found = [e for e in parts if wanted(e)]
    if len(found) != 1:
        have = ", ".join(sorted(parts)) or "nothing"
        raise SourceError(f"wds {shard}:{key} needs exactly one {what} member, has {have}")
    return parts[found[0]]


def _parse_label(name: str, data: bytes, shard: str) -> int:
    try:
        return int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise SourceError(f"wds {shard}:{name} is not an integer class id ({data[:20]!r})") from None


def scan_shard(shard: str) -> ShardIndex:
    """Read the member headers (and label members) of one uncompressed tar shard."""
    try:
        with tarfile.open(shard, "r:") as tf:
            samples = _group(tf, shard)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SourceError(f"wds {shard} is not a readable uncompressed tar ({one_line(exc)}); "
                          f"unpack .tar.gz shards to .tar, and replace truncated ones") from exc
    keys, members, offsets, sizes, labels = [], [], [], [], []
    for key, parts in samples.items():
        image = _one(parts, _is_image, "image (jpg, png, webp, ...)", shard, key)
        name, data = _one(parts, _is_label, "label (cls, cls.txt, label)", shard, key)
        keys.append(key)
        members.append(image.name)
        offsets.append(image.offset_data)
        sizes.append(image.size)
        labels.append(_parse_label(name, data, shard))
    if not keys:
        raise SourceError(f"wds {shard} holds no samples (members named KEY.EXT)")
    return ShardIndex(keys, members, np.asarray(offsets, np.int64), np.asarray(sizes, np.int64),
                      np.asarray(labels, np.int64))


def _index_file(shard: str) -> Optional[Path]:
    return cache_file("wds-index", os.path.realpath(shard))


def load_index(shard: str) -> ShardIndex:
    """The shard's index from the cache while its size and time are unchanged, else a fresh scan
    (cached unless the shard changed too recently to trust its time)."""
    try:
        st = os.stat(shard)
    except OSError as exc:
        raise SourceError(f"cannot read wds shard {shard}: {exc.strerror or exc}") from exc
    stamp = {"version": INDEX_VERSION, "shard": os.path.realpath(shard), "size": st.st_size,
             "mtime_ns": st.st_mtime_ns}
    path = _index_file(shard)
    data = read_entry(path) or {}
    try:
        lists = [data.get(k) for k in ("keys", "members", "offsets", "sizes", "labels")]
        if all(data.get(k) == v for k, v in stamp.items()) and len({len(x) for x in lists}) == 1:
            return ShardIndex(list(data["keys"]), list(data["members"]), np.asarray(data["offsets"], np.int64),
                              np.asarray(data["sizes"], np.int64), np.asarray(data["labels"], np.int64))
    except (ValueError, KeyError, TypeError):
        pass  # a malformed cache entry is a miss
    index = scan_shard(shard)
    if path is not None and time.time_ns() - st.st_mtime_ns >= RACY_S * 1e9:
        write_entry(path, {**stamp, "keys": index.keys, "members": index.members, "offsets": index.offsets.tolist(),
                           "sizes": index.sizes.tolist(), "labels": index.labels.tolist()})
    return index


def read_classes(folder: str) -> Optional[list[str]]:
    """Class names from ``folder/classes.txt`` (one per line, blank lines ignored), if present."""
    path = os.path.join(folder, "classes.txt")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read class names {path}: {one_line(exc)}") from exc


class WdsSource(EncodedSource):
    """Samples of uncompressed tar shards, each read with one seek from a header index."""

    def __init__(self, *, shards: list[str], indexes: list[ShardIndex], **kw: Any):
        super().__init__(**kw)
        self.shards = shards
        self._shard = np.concatenate([np.full(len(x.keys), s, np.int64) for s, x in enumerate(indexes)])
        self._offsets = np.concatenate([x.offsets for x in indexes])
        self._sizes = np.concatenate([x.sizes for x in indexes])
        self._members = [m for x in indexes for m in x.members]
        self._keys = [f"{os.path.basename(shards[s])}:{k}" for s, x in enumerate(indexes) for k in x.keys]

    def _name(self, i: int) -> str:
        return f"{self.shards[self._shard[i]]}:{self._members[i]}"

    def _read(self, i: int) -> bytes:
        size = int(self._sizes[i])
        try:
            with open(self.shards[self._shard[i]], "rb") as f:  # opened per read: safe in forked workers
                f.seek(int(self._offsets[i]))
                data = f.read(size)
        except OSError as exc:
            raise SourceError(f"cannot read image {self._name(i)}: {exc.strerror or exc}") from exc
        if len(data) != size:
            raise SourceError(f"cannot read image {self._name(i)}: the shard is shorter than its index "
                              f"(rewritten since it was listed?)")
        return data

    def _compute_fingerprint(self) -> str:
        return fingerprint_records("wds", self._keys, self._labels, self._sizes.tolist(), self.classes, self.mode)


@register_source("wds")
def wds(arg: Optional[str], *, split: str, mode: Optional[str], download: bool = False) -> Source:
    """``wds:PATH_OR_PATTERN[:train|val|test][?mode=L|RGB]`` for uncompressed WebDataset shards."""
    if not arg:
        raise SourceError("wds needs shards: wds:DIR, wds:/data/train-{000000..000009}.tar or wds:/data/*.tar")
    shards = resolve_shards(arg, split)
    indexes = [load_index(s) for s in shards]
    labels = np.concatenate([x.labels for x in indexes])
    classes = check_labels(labels, read_classes(os.path.dirname(shards[0])), f"wds {arg}")
    mode = mode or "RGB"
    spec = canonical_spec("wds", os.path.abspath(os.path.expanduser(arg)), split, mode, "RGB")
    return WdsSource(shards=shards, indexes=indexes, spec=spec, split=split, classes=classes, mode=mode,
                     labels=labels)
