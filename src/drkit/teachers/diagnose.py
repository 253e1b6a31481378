"""The teacher ensemble on plain (un-augmented) images: the yardstick that tells whether a recipe
destroys labels and whether the teachers memorised the training images."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..augment import eval_transform
from .ensemble import call_teacher

if TYPE_CHECKING:
    from torch import nn

    from ..sources import Source

#: plain images the diagnostics look at (evenly strided: the first N of a folder are one class)
PLAIN_IMAGES = 1024


@torch.inference_mode()
def plain_stats(ens: nn.Module, src: Source, image_size: int, max_images: int = PLAIN_IMAGES,
                batch_size: int = 256, skipped: set[int] | None = None) -> dict[str, Any]:
    """Top-1 accuracy and mean top-1 probability of the (routed) ensemble on plain images."""
    idx = src.probe_indices(max_images)
    idx = np.array([i for i in idx if i not in (skipped or set())], dtype=np.int64)
    correct, prob_sum = 0, 0.0
    for a in range(0, idx.size, batch_size):
        chunk = idx[a:a + batch_size]
        x = torch.stack([eval_transform(src.load_uint8(int(i)), image_size) for i in chunk])
        probs = call_teacher(ens, x, sample_ids=chunk).float().cpu()
        top_p, top_id = probs.max(-1)
        correct += int((top_id.numpy() == np.asarray(src.labels)[chunk]).sum())
        prob_sum += float(top_p.sum())
    count = int(idx.size)
    return {"images": count, "top1": correct / count if count else None,
            "mean_top1_prob": prob_sum / count if count else None}
