"""The one way training pixels are made: loader workers hand over whole raw batches — decoded
images, view parameters, targets (:meth:`~drkit.train.data.ReinforcedDataset.raw_batch`, collated
by :func:`collate_raw`) — and :func:`render_pixels` turns a batch into pixels with the batched
renderer on the device the student trains on (CPU or GPU). The per-view ``Recipe.render`` is only
the test oracle that the batched renderer equals on the CPU, bit for bit.

For a user's own loop::

    ds = ReinforcedDataset(src, store)
    loader = DataLoader(ds.raw(), batch_size=256, shuffle=True, num_workers=8, collate_fn=collate_raw)
    for batch in loader:
        images, targets = ds.render(batch, device="cuda")   # uint8 NCHW and dense targets, on the GPU
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
    """DataLoader item ``b`` = raw batch ``b``, built and collated whole in one worker: no
    per-sample collate, and the batch composition never depends on the number of workers."""

    def __init__(self, ds: TrainViews, batches: list[np.ndarray]):
        self.ds, self.batches = ds, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> dict[str, Any]:
        return collate_raw(self.ds.raw_batch(self.batches[b]))


def collate_raw(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of raw items: every image once in one padded stack, per-view indices, parameters
    (``None`` for a plain view) and targets (sparse top-k for DR, dense for ERM/KD)."""
    order: dict[int, int] = {}
    images: list[torch.Tensor] = []
    for it in items:
        for j, img in it["images"].items():
            if j not in order:
                order[j] = len(images)
                images.append(img)
    stack, sizes = stack_images(images)
    index, partner_index, partner_ids, samples, params, partner_params, labels = [], [], [], [], [], [], []
    for it in items:
        for p, q in zip(it["params"], it["partners"]):
            index.append(order[it["sample"]])
            partner_index.append(order[q[0]] if q is not None else -1)
            partner_ids.append(q[0] if q is not None else -1)
            samples.append(it["sample"])
            params.append(p)
            partner_params.append(q[1] if q is not None else None)
            labels.append(it["label"])
    out = {"images": stack, "sizes": torch.as_tensor(sizes), "index": torch.as_tensor(index),
           "partner_index": torch.as_tensor(partner_index), "params": Parameters(params, partner_params),
           "label": torch.as_tensor(labels, dtype=torch.int64),
           "sample": torch.as_tensor(samples, dtype=torch.int64), "partner": torch.as_tensor(partner_ids)}
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
    plain = [r for r, p in enumerate(params) if p is None]
    if not plain:
        return render_batch(recipe, images, index, params, size, batch["partner_index"].tolist(),
                            batch["params"].partners)
    views = [r for r, p in enumerate(params) if p is not None]
    out = torch.empty(len(params), images[0].shape[0], size, size, dtype=torch.uint8, device=device)
    out[plain] = torch.stack([eval_transform(images[index[r]], size) for r in plain])
    if views:
        pidx = batch["partner_index"].tolist()
        out[views] = render_batch(recipe, images, [index[r] for r in views], [params[r] for r in views], size,
                                  [pidx[r] for r in views], [batch["params"].partners[r] for r in views])
    return out
