"""How good a finished store's labels are, said when it is written (plain images, stored views, warnings)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..store import StoreWriter, label_warnings, partner_ids, view_label_stats


def diagnose(writer: StoreWriter, src: Any, ens: torch.nn.Module, size: int, batch_size: int) -> dict[str, Any]:
    """Plain-image and stored-view statistics of a complete run, rounded for the manifest."""
    from ..teachers import plain_stats

    config = writer.config
    skipped = set(writer.skipped())
    views = view_label_stats(writer.shard_arrays(), np.asarray(src.labels), config["num_classes"],
                             config["topk"], config["num_views"], skipped)
    plain = plain_stats(ens, src, size, batch_size=batch_size, skipped=skipped)
    routed = bool(getattr(ens, "routed", False))
    out: dict[str, Any] = {"plain": plain, "views": views, "out_of_fold": routed,
                           "warnings": label_warnings(plain, views, out_of_fold=routed)}
    if routed and "partner" in config["arrays"]:
        out["partner_seen_views"] = partner_fallbacks(ens, writer.shard_arrays())
    return {k: rounded(v) for k, v in out.items()}


def partner_fallbacks(ens: Any, shards: Any) -> int:
    """Mixed views whose partner every member that never saw the view's own image had seen."""
    count = 0
    for start, arrays in shards:
        partners = partner_ids(arrays)
        ids = np.broadcast_to(np.arange(start, start + partners.shape[0])[:, None], partners.shape)
        count += int(ens.eligible(ids.reshape(-1), partners.reshape(-1))[1].sum())
    return count


def rounded(v: Any) -> Any:
    """6 significant digits: the manifest should not flip on the last bit of a float sum."""
    if isinstance(v, float):
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: rounded(x) for k, x in v.items()}
    return v
