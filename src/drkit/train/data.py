"""Training data: stored views (DR) and fresh augmented views (ERM/KD); which view a sample shows in an
epoch is :mod:`~drkit.train.order`'s. Why raw items (decoded uint8 images, view parameters): they are
cheap to move through loader workers and pinned memory, and the batched renderer makes pixels on the device.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import Recipe, ViewParams, ViewSampler, eval_transform, get_recipe, partner_of, partner_params
from ..errors import DrkitError, StoreError
from ..store import densify
from .order import epoch_views_many, plain_mask

if TYPE_CHECKING:
    from ..sources import Source
    from ..store import Store

#: ERM/KD draw view ``epoch`` of an unbounded pool; mixing partners pick among this many views.
ERM_VIEWS = 1 << 16

Item = dict[str, torch.Tensor]


def one_hot(labels: Sequence[int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.int64), num_classes).float()


class SharedEpoch:
    """The epoch as one int64 in shared memory, read on every item. Why: DataLoader workers get the
    dataset once and persistent ones keep it for the run, so a plain int set later in the main
    process never reaches them; shared storage is inherited by a fork and sent as the same memory to
    spawned workers by torch's pickler (plain ``pickle``/``deepcopy`` give an independent copy)."""

    def __init__(self, epoch: int = 0):
        self.value = torch.tensor([int(epoch)], dtype=torch.int64).share_memory_()

    def get(self) -> int:
        return int(self.value.item())

    def set(self, epoch: int) -> None:
        self.value.fill_(int(epoch))


