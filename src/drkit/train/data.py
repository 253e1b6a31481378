"""Training data: stored views (DR), fresh augmented views (ERM/KD), and the epoch's order.

Every random choice is a pure function of ``(seed, epoch, sample)`` — ``numpy.random.default_rng``
seeded with those words for the epoch order and ERM views, a SplitMix64 hash of them for the
per-item DR choices (cheaper, same role) — never a global RNG, so a worker, a rank or a resumed
run makes the same choice for the same sample and epoch.

Items are uint8 (cheap to move through DataLoader workers and pinned memory) and become float
[0, 1] on the device; the public :class:`ReinforcedDataset` gives float by default for library use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import Recipe, ViewParams, ViewSampler, eval_transform, get_recipe, partner_of, render_view
from ..errors import DrkitError, StoreError
from ..hashing import GOLDEN, MASK64, mix64, mix64_np
from ..store import densify

if TYPE_CHECKING:
    from ..sources import Source
    from ..store import Store

# Stream tags keep the order / view / plain streams apart (the order's four-word seed sequence
# also never equals a recipe's three-word [seed, sample, view]).
TAG_ORDER, TAG_VIEW, TAG_PLAIN = 0x0D5E, 0x71E3, 0x9A17
#: ERM/KD draw view ``epoch`` of an unbounded pool; mixing partners pick among this many views.
ERM_VIEWS = 1 << 16

Item = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# deterministic choices
# ----------------------------------------------------------------------------------------------
_SMALL_NS = 24  # below this, plain Python integers beat numpy's per-call overhead


def view_permutation(seed: int, sample_id: int, cycle: int, num_views: int) -> np.ndarray:
    """A uniform random permutation of the NS views for one (seed, sample, cycle): the views
    sorted by NS hashed keys. ~10 µs at NS = 10, where a ``default_rng`` per DR item would cost
    ~30 µs — a visible share of a small image's replay (design.md guarantee 4)."""
    h = _hash_words(seed, TAG_VIEW, sample_id, cycle)
    if num_views <= _SMALL_NS:
        keys = [mix64((h + v * GOLDEN) & MASK64) for v in range(num_views)]
        return np.array(sorted(range(num_views), key=keys.__getitem__), dtype=np.int64)
    arr = np.uint64(h) + np.arange(num_views, dtype=np.uint64) * np.uint64(GOLDEN)
    return np.argsort(mix64_np(arr), kind="stable")


def view_at(seed: int, sample_id: int, t: int, num_views: int) -> int:
    """The ``t``-th stored view a sample visits: a fresh permutation of the NS views per cycle,
    so no view repeats before all NS have been used."""
    cycle, pos = divmod(int(t), int(num_views))
    return int(view_permutation(seed, sample_id, cycle, num_views)[pos])


def epoch_views(seed: int, sample_id: int, epoch: int, num_views: int, per_image: int = 1) -> list[int]:
    """Views of one sample in ``epoch``: positions ``epoch*k .. epoch*k+k-1`` of its view sequence
    (``k = 1``: ``perm_{seed,i,epoch//NS}[epoch % NS]``)."""
    first = int(epoch) * per_image
    return [view_at(seed, sample_id, first + j, num_views) for j in range(per_image)]


def epoch_views_many(seed: int, sample_ids: np.ndarray, epoch: int, num_views: int, per_image: int = 1) -> np.ndarray:
    """:func:`epoch_views` of many samples at once, ``[n, per_image]``: the same SplitMix64 keys in
    uint64 arrays and a stable argsort per row (the per-sample function is the test oracle)."""
    ids = np.asarray(sample_ids, dtype=np.int64).astype(np.uint64)
    out = np.empty((ids.size, per_image), dtype=np.int64)
    steps = np.arange(num_views, dtype=np.uint64) * np.uint64(GOLDEN)
    for j in range(per_image):
        cycle, pos = divmod(int(epoch) * per_image + j, int(num_views))
        h = np.zeros(ids.size, dtype=np.uint64)
        for w in (np.uint64(int(seed) & MASK64), np.uint64(TAG_VIEW), ids, np.uint64(cycle)):
            h = mix64_np(h ^ w)
        out[:, j] = np.argsort(mix64_np(h[:, None] + steps), axis=1, kind="stable")[:, pos]
    return out


def _hash_words(*words: int) -> int:
    h = 0
    for w in words:
        h = mix64(h ^ (int(w) & MASK64))
    return h


def plain_mask(seed: int, sample_id: int, epoch: int, per_image: int, fraction: float) -> np.ndarray:
    """Which of the sample's views this epoch are plain images (hard labels) instead of stored
    views: uniform draws hashed from (seed, sample, epoch), compared with ``fraction``."""
    if fraction <= 0:
        return np.zeros(per_image, dtype=bool)
    h = _hash_words(seed, TAG_PLAIN, sample_id, epoch)
    return np.array([mix64((h + j * GOLDEN) & MASK64) / 2.0**64 < fraction for j in range(per_image)])


def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's shuffled order of dataset positions (identical on every rank)."""
    return np.random.default_rng([int(seed), TAG_ORDER, int(epoch), 0]).permutation(num_items)


