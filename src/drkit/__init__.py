"""drkit — dataset reinforcement toolkit.

``_EXPORTS`` says where every public name lives; names resolve on first use so ``import drkit``
stays cheap. The verbs are also packages, and importing a package binds its module to the name, so
each marks itself callable (:func:`callable_verb`): ``drkit.train(...)`` stays the verb."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: module -> the public names it defines
_HOMES = {"drkit.sources": "load_source", "drkit.teachers": "load_teacher", "drkit.store": "open_store StoreWriter",
          "drkit.train": "train TrainConfig ReinforcedDataset SoftTargetLoss", "drkit.models": "create_model",
          "drkit.checkpoint": "load_checkpoint", "drkit.augment": "get_recipe render_view",
          "drkit.errors": "DrkitError", "drkit.reinforce": "reinforce ReinforceConfig",
          "drkit.evaluate": "evaluate EvalConfig"}
_EXPORTS = {name: module for module, names in _HOMES.items() for name in names.split()}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:  # a verb named like its package is that (callable) package: drkit.train.Optim works too
        module = importlib.import_module(_EXPORTS[name])
        value = module if module.__name__ == f"drkit.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'drkit' has no attribute {name!r}")


class _VerbModule(types.ModuleType):
    """A verb package that is also its verb: ``drkit.train(...)`` calls ``drkit.train.train``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def callable_verb(module_name: str) -> None:
    """Make the verb package ``module_name`` callable (the data model's module-``__class__`` hook)."""
    sys.modules[module_name].__class__ = _VerbModule
