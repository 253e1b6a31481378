"""Writing a store. ``run.json`` holds everything that determines the content: a resumed or
parallel job must present the same or is refused. ``manifest.json`` is written once every shard
exists, by whichever job completes the set, so a visible manifest means a complete store.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .. import __version__
from ..errors import DrkitError, StoreError
from ..fileio import atomic_write_json, read_json_object, sha256_file
from .format import (FORMAT_NAME, FORMAT_VERSION, MANIFEST, RUN_CONFIG, SHARD_DIR, V1_DEFAULTS, content_name,
                     current_recipe, manifest_digest, shard_name, shard_ranges)
from .shards import ShardReader, shard_metadata, write_shard


class StoreWriter:
    """This job's shards of one store run and, last, its manifest. ``config`` is ``run.json``;
    ``resume`` continues an unfinished run; ``shared`` lets parallel jobs join one directory.
    Records arrive with :meth:`add` (any order), :meth:`seal` writes a shard atomically."""

    def __init__(self, out: str | Path, config: dict[str, Any], *, resume: bool = False, shared: bool = False,
                 job: int = 0, jobs: int = 1):
        #: whether this writer made the directory (only then may :meth:`abandon` remove it)
        self.created = not Path(out).exists() and not shared
        self.root = _prepare(Path(out), config, resume, shared)
        self.tag = f"job{job}of{jobs}"  # in every temp file's name: a job removes only its own debris
        self.config = config
        self.ranges = shard_ranges(int(config["num_samples"]), int(config["samples_per_shard"]))
        self._buffers: dict[int, dict[str, np.ndarray]] = {}
        self._skips: dict[int, set[int]] = {}
        #: per-sample content digests (``config["content_digest"]`` names the kind; ``None``: not recorded)
        self.digests = bool(config.get("content_digest"))
        self._content: dict[int, np.ndarray] = {}
        for tmp in (self.root / SHARD_DIR).glob(f".*.{self.tag}.*.tmp"):  # this job's debris from a killed write
            tmp.unlink(missing_ok=True)  # (only this job's: another may be writing its own now)

    def done(self, shard: int) -> bool:
        return (self.root / shard_name(shard)).exists()

    def todo(self, job: int = 0, jobs: int = 1) -> list[tuple[int, int, int]]:
        """(shard, first sample, stop) of the unfinished shards that job ``job`` of ``jobs`` owns."""
        return [(k, a, b) for k, (a, b) in enumerate(self.ranges) if k % jobs == job and not self.done(k)]

    def complete(self) -> bool:  # every shard of the run exists (written by this job or another)
        return all(self.done(k) for k in range(len(self.ranges)))

    def add(self, shard: int, samples: np.ndarray, views: np.ndarray, arrays: dict[str, np.ndarray],
            bad: Iterable[int] = (), digests: np.ndarray | None = None) -> None:
        """Records ``(samples[r], views[r]) <- arrays[name][r]``; ``bad``: ids skipped with
        ``--skip-bad`` (zero records); ``digests[r]``: ``samples[r]``'s content digest (-1: none)."""
        start, stop = self.ranges[shard]
        if self.digests:
            if digests is None:
                raise StoreError("this store records content digests: pass each sample's digest to add()")
            content = self._content.setdefault(shard, np.zeros(stop - start, np.uint32))
            d = np.asarray(digests, dtype=np.int64).reshape(-1)
            rows = np.asarray(samples, dtype=np.int64).reshape(-1)[: d.size] - start
            content[rows[d >= 0]] = d[d >= 0].astype(np.uint32)
        if shard not in self._buffers:
            self._buffers[shard] = {name: np.zeros([stop - start, int(self.config["num_views"]), *spec["shape"]],
                                                   dtype=spec["dtype"]) for name, spec in self.config["arrays"].items()}
            self._skips[shard] = set()
        buf = self._buffers[shard]
        rows = np.asarray(samples, dtype=np.int64) - start
        for name, arr in arrays.items():
            buf[name][rows, views] = np.asarray(arr).astype(buf[name].dtype, copy=False)
        self._skips[shard].update(int(i) for i in bad)

    def seal(self, shard: int) -> None:
        """Write shard ``shard`` atomically (its skip list first: a shard implies its skips)."""
        start, stop = self.ranges[shard]
        skips = sorted(self._skips.pop(shard, set()))
        (self.root / SHARD_DIR / f"{shard:05d}.skipped.json").unlink(missing_ok=True)  # a killed run's, now stale
        if skips:
            atomic_write_json(self.root / SHARD_DIR / f"{shard:05d}.skipped.json", skips, tag=self.tag)
        if self.digests:  # also before the shard: a shard implies its digests
            content = self._content.pop(shard, np.zeros(stop - start, np.uint32))
            write_shard(self.root / content_name(shard), {"content": content[:, None]}, shard_metadata(start, stop),
                        tag=self.tag)
        write_shard(self.root / shard_name(shard), self._buffers.pop(shard), shard_metadata(start, stop), tag=self.tag)

    def write(self, shard: int, arrays: dict[str, np.ndarray], skips: Iterable[int] = (),
              digests: np.ndarray | None = None) -> None:
        """A whole shard at once (``[samples, views, ...]`` arrays, ``[samples]`` digests), e.g. from a merge."""
        start, _ = self.ranges[shard]
        ids = np.arange(start, start + len(next(iter(arrays.values()))))
        views = np.arange(int(self.config["num_views"]))
        self.add(shard, ids[:, None], views[None, :], arrays, skips, digests)
        self.seal(shard)

    def skipped(self) -> list[int]:
        """Samples skipped with --skip-bad so far, over every finished shard."""
        return [i for p in sorted((self.root / SHARD_DIR).glob("*.skipped.json")) for i in json.loads(p.read_text())]

    def shard_arrays(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(first sample id, memory-mapped arrays) of every shard of a complete run."""
        for k, (a, b) in enumerate(self.ranges):
            yield a, ShardReader(self.root / shard_name(k), self.config["arrays"], b - a,
                                 int(self.config["num_views"])).arrays

    def close(self, provenance: dict[str, Any], extra: dict[str, Any] | None = None,
              skipped: Iterable[int] = ()) -> bool:
        """Write the manifest when every shard exists (returns whether it did); ``extra``: keys that
        describe, not determine, the content."""
        if not self.complete():
            return False
        def entry(name: str) -> dict[str, Any]:
            return {"file": name, "bytes": (self.root / name).stat().st_size, "sha256": sha256_file(self.root / name)}

        shards = [{"index": k, "start": start, "stop": stop, **entry(shard_name(k)),
                   **({"content": entry(content_name(k))} if self.digests else {})}
                  for k, (start, stop) in enumerate(self.ranges)]
        manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "drkit_version": __version__,
                    **self.config, **(extra or {}), "shards": shards,
                    "skipped": sorted(set(skipped) | set(self.skipped())), "provenance": provenance}
        for tmp in (self.root / SHARD_DIR).glob(".*.tmp"):  # every shard exists: no job writes; a job killed
            tmp.unlink(missing_ok=True)  # under another --shard layout left these, and none resumes to remove them
        atomic_write_json(self.root / MANIFEST, {**manifest, "manifest_sha256": manifest_digest(manifest)})
        return True

    def abandon(self, keep_finished: bool = True) -> None:
        """After a failed run: remove the directory this writer created (with ``keep_finished``, not
        once a shard is finished: ``--resume``). One that existed before or is shared stays."""
        if self.created and not (keep_finished and any(self.done(k) for k in range(len(self.ranges)))):
            shutil.rmtree(self.root, ignore_errors=True)


def _prepare(root: Path, config: dict[str, Any], resume: bool, shared: bool) -> Path:
    """Create ``root`` for this run, or check that it belongs to the same run."""
    run_path = root / RUN_CONFIG
    if root.exists() and any(not p.name.startswith(".") for p in root.iterdir()):
        if not run_path.exists():
            raise StoreError(f"{root} exists and is not a drkit store in progress; choose another --out")
        existing = _as_current(read_json_object(run_path, StoreError, "an unfinished run's "), config)
        if existing != config:
            diff = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
            if "sampler" in diff:  # absent: a run begun before sampler 2, whose sampler 1 is gone
                raise StoreError(f"{root} holds a run begun with parameter sampler {existing.get('sampler', 1)}, "
                                 f"which this drkit no longer has; start it again with another --out")
            raise StoreError(f"{root} holds a different reinforce run (differs in {', '.join(diff)}); "
                             "choose another --out")
        if (root / MANIFEST).exists() and not resume:
            raise StoreError(f"{root} already holds a finished store; choose another --out")
        if not (resume or shared):
            raise StoreError(f"{root} holds an unfinished run: pass --resume to continue it")
        return root
    atomic_write_json(run_path, config)  # first, so a parallel job never sees a bare directory
    (root / SHARD_DIR).mkdir(exist_ok=True)
    return root


def _as_current(run: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """An earlier drkit's ``run.json`` as this one writes it (format 2's keys filled in, the recipe
    re-described), so that a run begun before an upgrade resumes."""
    out = {**{k: v for k, v in V1_DEFAULTS.items() if k in ("replay", "partner_window") and k in config}, **run}
    if "recipe" in config:
        try:
            out["recipe"] = current_recipe(run)
        except (DrkitError, KeyError, TypeError, AttributeError):
            pass  # not a recipe drkit reads: the comparison refuses the run
    return out