def epoch_batches(num_items: int, seed: int, epoch: int, batch_items: int, rank: int = 0, world: int = 1,
                  drop_last: bool = True) -> list[np.ndarray]:
    """This rank's batches: a strided slice of the epoch order (padded by wrapping so every rank
    has the same number of steps), cut into ``batch_items``; a short last batch is dropped when
    at least one full batch exists."""
    order = epoch_order(num_items, seed, epoch)
    if world > 1 and len(order) % world:
        order = np.concatenate([order, order[: world - len(order) % world]])
    mine = order[rank::world]
    cuts = list(range(0, len(mine), batch_items))
    batches = [mine[a:a + batch_items] for a in cuts]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_items:
        batches.pop()
    return batches


def one_hot(labels: Sequence[int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.int64), num_classes).float()


def hard_target(recipe: Recipe, params: ViewParams, label: int, partner_label: int | None, num_classes: int,
                size: int) -> torch.Tensor:
    """ERM target of a view: one-hot, or λ-weighted two-hot when the view mixes (λ at ``size``)."""
    out = one_hot([label], num_classes)[0]
    if partner_of(params) is None or partner_label is None:
        return out
    lam = recipe.mix_weight(params, size)
    return out * lam + one_hot([partner_label], num_classes)[0] * (1.0 - lam)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).div_(255)


class SharedEpoch:
    """The epoch as one int64 in shared memory, read on every item.

    DataLoader workers get the dataset once — forked, or unpickled under ``spawn``/``forkserver`` —
    and persistent workers (timm's ``create_loader`` default) keep it for the whole run: a plain
    int set in the main process later never reaches them, and they would replay the same view
    every epoch. The tensor's storage is mapped shared, so a fork inherits the mapping and
    torch's multiprocessing pickler sends the same memory to spawned workers. Plain ``pickle`` or
    ``copy.deepcopy`` give an independent copy (a copy is not the original).
    """

    def __init__(self, epoch: int = 0):
        self.value = torch.tensor([int(epoch)], dtype=torch.int64).share_memory_()

    def get(self) -> int:
        return int(self.value.item())

    def set(self, epoch: int) -> None:
        self.value.fill_(int(epoch))


