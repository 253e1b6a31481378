"""The epoch's order and each sample's views in it: pure functions of ``(seed, epoch, sample)`` (a seeded
``default_rng`` for the order, cheaper SplitMix64 hashes for the per-item DR choices), never a global
RNG, so a worker, a rank or a resumed run makes the same choice for the same sample and epoch.
"""
from __future__ import annotations

import numpy as np

from ..hashing import GOLDEN, MASK64, mix64, mix64_np

# Stream tags keep the order / view / plain streams apart (the order's four-word seed sequence
# also never equals a recipe's three-word [seed, sample, view]).
TAG_ORDER, TAG_VIEW, TAG_PLAIN = 0x0D5E, 0x71E3, 0x9A17


def epoch_views(seed: int, sample_id: int, epoch: int, num_views: int, per_image: int = 1) -> list[int]:
    """Views of one sample in ``epoch``: ``k`` consecutive positions of a permutation of the NS views (sorted by NS
    hashed keys), a fresh one each cycle of NS // k epochs: no view repeats within a cycle (NS mod k views sit
    one out, different ones each cycle). The per-sample test oracle of :func:`epoch_views_many`."""
    out = []
    for j in range(per_image):  # an epoch's k views from one permutation: distinct even when k does not divide NS
        cycle, pos = int(epoch) // (num_views // per_image), int(epoch) % (num_views // per_image) * per_image + j
        h = _hash_words(seed, TAG_VIEW, sample_id, cycle)
        keys = [mix64((h + v * GOLDEN) & MASK64) for v in range(num_views)]
        out.append(sorted(range(num_views), key=keys.__getitem__)[pos])
    return out


def epoch_views_many(seed: int, sample_ids: np.ndarray, epoch: int, num_views: int, per_image: int = 1) -> np.ndarray:
    """:func:`epoch_views` of many samples at once, ``[n, per_image]``: the same SplitMix64 keys in
    uint64 arrays and a stable argsort per row."""
    ids = np.asarray(sample_ids, dtype=np.int64).astype(np.uint64)
    out = np.empty((ids.size, per_image), dtype=np.int64)
    steps = np.arange(num_views, dtype=np.uint64) * np.uint64(GOLDEN)
    for j in range(per_image):
        cycle, pos = int(epoch) // (num_views // per_image), int(epoch) % (num_views // per_image) * per_image + j
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


def epoch_batches(num_items: int, seed: int, epoch: int, batch_items: int, rank: int = 0, world: int = 1,
                  drop_last: bool = True) -> list[np.ndarray]:
    """This rank's batches: a strided slice of the epoch's shuffled order (the same on every rank, padded
    by wrapping so every rank has the same number of steps), cut into ``batch_items``; a short last
    batch is dropped when at least one full batch exists."""
    order = np.random.default_rng([int(seed), TAG_ORDER, int(epoch), 0]).permutation(num_items)
    if world > 1 and len(order) % world:  # np.resize repeats the order as often as needed (1 item, 4 ranks)
        order = np.resize(order, -(-len(order) // world) * world)
    mine = order[rank::world]
    batches = [mine[a:a + batch_items] for a in range(0, len(mine), batch_items)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_items:
        batches.pop()
    return batches
