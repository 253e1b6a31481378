"""Rendering on the training device: loader workers hand over decoded images and view parameters
(stored ones for DR, freshly sampled ones for ERM/KD), and :func:`render` turns a whole batch into
pixels with the batched renderer on the device the student trains on. On the CPU the result is
byte-identical to the per-view path in the workers.

For a user's own loop::

    ds = ReinforcedDataset(src, store)
    loader = DataLoader(ds.raw(), batch_size=256, shuffle=True, num_workers=8, collate_fn=collate_raw)
    for batch in loader:
        images, targets = render(batch, store, device="cuda")   # uint8 NCHW and dense targets, on the GPU
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import partner_of
from ..augment import partner_params as partner_view_params
from ..augment.batch import Parameters, render_batch, stack_images, unstack_images
from ..device import on_side_stream
from ..errors import DrkitError
from ..store import densify
from .data import epoch_views_many

if TYPE_CHECKING:
    from .data import ReinforcedDataset


class RawViews(Dataset):
    """``ReinforcedDataset`` as decoded images + stored parameters (no pixels rendered)."""

    def __init__(self, ds: ReinforcedDataset):
        if ds.plain_fraction > 0:
            raise DrkitError("device replay renders stored views only: use plain_fraction=0")
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, pos: int) -> dict[str, Any]:
        i = int(self.ds.sample_ids[pos])
        return self._item(i, self.ds.store.records([i] * self.ds.views_per_image, self.ds.views(pos)))

    def batch(self, positions: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """The items of many positions: their views chosen, records read and decoded in one pass
        each (a DR batch's loader work in a few array operations, as ERM's sampling is)."""
        ds, k = self.ds, self.ds.views_per_image
        ids = ds.sample_ids[np.asarray(positions, dtype=np.int64)]
        views = epoch_views_many(ds.seed, ids, ds.epoch, ds.store.num_views, k)
        recs = ds.store.records(np.repeat(ids, k), views.reshape(-1))
        return [self._item(i, recs[r * k:(r + 1) * k]) for r, i in enumerate(ids.tolist())]

    def _item(self, i: int, recs: list[dict[str, Any]]) -> dict[str, Any]:
        """Sample ``i``'s item from its views' records: decoded image(s), parameters, partners, top-k."""
        ds = self.ds
        images = {i: ds.load(i)}
        partners = []
        for rec in recs:
            q = partner_of(rec["params"])
            if q is not None and q[0] not in images:
                images[q[0]] = ds.load(q[0])
            partners.append((q[0], partner_view_params(rec["params"], ds.store.view_params)) if q is not None else None)
        return {"sample": i, "label": int(ds.labels[i]), "images": images, "params": [r["params"] for r in recs],
                "partners": partners, "topk_ids": np.stack([r["topk_ids"] for r in recs]),
                "topk_probs": np.stack([r["topk_probs"] for r in recs])}


class RawAugmented(Dataset):
    """``AugmentedDataset`` (ERM/KD) as decoded images + this epoch's sampled parameters and
    hard (λ-mixed) targets (no pixels rendered)."""

    def __init__(self, ds: Any):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def batch(self, positions: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """The items of many positions, their views drawn for the whole batch at once."""
        self.ds.prefetch(positions)
        return [self[int(p)] for p in positions]

    def __getitem__(self, i: int) -> dict[str, Any]:
        from .data import hard_target

        ds, view = self.ds, self.ds.view()
        p = ds.views(i, view)
        q = partner_of(p)
        images = {i: ds.src.load_uint8(i)}
        if q is not None:
            images.setdefault(q[0], ds.src.load_uint8(q[0]))
        label = int(ds.labels[i])
        target = hard_target(ds.recipe, p, label, int(ds.labels[q[0]]) if q is not None else None, ds.num_classes,
                             ds.image_size)
        return {"sample": i, "label": label, "images": images, "params": [p],
                "partners": [(q[0], ds.views(*q)) if q is not None else None], "target": target[None].numpy()}


class RawBatches(Dataset):
    """DataLoader item ``b`` = batch ``b`` of :class:`RawViews`, collated in the worker (the
    device-render twin of :class:`~drkit.train.data.BatchDataset`)."""

    def __init__(self, raw: RawViews, batches: list[np.ndarray]):
        self.raw, self.batches = raw, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> dict[str, Any]:
        return collate_raw(self.raw.batch(self.batches[b]))


def collate_raw(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of :class:`RawViews` / :class:`RawAugmented` items: every image once in one padded
    stack, per-view indices, parameters and targets (sparse top-k for DR, dense for ERM/KD)."""
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


def render(batch: dict[str, Any], store: Any, device: torch.device | str = "cpu",
           image_size: int | None = None, teacher_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[B, C, S, S]`` views and dense targets ``[B, classes]``, both on ``device``.

    ``store`` is the :class:`~drkit.store.Store` a DR batch replays (targets: its densified
    top-k), or for ERM/KD batches the recipe (targets: the batch's hard λ-mixed ones)."""
    from ..augment import Recipe

    device = torch.device(device)
    recipe = store if isinstance(store, Recipe) else store.recipe
    size = image_size or store.image_size
    pixels = _pixels(batch, recipe, size, device)
    if "topk_ids" in batch:
        targets = densify(batch["topk_ids"], batch["topk_probs"], store.num_classes, smooth=True)
    else:
        targets = batch["target"]
    return pixels, targets.to(device, non_blocking=True)


def render_teacher_view(batch: dict[str, Any], recipe: Any, size: int, device: torch.device | str) -> torch.Tensor:
    """The same views at a KD teacher's input size."""
    return _pixels(batch, recipe, size, torch.device(device))


def _pixels(batch: dict[str, Any], recipe: Any, size: int, device: torch.device) -> torch.Tensor:
    """The batch rendered on ``device``; on CUDA on a side stream, so that it overlaps the
    previous training step instead of waiting for it."""
    return on_side_stream(device, batch["images"], _render_on, batch, recipe, size, device)


def _render_on(batch: dict[str, Any], recipe: Any, size: int, device: torch.device) -> torch.Tensor:
    images = unstack_images(batch["images"], batch["sizes"], device)
    return render_batch(recipe, images, batch["index"].tolist(), batch["params"].own, size,
                        batch["partner_index"].tolist(), batch["params"].partners)
