"""Make a verb's module callable, so ``drkit.train(...)`` / ``drkit.reinforce(...)`` /
``drkit.evaluate(...)`` stay the verbs even after ``import drkit.train`` has bound the package
attribute to the module (``drkit.__getattr__`` only resolves names that are still unbound)."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(module_name: str, target: str) -> None:
    """Calls of module ``module_name`` go to ``target`` ("module:function", imported on call)."""

    class _VerbModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            mod, _, fn = target.partition(":")
            return getattr(importlib.import_module(mod), fn)(*args, **kwargs)

    sys.modules[module_name].__class__ = _VerbModule
