"""Merging stores: NS adds up (same source, recipe, teachers, K, shard layout; distinct seeds). Views of
B follow A's; a mixed view's ``partner_view`` shifts with them, so it still names its partner's view."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from .store import Store
from .writer import StoreWriter

_SAME = ("source", "num_classes", "teachers", "image_size", "recipe", "topk", "samples_per_shard", "arrays", "renderer",
         "replay")  # the renderer too: a merged store replays every view as its own store would


def merge_stores(inputs: list[str | Path], out: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Concatenate the views of ``inputs`` into a new store at ``out``."""
    if len(inputs) < 2:
        raise StoreError("merge needs at least two stores")
    stores = [Store(p) for p in inputs]
    for s in stores:  # every input checked in full before anything is written
        s.verify()
    first = stores[0].manifest
    for s in stores[1:]:
        for key in _SAME:
            if s.manifest[key] != first[key]:
                raise StoreError(f"cannot merge {s.path} into {stores[0].path}: different {key}")
        if s.digest_kind != stores[0].digest_kind:
            raise StoreError(f"cannot merge {s.path} into {stores[0].path}: different content digests "
                             f"({s.digest_kind} vs {stores[0].digest_kind})")
    parts = [p for s in stores for p in (s.manifest.get("parts") or [{"seed": s.seed, "views": s.num_views}])]
    seen = [(p["seed"], p.get("first_view", 0)) for p in parts]
    if len(set(seen)) != len(seen):
        raise StoreError("cannot merge stores made with the same seed: their views would repeat")
    total_views = sum(s.num_views for s in stores)
    if total_views > 65535:
        raise StoreError("a merged store holds at most 65,535 views per sample")
    for k in range(len(first["shards"])):
        digests = [s.content_digests(k) for s in stores]
        if digests[0] is not None and any(not np.array_equal(d, digests[0]) for d in digests[1:]):
            raise StoreError(f"cannot merge: the inputs were made from different images (the content digests "
                             f"of shard {k} differ)")
    config = {k: first[k] for k in first if k not in ("format", "format_version", "drkit_version", "shards",
                                                      "skipped", "provenance", "diagnostics", "manifest_sha256")}
    config.update(num_views=total_views, parts=parts, seed=first["seed"])
    writer = StoreWriter(out, config)
    offsets = np.cumsum([0] + [s.num_views for s in stores])[:-1]  # where each input's views begin
    try:
        for k, parts_k in enumerate(zip(*(s.shard_arrays() for s in stores))):  # inputs' views side by side
            writer.write(k, {name: np.concatenate([_shifted(name, arrays[name], off) for (_, arrays), off
                                                   in zip(parts_k, offsets)], axis=1) for name in parts_k[0][1]},
                         digests=stores[0].content_digests(k))
        writer.close(provenance or {"command": "merge"}, skipped=sorted(set().union(*[set(s.skipped) for s in stores])))
    except BaseException:
        writer.abandon(keep_finished=False)  # a failed merge (a full disk) leaves nothing behind
        raise
    return writer.root


def _shifted(name: str, a: np.ndarray, off: int) -> np.ndarray:
    return (np.asarray(a).astype(np.int64) + off).astype(np.uint16) if name == "partner_view" else np.asarray(a)
