"""``drkit train``: one loop for ERM, reinforced data (DR) and online knowledge distillation.

``train`` mirrors the CLI verb; ``ReinforcedDataset`` and ``SoftTargetLoss`` drop into any
PyTorch loop. Importing defines functions only (no data or model is touched).
"""
from __future__ import annotations

import sys
import types
from typing import Any

from .data import AugmentedDataset, ReinforcedDataset, epoch_views
from .losses import LabelSmoothingCrossEntropy, SoftTargetLoss, soft_target_cross_entropy
from .loop import train

__all__ = ["train", "ReinforcedDataset", "AugmentedDataset", "SoftTargetLoss", "LabelSmoothingCrossEntropy",
           "soft_target_cross_entropy", "epoch_views"]


class _CallableModule(types.ModuleType):
    """``drkit.train(...)`` stays the verb even after ``import drkit.train`` has bound the package
    attribute to this module (``drkit.__getattr__`` only resolves names that are still unbound)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