class _EpochMixin:
    """``epoch`` as a property over a :class:`SharedEpoch`, and ``set_epoch`` (call it before
    iterating the loader each epoch)."""

    shared_epoch: SharedEpoch

    @property
    def epoch(self) -> int:
        return self.shared_epoch.get()

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.shared_epoch.set(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Every worker, persistent ones included, renders epoch ``epoch`` from its next item on."""
        self.shared_epoch.set(epoch)


# ----------------------------------------------------------------------------------------------
# DR: stored views
# ----------------------------------------------------------------------------------------------
class ReinforcedDataset(_EpochMixin, Dataset):
    """A reinforced store as a dataset: ``ds[j] -> (image, dense soft target)``.

    Position ``j`` indexes the store's samples minus those the manifest lists as skipped. Each
    epoch (``set_epoch``, before iterating the loader; the epoch is shared with every DataLoader
    worker, persistent ones included) replays one stored view per image, chosen by
    :func:`epoch_views`. Recipes for timm, Lightning and DDP loops: docs/loops.md.
    ``views_per_image = k > 1`` decodes an image once and returns ``k`` distinct stored views of it
    (``[k, C, H, W]`` images, ``[k, C]`` targets): a DataLoader batch of ``B`` items then holds
    ``B * k`` views — flatten the first two dims. ``plain_fraction = p`` returns a deterministic
    share ``p`` of views as the plain image (eval view) with a hard one-hot target.
    """

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
        self.src, self.store = src, store
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
        i, epoch = int(self.sample_ids[pos]), self.epoch  # one read of the shared epoch per item
        views = epoch_views(self.seed, i, epoch, self.store.num_views, self.views_per_image)
        plain = plain_mask(self.seed, i, epoch, self.views_per_image, self.plain_fraction)
        return [-1 if p else v for v, p in zip(views, plain)]

    def _hard(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """A plain view's target in top-k form: the label with probability 1 (densifies to one-hot)."""
        k, c = self.store.topk, self.store.num_classes
        ids = (label + np.arange(k, dtype=np.int64)) % c
        probs = np.zeros(k, dtype=np.float32)
        probs[0] = 1.0
        return ids, probs

    def prefetch(self, positions: Sequence[int]) -> None:
        """Nothing to draw: a store's views are read back (the loaders call this for either dataset)."""

    def item(self, pos: int) -> Item:
        """uint8 images ``[k, C, S, S]``, int64 labels ``[k]`` and sparse targets ``topk_ids`` /
        ``topk_probs`` ``[k, K]`` (densified per batch by :meth:`finish`: one call, not B)."""
        i = int(self.sample_ids[pos])
        label = int(self.labels[i])
        img = self.load(i)
        images, ids, probs = [], [], []
        for v in self.views(pos):
            if v < 0:
                images.append(eval_transform(img, self.image_size))
                hard = self._hard(label)
                ids.append(hard[0])
                probs.append(hard[1])
                continue
            rec = self.store.record(i, v)
            images.append(self.store.render_uint8(self.src, i, v, self.image_size, record=rec, image=img))
            ids.append(rec["topk_ids"])
            probs.append(rec["topk_probs"])
        k = len(images)
        return {"image": torch.stack(images), "label": torch.full((k,), label, dtype=torch.int64),
                "topk_ids": torch.from_numpy(np.stack(ids)), "topk_probs": torch.from_numpy(np.stack(probs))}

    def finish(self, batch: Item) -> Item:
        """Sparse top-k -> dense "smooth" targets (``store.densify``) for a whole batch."""
        out = dict(batch)
        out["target"] = densify(out.pop("topk_ids"), out.pop("topk_probs"), self.store.num_classes, smooth=True)
        return out

    def raw(self) -> Any:
        """This dataset as decoded images + stored parameters, to render whole batches on the
        training device (:mod:`drkit.train.replay`: ``collate_raw`` and ``render``)."""
        from .replay import RawViews

        return RawViews(self)

    def __getitem__(self, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        it = self.finish(self.item(pos))
        images = it["image"] if self.as_uint8 else _to_float(it["image"])
        if self.views_per_image == 1:
            return images[0], it["target"][0]
        return images, it["target"]


# ----------------------------------------------------------------------------------------------
# ERM / KD: fresh views of the recipe
# ----------------------------------------------------------------------------------------------
class AugmentedDataset(_EpochMixin, Dataset):
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
        self.views = ViewSampler(self.recipe, self.seed, len(src), ERM_VIEWS, src.image_size)

    def __len__(self) -> int:
        return len(self.src)

    def view(self) -> int:
        """The view every sample draws this epoch (view ``epoch`` of an unbounded pool)."""
        return self.epoch % ERM_VIEWS

    def render(self, i: int, view: int, params: ViewParams | None = None,
               img: torch.Tensor | None = None) -> Item:
        """Render a view (student size, and teacher size if needed) with its hard target."""
        params = self.views(i, view) if params is None else params
        img = self.src.load_uint8(i) if img is None else img
        label = int(self.labels[i])
        partner = partner_of(params)
        partner_label = int(self.labels[partner[0]]) if partner is not None else None

        def at(size: int) -> torch.Tensor:
            return render_view(self.recipe, self.views, self.src.load_uint8, i, view, size, params=params, image=img)

        out: Item = {"image": at(self.image_size)[None],
                     "target": hard_target(self.recipe, params, label, partner_label, self.num_classes,
                                           self.image_size)[None],
                     "label": torch.tensor([label], dtype=torch.int64)}
        if self.teacher_size is not None:
            out["teacher_image"] = at(self.teacher_size)[None]
        # which images a KD teacher sees: out-of-fold members are routed by them
        out["index"] = torch.tensor([i], dtype=torch.int64)
        out["partner"] = torch.tensor([partner[0] if partner is not None else -1])
        return out

    def item(self, pos: int) -> Item:
        return self.render(pos, self.view())

    def prefetch(self, positions: Sequence[int]) -> None:
        """Draw a batch's views (and partners) at once before :meth:`item` renders them one by one."""
        view = self.view()
        self.views.prefetch([(int(p), view) for p in positions])

    def raw(self) -> Any:
        """Decoded images + sampled parameters, to render whole batches on the training device
        (:mod:`drkit.train.replay`)."""
        from .replay import RawAugmented

        return RawAugmented(self)

    def finish(self, batch: Item) -> Item:
        return batch

    def __getitem__(self, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        it = self.item(pos)
        return (it["image"][0] if self.as_uint8 else _to_float(it["image"][0])), it["target"][0]


# ----------------------------------------------------------------------------------------------
# batches through a DataLoader
# ----------------------------------------------------------------------------------------------
class BatchDataset(Dataset):
    """DataLoader item ``b`` = the whole batch ``b`` built in one worker: no per-sample collate,
    and the batch composition never depends on the number of workers."""

    def __init__(self, ds: ReinforcedDataset | AugmentedDataset, batches: list[np.ndarray]):
        self.ds, self.batches = ds, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> Item:
        self.ds.prefetch(self.batches[b])
        items = [self.ds.item(int(p)) for p in self.batches[b]]
        return self.ds.finish({k: torch.cat([it[k] for it in items]) for k in items[0]})


def plain_item(src: Source, i: int, size: int) -> tuple[torch.Tensor, int]:
    """Validation view: the plain eval transform, uint8."""
    return eval_transform(src.load_uint8(i), size), int(src.labels[i])


class PlainBatches(Dataset):
    """Validation batches (eval view), built whole in a worker like :class:`BatchDataset`."""

    def __init__(self, src: Source, size: int, batches: list[np.ndarray]):
        self.src, self.size, self.batches = src, int(size), batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> Item:
        pairs = [plain_item(self.src, int(i), self.size) for i in self.batches[b]]
        return {"image": torch.stack([p[0] for p in pairs]),
                "label": torch.tensor([p[1] for p in pairs], dtype=torch.int64)}
