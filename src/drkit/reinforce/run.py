"""``drkit reinforce``: label NS augmented views per image with a teacher ensemble, once.

Loader workers decode images and sample view parameters; the main process renders each batch on
the teacher's device (on CUDA a batch ahead, in a thread), labels it and hands the records to the
writer. Shards are atomic, so a killed run resumes byte-identically, redoing only unfinished ones.
"""
from __future__ import annotations

import datetime as _dt
import functools
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..augment import Recipe, resolve_recipe
from ..augment.recipe import SAMPLER
from ..augment.batch import renderer_info
from ..configs import check
from ..device import default_batch_size, default_workers, on_side_stream, resolve_device
from ..distributed import dist_env
from ..errors import DrkitError
from ..store import StoreWriter, format_diagnostics, partner_ids
from ..store.format import store_header
from .ahead import render_ahead
from .config import ReinforceConfig, parse_shard
from .diagnose import diagnose
from .labeller import Labeller, Labels
from .views import Task, ViewBatches, batch_tasks, render_item


def reinforce(cfg: ReinforceConfig) -> Path:
    """Write a reinforced store and return its path: ``reinforce(ReinforceConfig(data=..., teacher=...,
    out=...))``. A complete store's label diagnostics are printed."""
    check(isinstance(cfg, ReinforceConfig), "reinforce takes one ReinforceConfig: reinforce(ReinforceConfig(...))")
    cfg.validate()
    env = dist_env()
    device = resolve_device(cfg.device, env)
    src, ens = _open(cfg, device)
    size = int(cfg.image_size or getattr(ens, "image_size", 0))
    check(size >= 1, "the teacher module has no image_size: give ReinforceConfig(image_size=...) (--image-size)")
    side = min(src.typical_side(), size)
    rec = resolve_recipe(cfg.recipe, side, strong=True)
    config = store_config(cfg, src, ens, rec, size, side, device)
    shard_i, shard_n = parse_shard(cfg.shard)
    job, jobs = shard_i * env.world_size + env.rank, shard_n * env.world_size
    writer = StoreWriter(cfg.out, config, resume=cfg.resume, shared=jobs > 1, job=job, jobs=jobs)
    batch, mine = cfg.batch_size or default_batch_size(device, size), writer.todo(job, jobs)
    views = ViewBatches(src, rec, cfg.seed, cfg.views, batch_tasks(mine, cfg.views, batch), cfg.skip_bad)
    workers = default_workers(device) if cfg.workers is None else cfg.workers
    try:
        label_views(writer, views, size, ens, device, src.loader_workers(workers), cfg.progress, env.rank)
    except BaseException:
        writer.abandon()  # nothing finished: nothing left behind; else the finished shards stay for --resume
        raise
    provenance = {"command": list(cfg.command) if cfg.command is not None else list(sys.argv),
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    diagnostics = None
    if writer.complete():
        diagnostics = diagnose(writer, src, ens, size, batch)
        lines = [f"drkit reinforce: {x}" for x in format_diagnostics(diagnostics)]
        lines += [f"drkit: warning: {x}" for x in diagnostics["warnings"]]
        if env.is_main and lines:
            print("\n".join(lines), file=sys.stderr)
    writer.close(provenance, extra={"diagnostics": diagnostics} if diagnostics else None)
    skipped = writer.skipped()
    if skipped and env.is_main:
        print(f"drkit reinforce: skipped {len(skipped)} undecodable image{'s' if len(skipped) > 1 else ''} "
              f"(--skip-bad; listed under 'skipped' in {writer.root / 'manifest.json'})", file=sys.stderr)
    return writer.root


def _open(cfg: ReinforceConfig, device: torch.device) -> tuple[Any, torch.nn.Module]:
    """The source and the teacher ensemble, checked against each other."""
    from ..sources import load_source
    from ..teachers import load_teacher

    src = load_source(cfg.data, split=cfg.split, download=cfg.download) if isinstance(cfg.data, str) else cfg.data
    num_classes = len(src.classes)
    check(1 <= cfg.topk <= num_classes, f"--topk {cfg.topk} must be in 1..{num_classes} (the source's class count)")
    specs = cfg.teacher_specs
    ens = cfg.teacher if specs is None else load_teacher(specs, device=device, num_classes=num_classes,
                                                         classes=list(src.classes))
    if getattr(ens, "num_classes", num_classes) != num_classes:
        raise DrkitError(f"teacher predicts {ens.num_classes} classes but {src.spec} has {num_classes}")
    if getattr(ens, "in_chans", src.channels) != src.channels:
        raise DrkitError(f"teacher takes {ens.in_chans}-channel input but {src.spec} has {src.channels} channel(s)")
    if hasattr(ens, "bind"):
        ens.bind(src)  # out-of-fold members label only the images they never trained on
    return src, ens


def store_config(cfg: ReinforceConfig, src: Any, ens: torch.nn.Module, rec: Recipe, size: int, side: int,
                 device: torch.device) -> dict[str, Any]:
    """The store's content-determining configuration (``run.json``; the manifest starts with it)."""
    teachers = ens.describe() if hasattr(ens, "describe") else [{"spec": type(ens).__name__}]
    return store_header(src, teachers, rec, image_size=size, recipe_request=cfg.recipe or "auto", recipe_side=side,
                        num_views=cfg.views, topk=cfg.topk, seed=cfg.seed, samples_per_shard=cfg.images_per_shard,
                        renderer=renderer_info(device), sampler=SAMPLER, content_digest=src.digest_kind)


def label_views(writer: StoreWriter, views: ViewBatches, size: int, ens: torch.nn.Module, device: torch.device,
                workers: int, progress: bool, rank: int) -> None:
    """Decode and sample (workers), render and label (here), hand every record to the writer."""
    tasks: list[Task] = views.tasks
    if not tasks:
        return
    from tqdm.auto import tqdm

    loader = DataLoader(views, batch_size=None, shuffle=False, num_workers=workers, persistent_workers=False,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers > 0 else None)
    remaining = Counter(t.shard for t in tasks)  # batches left per shard (one pass: ImageNet has ~1e5 tasks)
    bar = tqdm(total=sum(t.stop - t.first for t in tasks), unit="view", desc=f"reinforce[{rank}]" if rank else
               "reinforce", disable=not progress, dynamic_ncols=True, smoothing=0.05)
    ens.eval()
    topk = int(writer.config["topk"])
    pending: tuple[Task, dict[str, Any], dict[str, np.ndarray], Labels] | None = None
    labeller = Labeller(ens, device, topk)
    labeller.prepare((max(t.stop - t.first for t in tasks), views.src.channels, size, size))
    render = functools.partial(_render, views.recipe, size, device)
    batches = iter(loader)  # workers fork here, from this thread, before the render thread exists
    for item, pixels in render_ahead(batches, render, threaded=device.type == "cuda"):
        task = tasks[int(item["task"])]
        records = {k: np.asarray(v) for k, v in item["records"].items()}  # the writer takes numpy
        labels = labeller(pixels, np.asarray(item["samples"]), partner_ids(records))
        if pending is not None:  # the previous batch's labels, while the teacher works on this one
            bar.update(_hand_over(writer, *pending, remaining))
        pending = (task, item, records, labels)
    if pending is not None:
        bar.update(_hand_over(writer, *pending, remaining))
    bar.close()


def _render(recipe: Recipe, size: int, device: torch.device, item: dict[str, Any]) -> torch.Tensor:
    """A batch's pixels on the teacher's device (on CUDA on a side stream, see ``on_side_stream``)."""
    return on_side_stream(device, item["images"], render_item, recipe, item, size, device)


def _hand_over(writer: StoreWriter, task: Task, item: dict[str, Any], records: dict[str, np.ndarray], labels: Labels,
               remaining: Counter) -> int:
    """A labelled batch's records to the writer, sealing its shard after its last batch; its view count."""
    ids, probs = labels.result()
    samples, bad = np.asarray(item["samples"]), np.asarray(item["bad"])
    ids[bad], probs[bad] = 0, 0.0
    writer.add(task.shard, samples, np.asarray(item["views"]),
               {**records, "topk_ids": ids, "topk_probs": probs.astype(np.float16)},
               bad=samples[bad].tolist(), digests=np.asarray(item["digests"]))
    remaining[task.shard] -= 1
    if remaining[task.shard] == 0:
        writer.seal(task.shard)
    return task.stop - task.first
