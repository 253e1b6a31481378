"""``drkit reinforce``: label NS augmented views per image with a teacher ensemble, once.

Views are rendered by DataLoader workers (one item = one batch, so the batches, and therefore
the teacher's arithmetic, do not depend on the worker count) while the main process runs the
teacher. Batches never cross a shard boundary and shards are written atomically, so a killed
run resumes by redoing only unfinished shards and ends byte-identical to an uninterrupted one.
"""
from __future__ import annotations

import datetime as _dt
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ._verbs import make_callable
from .augment import Recipe, resolve_recipe
from .distributed import dist_env, resolve_device
from .errors import DrkitError, SourceError, StoreError
from .store.format import array_schema, shard_name, shard_ranges
from .store.shards import shard_metadata, write_shard
from .store.stats import format_diagnostics, label_warnings, shard_arrays, view_label_stats
from .store.writer import collect_skips, finalize_if_complete, prepare_store, record_skips, shard_done, store_complete


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    if spec is None:
        return 0, 1
    if isinstance(spec, tuple):
        i, n = spec
    else:
        try:
            i, n = (int(x) for x in str(spec).split("/"))
        except ValueError:
            raise DrkitError(f"--shard expects i/n (e.g. 0/4), got {spec!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise DrkitError(f"--shard {i}/{n}: need 0 <= i < n")
    return i, n


class ViewBatches(Dataset):
    """Item t = one batch of rendered views (uint8) with their codes and mixing fields."""

    def __init__(self, src: Any, recipe: Recipe, seed: int, num_views: int, image_size: int,
                 tasks: list[tuple[int, int, int, int]], skip_bad: bool):
        self.src, self.recipe, self.seed = src, recipe, seed
        self.num_views, self.image_size, self.tasks, self.skip_bad = num_views, image_size, tasks, skip_bad
        self.n = len(src)

    def __len__(self) -> int:
        return len(self.tasks)

    def _load(self, cache: dict[int, torch.Tensor | None], i: int) -> torch.Tensor | None:
        if i not in cache:
            try:
                cache[i] = self.src.load_uint8(i)
            except SourceError:
                if not self.skip_bad:
                    raise
                cache[i] = None
        return cache[i]

    def __getitem__(self, t: int) -> dict[str, Any]:
        k, a, b, start = self.tasks[t]
        ns, size, recipe = self.num_views, self.image_size, self.recipe
        cache: dict[int, torch.Tensor | None] = {}
        images, codes, bad = [], [], []
        mix = {"partner": [], "partner_view": [], "lam": [], "box": [], "mix_mode": []}
        channels = self.src.channels
        for flat in range(a, b):
            i, v = start + flat // ns, flat % ns
            img = self._load(cache, i)
            if img is None:  # --skip-bad: keep the slot, zero record, listed in the manifest
                hw = (1, 1)
            else:
                hw = (int(img.shape[-2]), int(img.shape[-1]))
            p = recipe.sample(self.seed, i, v, hw, self.n, ns)
            codes.append(recipe.encode(p))
            out = None
            if img is not None:
                m = p.get("mix")
                if m is not None and m["mode"]:
                    partner = self._load(cache, m["partner"])
                    if partner is not None:
                        pp = recipe.sample(self.seed, m["partner"], m["partner_view"],
                                           (int(partner.shape[-2]), int(partner.shape[-1])), self.n, ns)
                        out = recipe.render(img, p, size, partner, pp)
                else:
                    out = recipe.render(img, p, size)
            bad.append(out is None)
            images.append(out if out is not None else torch.zeros(channels, size, size, dtype=torch.uint8))
            if recipe.mixes:
                m = p["mix"]
                mix["partner"].append(m["partner"])
                mix["partner_view"].append(m["partner_view"])
                mix["lam"].append(m["lam"])
                mix["box"].append((m["top"], m["left"], m["h"], m["w"]))
                mix["mix_mode"].append(m["mode"])
        item: dict[str, Any] = {"task": t, "images": torch.stack(images), "codes": np.stack(codes),
                                "bad": np.array(bad, dtype=bool)}
        if recipe.mixes:
            item["mix"] = {"partner": np.array(mix["partner"], np.uint32),
                           "partner_view": np.array(mix["partner_view"], np.uint16),
                           "lam": np.array(mix["lam"], np.uint16).view(np.float16),
                           "box": np.array(mix["box"], np.uint8).reshape(-1, 4),
                           "mix_mode": np.array(mix["mix_mode"], np.uint8)}
        return item


def _batch_tasks(shards: list[tuple[int, int, int]], num_views: int, batch_size: int) -> list[tuple[int, int, int, int]]:
    """Batches as (shard, first flat index, stop flat index, shard start) aligned to shard starts."""
    tasks = []
    for k, start, stop in shards:
        total = (stop - start) * num_views
        for a in range(0, total, batch_size):
            tasks.append((k, a, min(a + batch_size, total), start))
    return tasks


@torch.inference_mode()
def _label(teacher: torch.nn.Module, images: torch.Tensor, device: str, topk: int, sample_ids: np.ndarray,
           partner_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    from .teachers import call_teacher

    x = images.to(device, non_blocking=True).float().div_(255)
    x = x.contiguous(memory_format=torch.channels_last)
    probs = call_teacher(teacher, x, sample_ids, partner_ids).float()
    p, ids = probs.topk(topk, dim=-1, largest=True, sorted=True)
    return ids.cpu().numpy(), p.cpu().numpy()


def reinforce(data: str | Any, teacher: str | Sequence[str] | torch.nn.Module, out: str | Path, *,
              recipe: str | None = "auto", samples: int = 10, topk: int = 10, image_size: int | None = None,
              seed: int = 0, batch_size: int = 256, workers: int = 2, device: str = "auto",
              shard: str | tuple[int, int] | None = None, resume: bool = False, skip_bad: bool = False,
              samples_per_shard: int = 1024, split: str | None = None, download: bool = False,
              progress: bool = True, command: Sequence[str] | None = None) -> Path:
    """Write a reinforced store of ``data`` at ``out``; returns its path (see ``drkit reinforce --help``).

    ``recipe`` is resolved for the data's image side (``auto``: pad-crop for small images, else
    ``rrc+ra+re``; size-dependent settings follow the side); the manifest records the request,
    the side and the resolved spec. When the store is complete the teachers' accuracy on plain
    images and on the stored views is printed and recorded, with a warning when the views destroy
    labels or the labels are near one-hot (memorised training images).
    """
    from .sources import load_source
    from .teachers import load_teacher

    env = dist_env()
    device = resolve_device(device, env)
    src = load_source(data, split=split, download=download) if isinstance(data, str) else data
    if not 1 <= samples <= 65535:
        raise DrkitError(f"--samples must be in 1..65535, got {samples}")
    if batch_size < 1 or samples_per_shard < 1:
        raise DrkitError("--batch-size and --samples-per-shard must be positive")
    num_classes = len(src.classes)
    if not 1 <= topk <= num_classes:
        raise DrkitError(f"--topk {topk} must be in 1..{num_classes} (the source's class count)")
    if isinstance(teacher, torch.nn.Module):
        ens = teacher
    else:
        specs = [teacher] if isinstance(teacher, str) else list(teacher)
        ens = load_teacher(specs, device=device, num_classes=num_classes, classes=list(src.classes))
    if getattr(ens, "num_classes", num_classes) != num_classes:
        raise DrkitError(f"teacher predicts {ens.num_classes} classes but {src.spec} has {num_classes}")
    if getattr(ens, "in_chans", src.channels) != src.channels:
        raise DrkitError(f"teacher takes {ens.in_chans}-channel input but {src.spec} has {src.channels} channel(s)")
    if getattr(ens, "routed", False):
        ens.bind(src)  # out-of-fold members label only the images they never trained on
    if image_size is not None and image_size < 1:
        raise DrkitError(f"--image-size must be positive, got {image_size}")
    size = int(image_size or ens.image_size)
    side = min(src.typical_side(), size)
    rec = resolve_recipe(recipe, side, strong=True)
    n = len(src)
    config: dict[str, Any] = {
        "source": src.describe(), "num_classes": num_classes,
        "teachers": ens.describe() if hasattr(ens, "describe") else [{"spec": type(ens).__name__}],
        "image_size": size, "in_chans": src.channels, "recipe": rec.describe(),
        "recipe_request": recipe or "auto", "recipe_side": side, "num_samples": n,
        "num_views": samples, "topk": topk, "seed": int(seed), "samples_per_shard": int(samples_per_shard),
        "arrays": array_schema(rec.code_bytes, topk, num_classes, rec.mixes),
    }
    shard_i, shard_n = parse_shard(shard)
    job, jobs = shard_i * env.world_size + env.rank, shard_n * env.world_size
    root = prepare_store(out, config, resume=resume, shared=jobs > 1)
    for tmp in (root / "shards").glob(".*.tmp"):  # debris of a killed write
        tmp.unlink(missing_ok=True)
    ranges = shard_ranges(n, samples_per_shard)
    mine = [(k, a, b) for k, (a, b) in enumerate(ranges) if k % jobs == job and not shard_done(root, k)]
    tasks = _batch_tasks(mine, samples, batch_size)
    _run(src, ens, rec, config, root, mine, tasks, size, device, workers, skip_bad, progress, env.rank)
    provenance = {"command": list(command) if command is not None else list(sys.argv),
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    diagnostics = None
    if store_complete(root, config):
        diagnostics = diagnose(root, config, src, ens, size, batch_size)
        if env.is_main:
            for line in format_diagnostics(diagnostics):
                print(f"drkit reinforce: {line}", file=sys.stderr)
            for line in diagnostics["warnings"]:
                print(f"drkit: warning: {line}", file=sys.stderr)
    finalize_if_complete(root, config, provenance, extra={"diagnostics": diagnostics} if diagnostics else None)
    return root


def diagnose(root: Path, config: dict[str, Any], src: Any, ens: torch.nn.Module, size: int,
             batch_size: int) -> dict[str, Any]:
    """Teacher accuracy and confidence on plain images and on the stored views, and warnings."""
    from .teachers import plain_stats

    skipped = set(collect_skips(root))
    ranges = shard_ranges(config["num_samples"], config["samples_per_shard"])
    shards = [{"file": shard_name(k), "start": a, "stop": b} for k, (a, b) in enumerate(ranges)]
    views = view_label_stats(shard_arrays(root, config, shards), np.asarray(src.labels), config["num_classes"],
                             config["topk"], config["num_views"], skipped)
    plain = plain_stats(ens, src, size, batch_size=batch_size, skipped=skipped)
    routed = bool(getattr(ens, "routed", False))
    out: dict[str, Any] = {"plain": plain, "views": views, "out_of_fold": routed,
                           "warnings": label_warnings(plain, views, out_of_fold=routed)}
    if routed and "partner" in config["arrays"]:
        out["partner_seen_views"] = _partner_fallbacks(ens, shard_arrays(root, config, shards))
    return {k: _rounded(v) for k, v in out.items()}


def _partner_fallbacks(ens: Any, shards: Any) -> int:
    """Mixed views whose partner was seen by every member that never saw the view's own image
    (with K folds: a partner from another fold); those members labelled it all the same."""
    count = 0
    for start, arrays in shards:
        mode = np.asarray(arrays["mix_mode"])
        ids = np.broadcast_to(np.arange(start, start + mode.shape[0])[:, None], mode.shape)
        partners = np.where(mode > 0, np.asarray(arrays["partner"]).astype(np.int64), -1)
        count += int(ens.eligible(ids.reshape(-1), partners.reshape(-1))[1].sum())
    return count


def _rounded(v: Any) -> Any:
    """6 significant digits: the manifest should not flip on the last bit of a float sum."""
    if isinstance(v, float):
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    return v


def _run(src: Any, ens: torch.nn.Module, rec: Recipe, config: dict[str, Any], root: Path,
         mine: list[tuple[int, int, int]], tasks: list[tuple[int, int, int, int]], size: int, device: str,
         workers: int, skip_bad: bool, progress: bool, rank: int) -> None:
    if not tasks:
        return
    from tqdm.auto import tqdm

    ns, topk, schema = config["num_views"], config["topk"], config["arrays"]
    ds = ViewBatches(src, rec, config["seed"], ns, size, tasks, skip_bad)
    loader = DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers,
                        pin_memory=device.startswith("cuda"), persistent_workers=False,
                        prefetch_factor=4 if workers > 0 else None)
    buffers: dict[int, dict[str, np.ndarray]] = {}
    bad_samples: dict[int, set[int]] = {}
    remaining = Counter(t[0] for t in tasks)  # batches left per shard (one pass: ImageNet has ~1e5 tasks)
    bounds = {k: (a, b) for k, a, b in mine}
    total_views = sum(b - a for _, a, b, _ in tasks)
    bar = tqdm(total=total_views, unit="view", desc=f"reinforce[{rank}]" if rank else "reinforce",
               disable=not progress, dynamic_ncols=True, smoothing=0.05)
    ens.eval()
    for item in loader:
        k, a, b, start = tasks[item["task"]]
        if k not in buffers:
            count = bounds[k][1] - bounds[k][0]
            buffers[k] = {name: np.zeros([count, ns, *spec["shape"]], dtype=spec["dtype"]) for name, spec in schema.items()}
            bad_samples[k] = set()
        buf = buffers[k]
        flat = np.arange(a, b)
        li, vi = flat // ns, flat % ns
        mix = item.get("mix")
        partners = (np.where(np.asarray(mix["mix_mode"]) > 0, np.asarray(mix["partner"]).astype(np.int64), -1)
                    if mix else None)
        ids, probs = _label(ens, item["images"], device, topk, start + li, partners)
        bad = item["bad"]
        ids[bad], probs[bad] = 0, 0.0
        buf["params"][li, vi] = item["codes"]
        buf["topk_ids"][li, vi] = ids.astype(buf["topk_ids"].dtype)
        buf["topk_probs"][li, vi] = probs.astype(np.float16)
        for name, arr in item.get("mix", {}).items():
            buf[name][li, vi] = arr
        bad_samples[k].update(int(start + x) for x in li[bad])
        bar.update(b - a)
        remaining[k] -= 1
        if remaining[k] == 0:
            s0, s1 = bounds[k]
            record_skips(root, k, sorted(bad_samples.pop(k)))  # before the shard: a shard implies its skips
            write_shard(root / shard_name(k), buffers.pop(k), shard_metadata(s0, s1))
    bar.close()
    if any(remaining.values()):
        raise StoreError("internal error: some shards were not completed")


make_callable(__name__, "drkit.reinforce:reinforce")
