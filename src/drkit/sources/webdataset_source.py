"""``wds:PATH`` — uncompressed WebDataset tar shards, read by random access.

PATH: a folder of ``.tar`` shards (or its split subfolder), one shard, a brace range or a glob. A
sample is the members sharing a key: one image and one label (``.cls``, ``.cls.txt``, ``.label``);
class names from ``classes.txt`` beside the first shard. Why random access works: a tar stores each
member contiguously, so one pass over the headers (cached, :mod:`.listing`) gives every image's
offset and size; compressed shards cannot be seeked and are refused. No WebDataset library needed.
"""
from __future__ import annotations

import glob
import os
import re
import tarfile
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..errors import SourceError, one_line
from .base import Source
from .encoded import IMAGE_EXTENSIONS, EncodedSource, ascii_int, check_labels
from .fingerprint import fingerprint_records
from .listing import load_cached, save_cached
from .registry import register_source
from .spec import local_path, split_folder, stamp

#: WebDataset's split of a member name into sample key and extension (``webdataset.tariterators``)
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
IMAGE_EXTS = frozenset(e.lstrip(".") for e in IMAGE_EXTENSIONS)
LABEL_EXTS: tuple[str, ...] = ("cls", "cls.txt", "label")
INDEX_VERSION = 1
INDEX_FIELDS = ("keys", "members", "offsets", "sizes", "labels")


@dataclass(frozen=True)
class ShardIndex:
    """What one shard enumerates: per sample its key, image member name, byte offset, size and label."""

    keys: list[str]
    members: list[str]
    offsets: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, keys: Any, members: Any, *arrays: Any) -> "ShardIndex":
        return cls(list(keys), list(members), *(np.asarray(a, np.int64) for a in arrays))


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


def resolve_shards(path: str, split: str) -> list[str]:
    """The shard files an absolute PATH names, sorted; a name that matches nothing is refused."""
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


def _one(parts: dict[str, Any], wanted: Callable[[str], bool], what: str, shard: str, key: str) -> Any:
    """The one member of a sample that ``wanted`` accepts; none or several is refused."""
    found = [e for e in parts if wanted(e)]
    if len(found) != 1:
        have = ", ".join(sorted(parts)) or "nothing"
        raise SourceError(f"wds {shard}:{key} needs exactly one {what} member, has {have}")
    return parts[found[0]]


def scan_shard(shard: str) -> ShardIndex:
    """Read the member headers (and label members) of one uncompressed tar shard."""
    samples: dict[str, dict[str, Any]] = {}  # key -> {extension: TarInfo, or the label member's bytes}
    try:
        with tarfile.open(shard, "r:") as tf:
            for info in tf:  # headers only: tarfile seeks past member data in an uncompressed file
                hit = _KEY_EXT.match(info.name) if info.isfile() else None
                if hit is None:
                    continue
                key, ext = hit.group(1), hit.group(2).lower()
                parts = samples.setdefault(key, {})
                if ext in parts:
                    raise SourceError(f"wds {shard} holds {info.name} twice (sample keys must be unique in a shard)")
                parts[ext] = (info.name, tf.extractfile(info).read()) if ext in LABEL_EXTS else info  # type: ignore
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SourceError(f"wds {shard} is not a readable uncompressed tar ({one_line(exc)}); "
                          f"unpack .tar.gz shards to .tar, and replace truncated ones") from exc
    rows = []
    for key, parts in samples.items():
        image = _one(parts, lambda e: e.rsplit(".", 1)[-1] in IMAGE_EXTS, "image (jpg, png, webp, ...)", shard, key)
        name, data = _one(parts, LABEL_EXTS.__contains__, "label (cls, cls.txt, label)", shard, key)
        rows.append((key, image.name, image.offset_data, image.size, ascii_int(data, f"wds {shard}:{name}")))
    if not rows:
        raise SourceError(f"wds {shard} holds no samples (members named KEY.EXT)")
    return ShardIndex.of(*zip(*rows))


def load_index(shard: str) -> ShardIndex:
    """The shard's index, cached while its size and time are unchanged, else a fresh scan."""
    try:
        st = os.stat(shard)
    except OSError as exc:
        raise SourceError(f"cannot read wds shard {shard}: {exc.strerror or exc}") from exc
    real = os.path.realpath(shard)
    stamp = {"version": INDEX_VERSION, "shard": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    data = load_cached("wds-index", real, stamp) or {}
    try:
        if len({len(data.get(k)) for k in INDEX_FIELDS}) == 1:
            return ShardIndex.of(*(data[k] for k in INDEX_FIELDS))
    except (ValueError, KeyError, TypeError):
        pass  # a malformed cache entry (or none) is a miss
    index = scan_shard(shard)
    fields = {k: getattr(index, k) for k in INDEX_FIELDS}
    entry = {**stamp, **{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in fields.items()}}
    save_cached("wds-index", real, entry, [st.st_mtime_ns])
    return index


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
    path = local_path(arg, "wds needs shards: wds:DIR, wds:/data/train-{000000..000009}.tar or wds:/data/*.tar")
    shards = resolve_shards(path, split)
    indexes = [load_index(s) for s in shards]
    labels = np.concatenate([x.labels for x in indexes])
    names, listed = None, os.path.join(os.path.dirname(shards[0]), "classes.txt")  # one a line, if present
    if os.path.isfile(listed):
        try:
            with open(listed, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read class names {listed}: {one_line(exc)}") from exc
    classes = check_labels(labels, names, f"wds {arg}")
    return WdsSource(shards=shards, indexes=indexes, classes=classes, labels=labels,
                     **stamp("wds", path, split, mode, "RGB"))
