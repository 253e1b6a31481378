"""Losses on dense soft targets: one formula for ERM (smoothed one-hot), DR (stored top-k) and KD, so a
comparison between them measures where the targets come from, not three slightly different losses.
"""
from __future__ import annotations

import torch
from torch import nn


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                              soften_targets: bool = False) -> torch.Tensor:
    """Mean over the batch of ``-sum_c p_c log softmax(z / T)_c``, times ``T**2`` (Hinton et al.: gradient
    magnitudes comparable across temperatures) when ``T != 1``. ``T`` softens the student only, unless
    ``soften_targets`` also softens the targets, ``p**(1/T)`` renormalised (Hinton's both sides)."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    t = float(temperature)
    if t <= 0:
        raise ValueError(f"temperature must be positive, got {t}")
    if soften_targets and t != 1.0:
        soft = targets.float().clamp_min(0).pow(1.0 / t)
        targets = soft / soft.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    logp = torch.log_softmax(logits.float() / t, dim=-1)
    loss = -(targets.float() * logp).sum(dim=-1).mean()
    return loss * (t * t) if t != 1.0 else loss


class SoftTargetLoss(nn.Module):
    """Drop-in loss for ``ReinforcedDataset`` targets: ``SoftTargetLoss()(logits, dense_probs)``. The
    ``[B, k, C]`` targets of ``views_per_image = k`` (and such logits) are flattened to ``[B * k, C]``,
    the row order of ``images.flatten(0, 1)``; shapes that still differ are refused."""

    def __init__(self, temperature: float = 1.0, soften_targets: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.soften_targets = bool(soften_targets)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = (t.flatten(0, 1) if t.ndim == 3 else t for t in (logits, targets))
        return soft_target_cross_entropy(logits, targets, self.temperature, self.soften_targets)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, soften_targets={self.soften_targets}"


class SoftTargetCrossEntropy(SoftTargetLoss):
    """timm's ``SoftTargetCrossEntropy`` under its own name, so a timm script swaps the import and
    nothing else; computed in float32 whatever the logits' dtype (timm keeps the input dtype)."""

    def __init__(self) -> None:
        super().__init__()


class LabelSmoothingCrossEntropy(nn.Module):
    """ERM loss: hard (or λ-mixed two-hot) targets, smoothed, then the soft-target CE."""

    def __init__(self, smoothing: float = 0.1):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 1:  # class indices
            targets = torch.nn.functional.one_hot(targets.long(), logits.shape[-1]).float()
        if self.smoothing > 0:  # (1 - e) * t + e / C
            targets = targets * (1.0 - self.smoothing) + self.smoothing / targets.shape[-1]
        return soft_target_cross_entropy(logits, targets)
