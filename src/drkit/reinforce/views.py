"""The views ``reinforce`` labels: batches of rendered uint8 views with their stored records.

One DataLoader item is one whole batch (so the batches, and therefore the teacher's arithmetic,
do not depend on the worker count). Batches never cross a shard boundary, so a shard is complete
exactly when its last batch is labelled.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import Recipe, ViewSampler, render_view
from ..errors import SourceError
from ..store import pack


class Task(NamedTuple):
    """One batch: flat views ``[first, stop)`` of shard ``shard`` (flat = local sample x NS + view)."""

    shard: int
    first: int
    stop: int
    start: int  # the shard's first sample id


def batch_tasks(shards: list[tuple[int, int, int]], num_views: int, batch_size: int) -> list[Task]:
    """Batches aligned to shard starts, in shard order."""
    tasks = []
    for k, start, stop in shards:
        total = (stop - start) * num_views
        for a in range(0, total, batch_size):
            tasks.append(Task(k, a, min(a + batch_size, total), start))
    return tasks


class ViewBatches(Dataset):
    """Item t = task t's views rendered (uint8), their packed records, sample/view ids, bad flags."""

    def __init__(self, src: Any, recipe: Recipe, seed: int, num_views: int, image_size: int, tasks: list[Task],
                 skip_bad: bool):
        self.src, self.recipe, self.seed = src, recipe, seed
        self.num_views, self.image_size, self.tasks, self.skip_bad = num_views, image_size, tasks, skip_bad

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, t: int) -> dict[str, Any]:
        task = self.tasks[t]
        cache: dict[int, torch.Tensor | None] = {}

        def load(i: int) -> torch.Tensor | None:
            if i not in cache:
                try:
                    cache[i] = self.src.load_uint8(i)
                except SourceError:
                    if not self.skip_bad:
                        raise
                    cache[i] = None  # --skip-bad: keep the slot, zero record, listed in the manifest
            return cache[i]

        def image_hw(i: int) -> tuple[int, int]:
            img = load(i)
            return (1, 1) if img is None else (int(img.shape[-2]), int(img.shape[-1]))

        sampler = ViewSampler(self.recipe, self.seed, len(self.src), self.num_views, image_hw)
        flat = np.arange(task.first, task.stop)
        samples, views = task.start + flat // self.num_views, flat % self.num_views
        params, images, bad = [], [], []
        blank = torch.zeros(self.src.channels, self.image_size, self.image_size, dtype=torch.uint8)
        for i, v in zip(samples.tolist(), views.tolist()):
            p = sampler(i, v)
            out = render_view(self.recipe, sampler, load, i, v, self.image_size, params=p)
            params.append(p)
            bad.append(out is None)
            images.append(blank if out is None else out)
        return {"task": t, "images": torch.stack(images), "records": pack(self.recipe, params),
                "samples": samples, "views": views, "bad": np.array(bad, dtype=bool)}
