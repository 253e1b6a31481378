"""Classification metrics from predicted probabilities: top-1/top-5, NLL, ECE, reliability bins.

Everything is computed from additive statistics (counts and per-bin sums), so evaluation streams in
constant memory and the one-shot functions are the streaming code. ECE (Guo et al. 2017): ``M``
equal-width bins ``((m-1)/M, m/M]`` over the top-1 confidence, ``sum_m |B_m|/N * |acc(B_m) - conf(B_m)|``,
torchmetrics' ``multiclass_calibration_error(norm="l1")`` (the tests' oracle; not used here, because it
needs every prediction in memory at once).
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch

NLL_EPS = 1e-12
"""Floor on p(label) before the log, so a confidently wrong prediction gives a finite NLL."""

#: the additive statistics (what ``merge`` sums)
_SUMS = ("count", "correct_top1", "correct_topk", "nll_sum", "bin_count", "bin_conf_sum", "bin_correct")


def _check(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, C], got shape {tuple(probs.shape)}")
    if labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise ValueError(f"labels must be [N] with N = {probs.shape[0]}, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    labels = labels.detach().to("cpu", torch.int64)
    if labels.numel() and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}), got {labels.min()}..{labels.max()}")
    return probs.detach().to("cpu", torch.float64), labels


def _bin_edges(n_bins: int) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)


class MetricAccumulator:
    """Streams ``(probs, labels)`` batches: ``update`` per batch, then ``compute()`` for the metric
    dict and ``bins()`` for the reliability diagram; ``merge`` adds another's state (another rank)."""

    def __init__(self, n_bins: int = 15, topk: int = 5) -> None:
        if n_bins < 1:
            raise ValueError("n_bins must be >= 1")
        self.n_bins = int(n_bins)
        self.topk = int(topk)
        self.count = 0
        self.skipped: list[int] = []  # samples the caller left out (undecodable images, eval --skip-bad)
        self.num_classes: int | None = None
        self.correct_top1 = 0
        self.correct_topk = 0
        self.nll_sum = 0.0
        self.bin_count = torch.zeros(self.n_bins, dtype=torch.int64)
        self.bin_conf_sum = torch.zeros(self.n_bins, dtype=torch.float64)
        self.bin_correct = torch.zeros(self.n_bins, dtype=torch.int64)

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> MetricAccumulator:
        """Add a batch: ``probs`` [N, C] (rows are probability vectors), ``labels`` [N] ints."""
        probs, labels = _check(probs, labels)
        n, c = probs.shape
        if self.num_classes is None:
            self.num_classes = c
        elif c != self.num_classes:
            raise ValueError(f"batch has {c} classes, earlier batches had {self.num_classes}")
        if n == 0:
            return self
        conf, pred = probs.max(dim=1)  # first index on ties, like argmax
        hit = pred == labels
        in_topk = (probs.topk(min(self.topk, c), dim=1).indices == labels[:, None]).any(dim=1)
        p_label = probs.gather(1, labels[:, None]).squeeze(1)
        # bucketize(right=False) on the inner edges gives bin m for conf in ((m-1)/M, m/M]
        idx = torch.bucketize(conf, _bin_edges(self.n_bins)[1:-1], right=False)
        self.count += n
        self.correct_top1 += int(hit.sum())
        self.correct_topk += int(in_topk.sum())
        self.nll_sum += float(-torch.log(p_label.clamp_min(NLL_EPS)).sum())
        self.bin_count += torch.bincount(idx, minlength=self.n_bins)
        self.bin_conf_sum += torch.bincount(idx, weights=conf, minlength=self.n_bins)
        self.bin_correct += torch.bincount(idx[hit], minlength=self.n_bins)
        return self

    def merge(self, other: "MetricAccumulator") -> None:
        """Add ``other``'s statistics into this one (same ``n_bins`` and ``topk``)."""
        if (other.n_bins, other.topk) != (self.n_bins, self.topk):
            raise ValueError("cannot merge accumulators with different n_bins or topk")
        self.skipped += other.skipped
        if other.count == 0:
            return
        if self.num_classes is not None and other.num_classes != self.num_classes:
            raise ValueError("cannot merge accumulators over different class counts")
        self.num_classes = other.num_classes
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def ece(self) -> float:
        """Expected calibration error (L1, bins weighted by their share of the samples)."""
        if self.count == 0:
            return math.nan
        gap = (self.bin_correct.to(torch.float64) - self.bin_conf_sum).abs()  # = |B| * |acc - conf|
        return float(gap.sum() / self.count)

    def compute(self) -> Dict[str, float]:
        """``{"top1", "top5", "nll", "ece"}``, fractions in 0..1 (NaN when empty); ``top5`` is
        top-min(5, C), so 1.0 by definition with fewer than 5 classes."""
        if self.count == 0:
            return {"top1": math.nan, "top5": math.nan, "nll": math.nan, "ece": math.nan}
        return {"top1": self.correct_top1 / self.count, "top5": self.correct_topk / self.count,
                "nll": self.nll_sum / self.count, "ece": self.ece()}

    def bins(self) -> Dict[str, object]:
        """JSON-ready per-bin statistics for :func:`drkit.plots.reliability_diagram`: ``edges``
        (M+1), mean ``confidence`` and ``accuracy`` per bin (0.0 when empty), ``count``, ``ece``."""
        counts = self.bin_count.to(torch.float64)
        safe = counts.clamp_min(1.0)
        return {"edges": _bin_edges(self.n_bins).tolist(),
                "confidence": torch.where(counts > 0, self.bin_conf_sum / safe, 0.0).tolist(),
                "accuracy": torch.where(counts > 0, self.bin_correct / safe, 0.0).tolist(),
                "count": self.bin_count.tolist(), "ece": self.ece()}


def compute_metrics(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> Dict[str, float]:
    """Top-1, top-min(5, C), mean NLL and ECE (``n_bins`` equal-width bins) of ``probs`` [N, C]."""
    return MetricAccumulator(n_bins=n_bins).update(probs, labels).compute()


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> Dict[str, object]:
    """Per-bin mean confidence, accuracy and count (plus edges and ECE); see ``MetricAccumulator.bins``."""
    return MetricAccumulator(n_bins=n_bins).update(probs, labels).bins()


__all__: List[str] = ["MetricAccumulator", "compute_metrics", "reliability_bins", "NLL_EPS"]
