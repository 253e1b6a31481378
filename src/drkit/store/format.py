"""The store format: array names, dtypes and per-record shapes, and the manifest schema.

Every array in a shard is ``[samples, views, *per_record]`` with a fixed width, so one record
is a fixed-size slice that can be read without touching the other NS-1 views.
"""
from __future__ import annotations

from typing import Any

import numpy as np

FORMAT_NAME = "drkit-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUN_CONFIG = "run.json"
SHARD_DIR = "shards"

MIX_ARRAYS = ("partner", "partner_view", "lam", "box", "mix_mode")
REQUIRED_MANIFEST_KEYS = ("format", "format_version", "drkit_version", "source", "num_classes", "teachers",
                          "image_size", "recipe", "num_samples", "num_views", "topk", "seed",
                          "samples_per_shard", "arrays", "shards")


def ids_dtype(num_classes: int) -> np.dtype:
    """uint16 when class ids fit, else int32 -- never floats."""
    return np.dtype(np.uint16) if num_classes <= 65535 else np.dtype(np.int32)


def array_schema(code_bytes: int, topk: int, num_classes: int, mixes: bool) -> dict[str, dict[str, Any]]:
    """name -> {dtype, shape per record}. The manifest records it; readers check shards against it."""
    schema: dict[str, dict[str, Any]] = {
        "params": {"dtype": "uint8", "shape": [code_bytes]},
        "topk_ids": {"dtype": ids_dtype(num_classes).name, "shape": [topk]},
        "topk_probs": {"dtype": "float16", "shape": [topk]},
    }
    if mixes:
        schema.update({
            "partner": {"dtype": "uint32", "shape": []},
            "partner_view": {"dtype": "uint16", "shape": []},
            "lam": {"dtype": "float16", "shape": []},
            "box": {"dtype": "uint8", "shape": [4]},
            "mix_mode": {"dtype": "uint8", "shape": []},
        })
    return schema


def bytes_per_record(schema: dict[str, dict[str, Any]]) -> int:
    return int(sum(np.dtype(a["dtype"]).itemsize * int(np.prod(a["shape"], dtype=np.int64)) for a in schema.values()))


def shard_ranges(num_samples: int, samples_per_shard: int) -> list[tuple[int, int]]:
    """Fixed sample ranges: the shard layout depends on nothing but N and the shard size."""
    return [(s, min(s + samples_per_shard, num_samples)) for s in range(0, num_samples, samples_per_shard)]


def shard_name(index: int) -> str:
    return f"{SHARD_DIR}/{index:05d}.safetensors"
