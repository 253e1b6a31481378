"""Images in: dataset sources named by spec strings, each with class names and a fingerprint.

``load_source("fashion-mnist:test?n=1000")`` -> :class:`Source`. Schemes register themselves in
:data:`SOURCES` via :func:`register_source`; importing the modules below only defines functions
(datasets are read when a source is loaded, never at import).
"""
from __future__ import annotations

from drkit.sources.base import (
    IMAGE_EXTENSIONS,
    MODES,
    SOURCES,
    SPLITS,
    ArraySource,
    FileSource,
    Source,
    SourceSpec,
    SubsetSource,
    load_source,
    register_source,
)
from drkit.sources import digits, fashion_mnist, imagefolder, torchvision_source  # noqa: F401  (registration)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MODES",
    "SOURCES",
    "SPLITS",
    "ArraySource",
    "FileSource",
    "Source",
    "SourceSpec",
    "SubsetSource",
    "load_source",
    "register_source",
]
