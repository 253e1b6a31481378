"""``drkit verify DIR --data SRC --replay N``: do the stored labels still follow from the stored views?

A store drkit made replays exactly (same top-k, probabilities to fp16 rounding), so anything else is
refused naming a view; an imported store, or a GPU-rendered one without a GPU, replays approximately:
its check reports the top-1 agreement and refuses nothing.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import StoreError
from .format import partner_ids
from .store import Store

#: stored probabilities are float16: replays may differ by a rounding step or two of it
PROB_TOLERANCE = 2e-3


def replay_views(store: Store, count: int) -> list[tuple[int, int]]:
    """``count`` (sample, view) pairs spread evenly over the store's non-skipped samples and views."""
    ids = store.kept_samples()
    flat = np.unique(np.linspace(0, ids.size * store.num_views - 1, min(count, ids.size * store.num_views))
                     .round().astype(np.int64))
    return [(int(ids[f // store.num_views]), int(f % store.num_views)) for f in flat]


def replay_check(store: Store, src: Any, count: int, teachers: Sequence[str] | None = None,
                 device: str = "cpu", batch_size: int = 64) -> dict[str, Any]:
    """Replay ``count`` views, label them again and compare (see the module docstring)."""
    from ..teachers import load_teacher, teacher_topk

    recorded = store.manifest["teachers"]
    if teachers is None and any(t.get("imported") for t in recorded):
        raise StoreError(f"store {store.path} was imported: its teachers cannot be loaded from the manifest; "
                         "name them with --teacher to compare")
    # out-of-fold members are loaded again by their group (once), others by their spec
    specs = teachers or dict.fromkeys((t.get("out_of_fold") or {}).get("group") or t["spec"] for t in recorded)
    ens = load_teacher(list(specs), device=device, num_classes=store.num_classes).eval()
    ens.bind(src)  # a folds group labels each image with the members that never saw it, as reinforce did
    pairs = replay_views(store, count)
    agree, close, worst = 0, 0, None
    for a in range(0, len(pairs), batch_size):
        chunk = pairs[a:a + batch_size]
        x = torch.stack([store.render_uint8(src, i, v) for i, v in chunk]).to(device)
        rows = [(store.raw(i), v) for i, v in chunk]  # each record read once
        arrays = {k: np.stack([raw[k][v] for raw, v in rows]) for k in store.schema}
        with torch.inference_mode():
            p, ids = teacher_topk(ens, x, store.topk, np.array([i for i, _ in chunk]), partner_ids(arrays))
        want_ids, want_p = arrays["topk_ids"].astype(np.int64), arrays["topk_probs"].astype(np.float32)
        ids, p = ids.cpu().numpy(), p.cpu().numpy()
        agree += int((ids[:, 0] == want_ids[:, 0]).sum())
        same = (ids == want_ids).all(1) & (np.abs(p - want_p).max(1) <= PROB_TOLERANCE)
        close += int(same.sum())
        if worst is None and not same.all():
            worst = chunk[int(np.flatnonzero(~same)[0])]
    # a store rendered on an accelerator replays bit-exactly only where one is present
    exact = store.exact_replay and (store.renderer.get("device", "cpu") == "cpu" or torch.cuda.is_available())
    if exact and worst is not None:
        raise StoreError(f"store {store.path}: replay reproduces the stored labels of only {close} of {len(pairs)} "
                         f"views (first off: sample {worst[0]} view {worst[1]}): the images, the teachers or the "
                         "torch/torchvision that render them differ from the ones that made the store")
    return {"views": len(pairs), "top1_agreement": agree / len(pairs), "reproduced": close / len(pairs), "exact": exact}