# --- what both modes share ---
class TrainViews(Dataset):
    """What both training modes share: a loader worker's item is *raw* — decoded images, view
    parameters, targets (:meth:`raw_batch`) — and pixels are made by the one batched renderer
    (:meth:`render`: on the training device, in the loop). ``ds[j]`` renders item ``j`` alone, for
    library loops that want ``(image, target)`` pairs."""

    image_size: int
    as_uint8: bool
    recipe: Recipe
    shared_epoch: SharedEpoch
    teacher_size: int | None = None

    @property
    def epoch(self) -> int:
        return self.shared_epoch.get()

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.shared_epoch.set(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Every worker, persistent ones included, renders epoch ``epoch`` from its next item on (call
        it before iterating the loader each epoch)."""
        self.shared_epoch.set(epoch)

    def raw_batch(self, positions: Sequence[int] | np.ndarray) -> list[Item]:
        raise NotImplementedError

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def raw(self) -> RawItems:
        """Raw items one position at a time, for a user's ``DataLoader(ds.raw(), collate_fn=collate_raw)``."""
        return RawItems(self)

    def render(self, batch: dict[str, Any], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """A collated raw batch (:func:`~drkit.train.replay.collate_raw`) as uint8 ``[B, C, S, S]``
        views and dense targets ``[B, classes]``, both on ``device``."""
        from .replay import render_pixels

        device = torch.device(device)
        pixels = render_pixels(batch, self.recipe, self.image_size, device)
        return pixels, self.targets(batch).to(device, non_blocking=True)

    def __getitem__(self, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        from .replay import collate_raw

        images, target = self.render(collate_raw(self.raw_batch([pos])))
        images = images if self.as_uint8 else images.to(torch.float32).div_(255)
        return (images[0], target[0]) if len(images) == 1 else (images, target)


class RawItems(Dataset):
    """``ds.raw()``: item ``j`` = the raw item of position ``j`` (no pixels rendered)."""

    def __init__(self, ds: TrainViews):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, pos: int) -> Item:
        return self.ds.raw_batch([pos])[0]


# --- DR: stored views ---
class ReinforcedDataset(TrainViews):
    """A reinforced store as a dataset: ``ds[j] -> (image, dense soft target)``; position ``j`` indexes the
    store's samples minus the skipped ones, and each epoch (``set_epoch``) replays one stored view per
    image (:func:`~drkit.train.order.epoch_views`); loops for timm, Lightning, DDP: docs/loops.md.
    ``views_per_image = k > 1``: ``k`` distinct stored views of one decoded image (``[k, C, H, W]``
    images, ``[k, C]`` targets; flatten the first two dims of a batch). ``plain_fraction = p``: a
    deterministic share ``p`` of plain images (eval view) with one-hot targets."""

    def __init__(self, src: Source, store: Store, image_size: int | None = None, epoch: int = 0,
                 seed: int | None = None, views_per_image: int = 1, plain_fraction: float = 0.0,
                 as_uint8: bool = False):
        #: the source's images, each checked against the content digest the store recorded
        self.load = store.image_loader(src)
        if not 1 <= views_per_image <= store.num_views:
            raise StoreError(f"views_per_image must be in 1..{store.num_views} (the store's views), "
                             f"got {views_per_image}")
        if not 0.0 <= plain_fraction <= 1.0:
            raise DrkitError(f"plain_fraction must be in [0, 1], got {plain_fraction}")
        self.src, self.store, self.recipe = src, store, store.recipe
        self.image_size = int(image_size or store.image_size)
        self.shared_epoch = SharedEpoch(epoch)
        self.seed = int(store.seed if seed is None else seed)
        self.views_per_image = int(views_per_image)
        self.plain_fraction = float(plain_fraction)
        self.as_uint8 = as_uint8
        self.sample_ids = store.kept_samples()
        self.labels = np.asarray(src.labels, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.sample_ids.shape[0])

    def views(self, pos: int) -> list[int]:
        """Stored view indices of position ``pos`` this epoch (-1 = plain image)."""
        return self._views(self.sample_ids[[pos]], self.epoch)[0].tolist()

    def _views(self, ids: np.ndarray, epoch: int) -> np.ndarray:
        """``[n, k]`` view indices of samples ``ids`` in ``epoch``, -1 where a view is plain."""
        views = epoch_views_many(self.seed, ids, epoch, self.store.num_views, self.views_per_image)
        if self.plain_fraction > 0:
            plain = np.stack([plain_mask(self.seed, int(i), epoch, self.views_per_image, self.plain_fraction)
                              for i in ids.tolist()])
            views[plain] = -1
        return views

    def raw_batch(self, positions: Sequence[int] | np.ndarray) -> list[Item]:
        """The raw items of many positions: their views chosen, records read and decoded in one
        pass each (a DR batch's loader work in a few array operations, as ERM's sampling is)."""
        k = self.views_per_image
        ids = self.sample_ids[np.asarray(positions, dtype=np.int64)]
        views = self._views(ids, self.epoch)  # one read of the shared epoch per batch
        stored = views >= 0
        recs = iter(self.store.records(np.repeat(ids, k)[stored.reshape(-1)], views[stored]))
        return [self._item(i, [next(recs) if v >= 0 else None for v in row])
                for i, row in zip(ids.tolist(), views.tolist())]

    def _item(self, i: int, recs: list[dict[str, Any] | None]) -> Item:
        """Sample ``i``'s raw item: decoded image(s), parameters (``None``: a plain view), partners, top-k."""
        images = {i: self.load(i)}
        partners: list[Any] = []
        for rec in recs:
            q = partner_of(rec["params"]) if rec is not None else None
            if q is not None and q[0] not in images:
                images[q[0]] = self.load(q[0])
            partners.append((q[0], partner_params(rec["params"], self.store.view_params)) if q is not None else None)
        k, c = self.store.topk, self.store.num_classes  # a plain view's target: the label at probability 1
        hard = ((int(self.labels[i]) + np.arange(k, dtype=np.int64)) % c, np.eye(1, k, dtype=np.float32)[0])
        return {"sample": i, "label": int(self.labels[i]), "images": images,
                "params": [r["params"] if r is not None else None for r in recs], "partners": partners,
                "topk_ids": np.stack([r["topk_ids"] if r is not None else hard[0] for r in recs]),
                "topk_probs": np.stack([r["topk_probs"] if r is not None else hard[1] for r in recs])}

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """Sparse top-k -> dense "smooth" targets (``store.densify``) for the whole batch."""
        return densify(batch["topk_ids"], batch["topk_probs"], self.store.num_classes, smooth=True)


# --- ERM / KD: fresh views of the recipe ---
class AugmentedDataset(TrainViews):
    """ERM/online-KD data: epoch ``e`` draws view ``e`` of each sample from the recipe (same
    ``(seed, sample, view)`` randomness as a store), hard (λ-mixed) targets. ``teacher_size``
    also renders each view at the KD teacher's input size when it differs from the student's."""

    def __init__(self, src: Source, recipe: str | Recipe, image_size: int, epoch: int = 0, seed: int = 0,
                 teacher_size: int | None = None, as_uint8: bool = False):
        self.src = src
        self.recipe = get_recipe(recipe)
        self.image_size = int(image_size)
        self.teacher_size = int(teacher_size) if teacher_size and teacher_size != image_size else None
        self.shared_epoch = SharedEpoch(epoch)
        self.seed, self.as_uint8 = int(seed), as_uint8
        self.labels = np.asarray(src.labels, dtype=np.int64)
        self.num_classes = len(src.classes)
        self.sampler = ViewSampler(self.recipe, self.seed, len(src), ERM_VIEWS, src.image_size)

    def __len__(self) -> int:
        return len(self.src)

    def view(self) -> int:
        """The view every sample draws this epoch (view ``epoch`` of an unbounded pool)."""
        return self.epoch % ERM_VIEWS

    def raw_batch(self, positions: Sequence[int] | np.ndarray, view: int | None = None,
                  params: Sequence[ViewParams] | None = None) -> list[Item]:
        """The raw items of many positions, their views (view ``view``, default this epoch's) drawn
        for the whole batch at once; ``params`` replaces the drawn parameters (tests compare DR and
        ERM on the same views)."""
        view = self.view() if view is None else int(view)
        positions = [int(p) for p in positions]
        drawn = self.sampler.batch([(p, view) for p in positions]) if params is None else list(params)
        partners = [q for q in dict.fromkeys(partner_of(p) for p in drawn) if q is not None]
        partner_views = dict(zip(partners, self.sampler.batch(partners)))  # drawn together, once each
        return [self._item(i, p, partner_views) for i, p in zip(positions, drawn)]

    def _item(self, i: int, p: ViewParams, partner_views: dict[tuple[int, int], ViewParams]) -> Item:
        q = partner_of(p)
        images = {i: self.src.load_uint8(i)}
        label = int(self.labels[i])
        target = one_hot([label], self.num_classes)[0]  # hard, or λ-weighted two-hot when the view mixes
        if q is not None:
            images.setdefault(q[0], self.src.load_uint8(q[0]))
            lam = self.recipe.mix_weight(p, self.image_size)
            target = target * lam + one_hot([int(self.labels[q[0]])], self.num_classes)[0] * (1.0 - lam)
        return {"sample": i, "label": label, "images": images, "params": [p],
                "partners": [(q[0], partner_params(p, lambda s, v: partner_views[(s, v)])) if q is not None else None],
                "target": target[None].numpy()}

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["target"]


# --- validation batches ---
class PlainBatches(Dataset):
    """Validation batches (the plain eval transform, uint8), built whole in a loader worker."""

    def __init__(self, src: Source, size: int):
        self.src, self.size = src, int(size)

    def __getitem__(self, ids_array: np.ndarray) -> Item:
        ids = ids_array.tolist()
        return {"image": torch.stack([eval_transform(self.src.load_uint8(i), self.size) for i in ids]),
                "label": torch.tensor([int(self.src.labels[i]) for i in ids], dtype=torch.int64)}
