"""The one way training pixels are made: loader workers hand over whole raw batches (decoded images,
view parameters, targets; collated by :func:`collate_raw`) and :func:`render_pixels` makes the pixels
with the batched renderer on the student's device (the per-view ``Recipe.render`` is its test oracle,
equal bit for bit on the CPU). A user's loop: ``DataLoader(ds.raw(), collate_fn=collate_raw)``, then
``images, targets = ds.render(batch, device="cuda")``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import eval_transform
from ..augment.batch import Parameters, render_batch, stack_images, unstack_images
from ..device import on_side_stream

if TYPE_CHECKING:
    from ..augment import Recipe
    from .data import TrainViews


class RawBatches(Dataset):
    """DataLoader item ``positions`` (an array from the loop's sampler) = that raw batch, built and collated
    whole in one worker: no per-sample collate, the batch composition never depends on the number of workers,
    and persistent workers serve every epoch's batches."""

    def __init__(self, ds: TrainViews):
        self.ds = ds

    def __getitem__(self, positions: np.ndarray) -> dict[str, Any]:
        return collate_raw(self.ds.raw_batch(positions))


def collate_raw(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of raw items: every image once in one padded stack, per-view indices, parameters
    (``None`` for a plain view) and targets (sparse top-k for DR, dense for ERM/KD)."""
    unique: dict[int, torch.Tensor] = {}
    for it in items:
        for j, img in it["images"].items():
            unique.setdefault(j, img)
    order = {j: k for k, j in enumerate(unique)}
    stack, sizes = stack_images(list(unique.values()))
    rows = [(it, p, q) for it in items for p, q in zip(it["params"], it["partners"])]  # one per view
    partner_ids = [q[0] if q is not None else -1 for _, _, q in rows]
    out = {"images": stack, "sizes": torch.as_tensor(sizes),
           "index": torch.as_tensor([order[it["sample"]] for it, _, _ in rows]),
           "partner_index": torch.as_tensor([order[j] if j >= 0 else -1 for j in partner_ids]),
           "params": Parameters([p for _, p, _ in rows], [q[1] if q is not None else None for _, _, q in rows]),
           "label": torch.as_tensor([it["label"] for it, _, _ in rows], dtype=torch.int64),
           "sample": torch.as_tensor([it["sample"] for it, _, _ in rows], dtype=torch.int64),
           "partner": torch.as_tensor(partner_ids)}
    for key in ("topk_ids", "topk_probs", "target"):
        if key in items[0]:
            out[key] = torch.from_numpy(np.concatenate([it[key] for it in items]))
    return out


def render_pixels(batch: dict[str, Any], recipe: Recipe, size: int, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, C, size, size]`` on ``device``: the batch's views through the batched renderer
    (plain views, ``None`` parameters, through the eval transform). On CUDA it runs on a side
    stream, so that it overlaps the previous training step instead of waiting for it."""
    return on_side_stream(device, batch["images"], _render_on, batch, recipe, size, device)


def _render_on(batch: dict[str, Any], recipe: Recipe, size: int, device: torch.device) -> torch.Tensor:
    images = unstack_images(batch["images"], batch["sizes"], device)
    params, index = batch["params"].own, batch["index"].tolist()
    pidx, partners = batch["partner_index"].tolist(), batch["params"].partners
    plain = [r for r, p in enumerate(params) if p is None]
    if not plain:
        return render_batch(recipe, images, index, params, size, pidx, partners)
    views = [r for r, p in enumerate(params) if p is not None]
    out = torch.empty(len(params), images[0].shape[0], size, size, dtype=torch.uint8, device=device)
    out[plain] = torch.stack([eval_transform(images[index[r]], size) for r in plain])
    if views:
        out[views] = render_batch(recipe, images, [index[r] for r in views], [params[r] for r in views], size,
                                  [pidx[r] for r in views], [partners[r] for r in views])
    return out
