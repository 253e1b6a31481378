"""Images in: dataset sources named by spec strings, each with class names and a fingerprint.

``load_source("fashion-mnist:test?n=1000")`` -> :class:`Source`. Schemes register themselves in
:data:`SOURCES` via :func:`register_source`; importing the modules below only defines functions
(datasets are read when a source is loaded, never at import).

Layout: :mod:`.base` the source classes, :mod:`.spec` the spec grammar and :func:`load_source`,
:mod:`.registry` the scheme table, :mod:`.images` image-mode normalisation, :mod:`.fingerprint`
the fingerprint recipes; one module per scheme below them. ``hf:``, ``wds:`` and ``lmdb:`` read
encoded images out of containers (Arrow tables, tar shards, an LMDB) through
:class:`~drkit.sources.encoded.EncodedSource`, and ``hf-stream:`` streams a dataset in order
(:mod:`.stream`); their libraries are imported only when one is opened.
"""
from __future__ import annotations

from . import (  # noqa: F401  (registration)
    digits,
    fashion_mnist,
    hf,
    imagefolder,
    lmdb_source,
    stream,
    torchvision_source,
    webdataset_source,
)
from .base import ArraySource, FileSource, Source, SubsetSource
from .images import IMAGE_EXTENSIONS, MODES
from .registry import SOURCES, register_source
from .spec import SPLITS, SourceSpec, load_source

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
