"""Shard files: safetensors written atomically, read back through the header and ``numpy.memmap``,
so ``record(i, v)`` touches a few dozen bytes of one file rather than loading the shard."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as st_save

from ..errors import StoreError
from ..fileio import atomic_write_bytes

_ST_DTYPES = {"U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16, "U32": np.uint32,
              "I32": np.int32, "U64": np.uint64, "I64": np.int64, "F16": np.float16, "F32": np.float32,
              "F64": np.float64, "BOOL": np.bool_}


def shard_metadata(start: int, stop: int) -> dict[str, str]:
    """One key only: safetensors writes metadata from a hash map, so several keys would vary in order."""
    return {"drkit": f"drkit-store v1 samples {start}:{stop}"}


def write_shard(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, str], tag: str = "") -> None:
    """Atomically write one shard (temp file named with ``tag``)."""
    data = st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata)
    atomic_write_bytes(path, data, tag=tag)


def read_header(path: str | Path) -> tuple[int, dict[str, Any]]:
    """(data offset, header dict) of a safetensors file, refusing a truncated or foreign file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise StoreError(f"shard {path} is truncated")
            (n,) = struct.unpack("<Q", raw)
            if n > 100 * 1024 * 1024:
                raise StoreError(f"shard {path} has an implausible header size")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise StoreError(f"shard {path} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise StoreError(f"shard {path} is not a safetensors file") from None
    return 8 + n, header


class ShardReader:
    """Memory-mapped arrays of one shard, checked against the expected schema on open."""

    def __init__(self, path: str | Path, schema: dict[str, dict[str, Any]], num_samples: int, num_views: int):
        self.path = Path(path)
        offset, header = read_header(self.path)
        if not isinstance(header, dict):
            raise StoreError(f"shard {self.path} has a malformed header")
        size = self.path.stat().st_size
        self.arrays: dict[str, np.ndarray] = {}
        for name, spec in schema.items():
            if name not in header:
                raise StoreError(f"shard {self.path} lacks array {name!r}")
            self.arrays[name] = self._array(header[name], name, spec, [num_samples, num_views, *spec["shape"]],
                                            offset, size)

    def _array(self, info: Any, name: str, spec: dict[str, Any], want: list[int], offset: int, size: int) -> np.ndarray:
        """One array's memory map, after its header entry is checked against the schema."""
        try:
            dtype = np.dtype(_ST_DTYPES.get(info["dtype"], np.void))
            shape = [int(x) for x in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise StoreError(f"shard {self.path}: array {name!r} has a malformed header entry") from None
        if dtype != np.dtype(spec["dtype"]) or shape != want:
            raise StoreError(f"shard {self.path}: array {name!r} is {dtype.name}{shape}, "
                             f"manifest says {spec['dtype']}{want}")
        count = int(np.prod(want, dtype=np.int64))
        if not 0 <= begin <= end or end - begin != count * dtype.itemsize or offset + end > size:
            raise StoreError(f"shard {self.path} is truncated or its array {name!r} is misplaced")
        if count == 0:
            return np.zeros(want, dtype)
        # a plain ndarray over the map: indexing a memmap subclass costs ~4 µs of Python per record
        return np.asarray(np.memmap(self.path, dtype=dtype, mode="r", offset=offset + begin, shape=tuple(want)))
