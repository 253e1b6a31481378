"""The reinforced store: manifest + fixed-size-record shards, random access, verify, merge."""
from __future__ import annotations

from .format import FORMAT_VERSION, array_schema, bytes_per_record, shard_ranges
from .merge import merge_stores
from .stats import label_warnings, view_label_stats
from .store import Store, densify, open_store, read_manifest

__all__ = ["FORMAT_VERSION", "array_schema", "bytes_per_record", "shard_ranges", "merge_stores", "Store",
           "densify", "label_warnings", "open_store", "read_manifest", "view_label_stats"]
