"""How good a store's labels are (teacher agreement, confidence, entropy over stored views) and the
warnings when it will not make a better student; pure numpy, for ``reinforce`` and ``inspect``."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..defaults import DISTILL_TEMPERATURE, WEAK_TEACHER_TOP1
from .format import partner_ids

#: view agreement this far (absolute) below plain-image accuracy means the recipe destroys labels
DESTROY_GAP = 0.10
#: mean top-1 probability on plain training images at or above this means near one-hot labels
ONE_HOT_PROB = 0.95


def view_label_stats(shards: Iterable[tuple[int, dict[str, np.ndarray]]], labels: np.ndarray | None,
                     num_classes: int, topk: int, num_views: int, skipped: Iterable[int] = (),
                     max_records: int = 200_000) -> dict[str, Any]:
    """Agreement of the stored top-1 with the label (a mixed view's: its dominant image's), mean top-1
    probability and mean entropy of the densified target (nats), over the first ``max_records``."""
    agree = total = 0
    ent_sum = top1_sum = 0.0
    skip = np.asarray(sorted(set(skipped)), dtype=np.int64)
    for start, arrays in shards:
        if max_records <= 0:
            break
        n = min(arrays["topk_ids"].shape[0], max(1, max_records // num_views))
        ids = np.asarray(arrays["topk_ids"][:n]).astype(np.int64)
        probs = np.asarray(arrays["topk_probs"][:n]).astype(np.float64)
        sample_ids = np.arange(start, start + n)
        valid = (probs.sum(-1) > 0) & ~np.isin(sample_ids, skip)[:, None]
        if labels is not None:
            truth = labels[sample_ids][:, None].repeat(num_views, 1)
            partner = partner_ids({k: arrays[k][:n] for k in ("mix_mode", "partner") if k in arrays})
            if partner is not None:
                take_partner = (partner >= 0) & (np.asarray(arrays["lam"][:n]).astype(np.float64) < 0.5)
                truth = np.where(take_partner, labels[np.clip(partner, 0, len(labels) - 1)], truth)
            agree += int(((ids[..., 0] == truth) & valid).sum())
        total += int(valid.sum())
        ent_sum += float(_dense_entropy(probs, num_classes, topk)[valid].sum())
        top1_sum += float(probs[..., 0][valid].sum())
        max_records -= n * num_views  # what is left to read
    return {"views_read": total,
            "top1": agree / total if (total and labels is not None) else None,
            "mean_top1_prob": top1_sum / total if total else None,
            "mean_entropy": ent_sum / total if total else None, "max_entropy": math.log(num_classes)}


def _dense_entropy(probs: np.ndarray, num_classes: int, topk: int) -> np.ndarray:
    residual = np.clip(1.0 - probs.sum(-1), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(-1)
        if num_classes > topk:
            per = residual / (num_classes - topk)
            ent += -np.where(per > 0, residual * np.log(per), 0.0)
    return ent


def label_warnings(plain: dict[str, Any] | None, views: dict[str, Any], out_of_fold: bool = False) -> list[str]:
    """One line each, with what to do: views that destroy the label, weak teachers, near one-hot labels."""
    out: list[str] = []
    if plain is None or plain.get("top1") is None or views.get("top1") is None:
        return out
    if plain["top1"] - views["top1"] > DESTROY_GAP:
        out.append(f"the recipe destroys labels: the teachers agree with the label on {100 * views['top1']:.1f} % "
                   f"of the views but on {100 * plain['top1']:.1f} % of the plain images; use a milder recipe "
                   "(--recipe auto picks one for the image size, or padcrop / ra@m=3 for small images)")
    if plain["top1"] < WEAK_TEACHER_TOP1:
        where = "held-out (out-of-fold)" if out_of_fold else "plain training-image"
        out.append(f"the teachers are weak: {where} top-1 {100 * plain['top1']:.1f} %, mean top-1 probability "
                   f"{plain['mean_top1_prob']:.3f}; a student trained on these labels learns at most about what "
                   f"they know, and ERM may well beat it: train stronger teachers (more optimizer steps, no label "
                   f"smoothing, a bigger model) before reinforcing")
    if plain["mean_top1_prob"] >= ONE_HOT_PROB and plain["top1"] >= ONE_HOT_PROB:
        soften = (f"drkit train softens them by default (T = {DISTILL_TEMPERATURE:g} on both sides; "
                  "--temperature 1 turns that off)")
        hint = (soften if out_of_fold else
                "if the teachers trained on these images they have memorised them: train out-of-fold teachers "
                f"(drkit train --folds K) and reinforce with --teacher ckpt:DIR; {soften}")
        out.append(f"labels are near one-hot: mean top-1 probability {plain['mean_top1_prob']:.3f} on plain "
                   f"training images ({100 * plain['top1']:.1f} % correct), little to distil beyond the hard "
                   f"label; {hint}")
    return out


def format_diagnostics(d: dict[str, Any]) -> list[str]:
    """Human lines for the terminal."""
    lines, p, v = [], d.get("plain"), d.get("views", {})
    if p is not None and p.get("top1") is not None:
        lines.append(f"teachers on {p['images']} plain training images: top-1 {100 * p['top1']:.2f} %, "
                     f"mean top-1 probability {p['mean_top1_prob']:.3f}")
    if v.get("top1") is not None:
        lines.append(f"teachers on {v['views_read']} stored views: agree with the label on {100 * v['top1']:.2f} %, "
                     f"mean top-1 probability {v['mean_top1_prob']:.3f}, mean entropy {v['mean_entropy']:.3f} nats")
    return lines
