"""Images in: dataset sources named by spec strings, each with class names and a fingerprint.

``load_source("digits:test?n=100")`` -> :class:`Source`. Names resolve on first use and a scheme's
module loads when a spec names it, so importing this package imports no torch and no dataset library.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"ArraySource": "base", "FileSource": "encoded", "Source": "base", "SubsetSource": "base",
            "IMAGE_EXTENSIONS": "encoded", "MODES": "spec", "SOURCES": "registry", "register_source": "registry",
            "SPLITS": "spec", "SourceSpec": "spec", "load_source": "spec"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
