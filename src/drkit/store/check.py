"""A shard is checked the first time it is used, not only by ``drkit verify`` (path inside the
store, size, sha256, schema, values drkit could have written), so nothing runs on an edited store."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DrkitError, StoreError
from ..fileio import inside, read_json_object, sha256_file
from .format import (CONTENT_SCHEMA, DIGEST_KINDS, FORMAT_NAME, FORMAT_VERSION, MANIFEST, REQUIRED_MANIFEST_KEYS,
                     manifest_digest, shard_ranges, upgrade_manifest)
from .shards import ShardReader


def checked_file(root: Path, info: dict[str, Any], checksums: bool = True) -> Path:
    """The file a manifest entry names, inside the store, of the recorded size and (``checksums``) sha256."""
    path = inside(root, info.get("file"), f"store {root} manifest", StoreError)
    if not path.is_file():
        raise StoreError(f"shard {path} is missing: the store is incomplete; rebuild or re-copy it")
    size = path.stat().st_size
    if size != info.get("bytes"):
        raise StoreError(f"shard {path} has {size} bytes, the manifest says {info.get('bytes')}: "
                         "the store is damaged; rebuild or re-copy it")
    if checksums and sha256_file(path) != info.get("sha256"):
        raise StoreError(f"shard {path} fails its sha256 checksum (tampered or corrupt): rebuild or re-copy the store")
    return path


def open_content(root: Path, info: dict[str, Any], checksums: bool = True) -> np.ndarray:
    """The per-sample content digests (uint32 ``[samples]``) beside shard ``info``, checked like a shard."""
    path = checked_file(root, info["content"], checksums)
    return ShardReader(path, CONTENT_SCHEMA, int(info["stop"]) - int(info["start"]), 1).arrays["content"][:, 0]


def open_shard(root: Path, info: dict[str, Any], manifest: dict[str, Any], code_bits: int,
               checksums: bool = True) -> ShardReader:
    """The shard ``info`` (a manifest entry) as memory maps, after every check above."""
    path = checked_file(root, info, checksums)
    count = int(info["stop"]) - int(info["start"])
    reader = ShardReader(path, manifest["arrays"], count, int(manifest["num_views"]))
    problem = value_problem(reader.arrays, manifest, code_bits)
    if problem:
        raise StoreError(f"shard {path} holds values drkit never writes ({problem}): the store was edited; "
                         "rebuild it")
    return reader


def value_problem(arrays: dict[str, np.ndarray], manifest: dict[str, Any], code_bits: int) -> str | None:
    """What is wrong with the values of a shard's arrays, or ``None``."""
    classes, views = int(manifest["num_classes"]), int(manifest["num_views"])
    ids = np.asarray(arrays["topk_ids"])
    if ids.size and (int(ids.max()) >= classes or int(ids.min()) < 0):
        return f"a class id outside 0..{classes - 1}"
    probs = np.asarray(arrays["topk_probs"]).astype(np.float32)
    if probs.size and (not np.isfinite(probs).all() or probs.min() < 0 or probs.sum(-1).max() > 1.01):
        return "probabilities outside [0, 1] or summing past 1"
    spare = code_bits % 8
    for name in ("params", "partner_params"):
        params = np.asarray(arrays.get(name, np.zeros(0, np.uint8)))
        if params.size and spare and (params[..., (code_bits - 1) // 8] >> spare).any():
            return "parameter codes with bits beyond the recipe's fields"
    if "mix_mode" in arrays:
        modes = 3 if "partner_params" in arrays else 2  # imported views may apply MixUp and CutMix
        partners = np.asarray(arrays["partner"])
        if (np.asarray(arrays["mix_mode"]) > modes).any() or (partners >= int(manifest["num_samples"])).any():
            return "a mixing mode or partner that does not exist"
        if "partner_view" in arrays and (np.asarray(arrays["partner_view"]) >= views).any():
            return f"a partner view outside 0..{views - 1}"
    return None


#: integer manifest fields and their accepted range (uint32 partners, uint16 views)
_INT_FIELDS = {"num_classes": (1, 2**31 - 1), "image_size": (1, 4096), "num_samples": (1, 2**32 - 1),
               "num_views": (1, 65535), "topk": (1, 2**31 - 1), "seed": (0, 2**63 - 1),
               "samples_per_shard": (1, 2**32 - 1)}


def manifest_problem(m: dict[str, Any]) -> str | None:
    """What makes a manifest one drkit never writes (types, ranges, shard layout), or ``None``."""
    for key, (lo, hi) in _INT_FIELDS.items():
        v = m[key]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            return f"{key} is {v!r}, not a whole number in {lo}..{hi}"
    if m["topk"] > m["num_classes"]:
        return f"topk {m['topk']} exceeds num_classes {m['num_classes']}"
    if not isinstance(m["recipe"], dict) or not isinstance(m["recipe"].get("spec"), str):
        return "recipe has no spec"
    shards = m["shards"]
    if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
        return "shards is not a list of entries"
    if [(s.get("start"), s.get("stop")) for s in shards] != shard_ranges(m["num_samples"], m["samples_per_shard"]):
        return "the shard list does not cover the samples in order"
    def recorded(e: Any) -> bool:
        return isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)

    if not all(recorded(s) for s in shards):
        return "a shard entry lacks its byte size or sha256"
    if m["content_digest"] not in (None, *DIGEST_KINDS):
        return f"content_digest is {m['content_digest']!r}, not one of {', '.join(DIGEST_KINDS)}"
    src, skipped = m["source"], m.get("skipped", [])
    if not (isinstance(m["renderer"], dict) and isinstance(src, dict) and isinstance(src.get("fingerprint"), str)
            and isinstance(src.get("classes", []), list) and isinstance(skipped, list)
            and all(isinstance(i, int) and 0 <= i < m["num_samples"] for i in skipped)):
        return "its renderer, source or skipped list is not what drkit writes"
    if m["content_digest"] and not all(recorded(s.get("content")) for s in shards):
        return "a shard entry lacks its content digests' file, byte size or sha256"
    return None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Load and schema-check ``manifest.json`` (a missing one means the store is incomplete)."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise StoreError(f"store {root} does not exist")
    if not mpath.exists():
        raise StoreError(f"store {root} is incomplete (no {MANIFEST}): finish it with `drkit reinforce --resume`")
    manifest = read_json_object(mpath, StoreError)
    if manifest.get("format") != FORMAT_NAME:
        raise StoreError(f"{mpath} is not a drkit store manifest")
    version = manifest.get("format_version")
    if version not in range(1, FORMAT_VERSION + 1):
        raise StoreError(f"store {root} has format version {version}; this drkit reads versions 1..{FORMAT_VERSION}")
    if version >= 4 and manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise StoreError(f"{mpath} does not match its manifest_sha256: the store was edited; rebuild it")
    if version < 3:  # formats 1-2 are respelt; format 3 is format 4 without its manifest_sha256
        try:
            manifest = upgrade_manifest(manifest)
        except (DrkitError, AttributeError, TypeError, ValueError) as e:
            raise StoreError(f"{mpath} is not a manifest drkit writes ({e}): the store was edited; rebuild it") \
                from None
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise StoreError(f"{mpath} lacks required keys {missing}")
    problem = manifest_problem(manifest)
    if problem:
        raise StoreError(f"{mpath} is not a manifest drkit writes ({problem}): the store was edited; rebuild it")
    return manifest
