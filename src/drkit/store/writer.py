"""Writing a store: run configuration, refusal to mix runs, atomic shards, manifest last.

``run.json`` holds everything that determines the store's content. A resumed or parallel job
must present the same configuration or is refused; ``manifest.json`` is written only once every
shard exists, by whichever job completes the set, so a visible manifest means a complete store.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import StoreError
from ..fileio import atomic_write_json, sha256_file
from .format import FORMAT_NAME, FORMAT_VERSION, MANIFEST, RUN_CONFIG, shard_name, shard_ranges


def prepare_store(out: str | Path, config: dict[str, Any], resume: bool, shared: bool = False) -> Path:
    """Create ``out`` for this run, or check that it belongs to the same run.

    ``resume`` continues an unfinished run; ``shared`` lets parallel jobs of one run (``--shard
    i/n``, torchrun ranks) join a directory another job created.
    """
    root = Path(out)
    run_path = root / RUN_CONFIG
    if root.exists() and any(not p.name.startswith(".") for p in root.iterdir()):
        if not run_path.exists():
            raise StoreError(f"{root} exists and is not a drkit store in progress; choose another --out")
        existing = json.loads(run_path.read_text())
        if existing != config:
            diff = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
            raise StoreError(f"{root} holds a different reinforce run (differs in {', '.join(diff)}); "
                             "choose another --out")
        if (root / MANIFEST).exists() and not resume:
            raise StoreError(f"{root} already holds a finished store; choose another --out")
        if not (resume or shared):
            raise StoreError(f"{root} holds an unfinished run: pass --resume to continue it")
        return root
    atomic_write_json(run_path, config)  # first, so a parallel job never sees a bare directory
    (root / "shards").mkdir(exist_ok=True)
    return root


def shard_done(root: Path, index: int) -> bool:
    return (root / shard_name(index)).exists()


def store_complete(root: Path, config: dict[str, Any]) -> bool:
    """Whether every shard of the run exists."""
    ranges = shard_ranges(config["num_samples"], config["samples_per_shard"])
    return all(shard_done(root, k) for k in range(len(ranges)))


def finalize_if_complete(root: Path, config: dict[str, Any], provenance: dict[str, Any],
                         skipped: list[int] | None = None, extra: dict[str, Any] | None = None) -> bool:
    """Write the manifest when every shard exists; returns whether the store is complete.
    ``extra`` adds keys that describe, not determine, the content (diagnostics)."""
    ranges = shard_ranges(config["num_samples"], config["samples_per_shard"])
    if not store_complete(root, config):
        return False
    shards = []
    for k, (start, stop) in enumerate(ranges):
        path = root / shard_name(k)
        shards.append({"index": k, "file": shard_name(k), "start": start, "stop": stop,
                       "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    skipped_all = sorted(set(skipped or []) | set(collect_skips(root)))
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "drkit_version": __version__,
                **config, **(extra or {}),
                "shards": shards, "skipped": skipped_all, "provenance": provenance}
    atomic_write_json(root / MANIFEST, manifest)
    return True


def record_skips(root: Path, shard_index: int, skipped: list[int]) -> None:
    """Per-shard list of samples skipped with --skip-bad, merged into the manifest at the end."""
    if skipped:
        atomic_write_json(root / "shards" / f"{shard_index:05d}.skipped.json", sorted(skipped))


def collect_skips(root: Path) -> list[int]:
    """Samples skipped with --skip-bad so far, over every finished shard."""
    out: list[int] = []
    for p in sorted((root / "shards").glob("*.skipped.json")):
        out += json.loads(p.read_text())
    return out
