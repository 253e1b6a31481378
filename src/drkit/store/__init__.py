"""The reinforced store (manifest + fixed-size-record shards), the door for everything outside
``store/``: :class:`StoreWriter` writes, :class:`Store` reads, :func:`pack` packs view parameters."""
from __future__ import annotations

from .check import read_manifest
from .format import (FORMAT_VERSION, array_schema, bytes_per_record, ids_dtype, pack, partner_ids, shard_ranges, unpack,
                     unpack_many)
from .merge import merge_stores
from .stats import format_diagnostics, label_warnings, view_label_stats
from .store import Store, densify, open_store
from .writer import StoreWriter

__all__ = ["FORMAT_VERSION", "array_schema", "bytes_per_record", "ids_dtype", "pack", "partner_ids", "shard_ranges",
           "unpack", "unpack_many", "merge_stores", "Store", "StoreWriter", "densify", "format_diagnostics",
           "label_warnings", "open_store", "read_manifest", "view_label_stats"]
