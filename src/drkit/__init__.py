"""drkit — dataset reinforcement toolkit.

Public names are resolved lazily so ``import drkit`` stays cheap (no torch import, no work).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_source": "drkit.sources",
    "load_teacher": "drkit.teachers",
    "open_store": "drkit.store",
    "ReinforcedDataset": "drkit.train.data",
    "SoftTargetLoss": "drkit.train.losses",
    "create_model": "drkit.models",
    "load_checkpoint": "drkit.checkpoint",
    "reinforce": "drkit.reinforce",
    "train": "drkit.train",
    "evaluate": "drkit.evaluate",
    "get_recipe": "drkit.augment",
    "DrkitError": "drkit.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'drkit' has no attribute {name!r}")
