"""``drkit train``: one loop for ERM, reinforced data (DR) and online knowledge distillation.

``train(TrainConfig(...))`` mirrors the CLI verb (the CLI builds the same config from its flags);
``ReinforcedDataset`` and ``SoftTargetLoss`` drop into any PyTorch loop. Importing defines
functions only (no data or model is touched).
"""
from __future__ import annotations

from .. import callable_verb
from .config import Distill, Optim, Runtime, TrainConfig
from .data import AugmentedDataset, ReinforcedDataset
from .loop import train
from .losses import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, SoftTargetLoss, soft_target_cross_entropy
from .order import epoch_views
from .outputs import read_metrics
from .replay import collate_raw

__all__ = ["train", "TrainConfig", "Optim", "Distill", "Runtime", "ReinforcedDataset", "AugmentedDataset",
           "SoftTargetLoss", "SoftTargetCrossEntropy", "LabelSmoothingCrossEntropy", "soft_target_cross_entropy",
           "epoch_views", "read_metrics", "collate_raw"]


callable_verb(__name__)
