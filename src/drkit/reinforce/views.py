"""The views ``reinforce`` labels: per batch, decoded images and view parameters (in a loader worker),
rendered on the teacher's device in the main process. One loader item is one whole batch (the teacher's
arithmetic does not depend on the worker count), within one shard, each image decoded once."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import Recipe, ViewParams, ViewSampler, partner_of
from ..augment.batch import Parameters, render_batch, stack_images, unstack_images
from ..device import to_device
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
    return [Task(k, a, min(a + batch_size, (stop - start) * num_views), start)
            for k, start, stop in shards for a in range(0, (stop - start) * num_views, batch_size)]


class ViewBatches(Dataset):
    """Item t = task t's decoded images, view parameters and packed records (no pixels yet)."""

    def __init__(self, src: Any, recipe: Recipe, seed: int, num_views: int, tasks: list[Task], skip_bad: bool):
        self.src, self.recipe, self.seed = src, recipe, seed
        self.num_views, self.tasks, self.skip_bad = num_views, tasks, skip_bad

    def __len__(self) -> int:
        return len(self.tasks)

    def _redraw(self, i: int, q: tuple[int, int], params: ViewParams, load: Any) -> tuple[int, int] | None:
        """An undecodable mixing partner moves to the next decodable sample (recorded); none: unmixed."""
        n = len(self.src)  # the first sample after q[0], cyclically, never i
        j = next((j for j in ((q[0] + k) % n for k in range(1, n)) if j != i and load(j) is not None), None)
        if j is None:
            params["mix"]["mode"] = 0
            return None
        params["mix"]["partner"] = j
        return j, q[1]

    def __getitem__(self, t: int) -> dict[str, Any]:
        task = self.tasks[t]
        cache: dict[int, torch.Tensor | None] = {}
        digests: dict[int, int] = {}  # content digests, from the same read as the pixels

        def load(i: int) -> torch.Tensor | None:
            if i not in cache:
                try:
                    cache[i], d = self.src.load_with_digest(i)
                    digests[i] = -1 if d is None else d
                except SourceError as e:
                    if not self.skip_bad:
                        raise SourceError(f"{e} (a damaged image? --skip-bad leaves such images out)") from None
                    cache[i] = None  # --skip-bad: keep the slot, zero record, listed in the manifest
            return cache[i]

        def image_hw(i: int) -> tuple[int, int]:
            img = load(i)
            return (1, 1) if img is None else (int(img.shape[-2]), int(img.shape[-1]))

        sampler = ViewSampler(self.recipe, self.seed, len(self.src), self.num_views, image_hw,
                              window=int(getattr(self.src, "partner_window", 0)))
        flat = np.arange(task.first, task.stop)
        samples, views = task.start + flat // self.num_views, flat % self.num_views
        params = sampler.batch(list(zip(samples.tolist(), views.tolist())))
        partners = [partner_of(p) for p in params]
        for r, (i, q) in enumerate(zip(samples.tolist(), partners)):
            if q is not None and load(i) is not None and load(q[0]) is None:  # --skip-bad: a bad partner
                partners[r] = self._redraw(i, q, params[r], load)
        drawn = iter(sampler.batch([q for q in partners if q is not None]))
        partner_params = [next(drawn) if q is not None else None for q in partners]
        bad = np.array([cache[i] is None or (q is not None and cache[q[0]] is None)
                        for i, q in zip(samples.tolist(), partners)], dtype=bool)
        order = {i: k for k, i in enumerate(cache)}  # every image the batch touched, decoded once
        blank = torch.zeros(self.src.channels, 1, 1, dtype=torch.uint8)
        stack, sizes = stack_images([img if img is not None else blank for img in cache.values()])
        return {"task": t, "images": stack, "sizes": sizes,
                "index": np.array([order[i] for i in samples.tolist()], dtype=np.int64),
                "partner_index": np.array([order[q[0]] if q is not None else -1 for q in partners], dtype=np.int64),
                "params": Parameters(params, partner_params), "records": pack(self.recipe, params),
                "samples": samples, "views": views, "bad": bad,
                "digests": np.array([digests.get(i, -1) for i in samples.tolist()], dtype=np.int64)}


def render_item(recipe: Recipe, item: dict[str, Any], size: int, device: torch.device) -> torch.Tensor:
    """A batch's pixels on ``device`` (uint8 NCHW); views of undecodable images are zero."""
    images = unstack_images(item["images"], item["sizes"], device)
    bad = np.asarray(item["bad"])
    params, partner_params = list(item["params"].own), list(item["params"].partners)
    index, partner_index = np.asarray(item["index"]).tolist(), np.asarray(item["partner_index"]).tolist()
    if bad.any():  # render something cheap for the zero records: the blank image, unmixed
        blank = len(images)
        images.append(torch.zeros_like(images[0][:, :1, :1]))
        first = recipe.ops[0].name
        for r in np.flatnonzero(bad):
            box = {**params[r][first], "top": 0, "left": 0, "height": 1, "width": 1}
            params[r] = {**params[r], first: box, **({"mix": {**params[r]["mix"], "mode": 0}} if recipe.mixes else {})}
            index[r] = blank
    out = render_batch(recipe, images, index, params, size, partner_index, partner_params)
    if bad.any():
        out[to_device(np.flatnonzero(bad), out.device)] = 0
    return out
