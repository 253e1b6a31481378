"""The table of source schemes: which exist, the usage of each, and the factory that opens it.

Why a static table beside the registrations: help texts and refusals list the schemes without
importing torch or a dataset library (a test checks it against what the modules register).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from .base import Source

#: scheme -> (module of drkit.sources that registers it, one-line usage)
SCHEMES: dict[str, tuple[str, str]] = {
    "imagefolder": ("imagefolder", "imagefolder:PATH (PATH/CLASS/IMAGE)"),
    "fashion-mnist": ("fashion_mnist", "fashion-mnist[:DIR] (IDX files, Debian's by default)"),
    "torchvision": ("torchvision_source", "torchvision:NAME:ROOT (CIFAR100, Flowers102, ...)"),
    "digits": ("digits", "digits[:S] (scikit-learn's 8x8 digits, or at S x S)"),
    "hf": ("hf", "hf:PATH (a Hugging Face dataset saved with save_to_disk)"),
    "hf-stream": ("hf", "hf-stream:PATH_OR_NAME (a Hugging Face dataset, streamed)"),
    "wds": ("webdataset_source", "wds:DIR|SHARDS (WebDataset .tar shards)"),
    "lmdb": ("lmdb_source", "lmdb:PATH (an LMDB in drkit's layout)"),
}

#: A factory builds the full (un-truncated) source: ``factory(arg, split=, mode=, download=)``.
SourceFactory = Callable[..., "Source"]
SOURCES: dict[str, SourceFactory] = {}


def register_source(name: str) -> Callable[[SourceFactory], SourceFactory]:
    """Decorator adding a factory to :data:`SOURCES` so new schemes need no if/elif edits."""
    key = name.lower()

    def decorate(factory: SourceFactory) -> SourceFactory:
        if key in SOURCES and SOURCES[key] is not factory:
            raise ValueError(f"source scheme {key!r} is already registered")
        SOURCES[key] = factory
        return factory

    return decorate


def source_factory(scheme: str) -> Optional[SourceFactory]:
    """The factory of ``scheme``; a built-in scheme's module is imported on first use."""
    if scheme not in SOURCES and scheme in SCHEMES:
        importlib.import_module(f"{__package__}.{SCHEMES[scheme][0]}")
    return SOURCES.get(scheme)


def known_sources() -> str:
    """The schemes, sorted and comma-separated, for refusals that list them."""
    return ", ".join(sorted({*SCHEMES, *SOURCES})) or "(none registered)"


def scheme_help() -> str:
    """Every built-in scheme with its usage: the ``--data`` help text."""
    return " | ".join(u for _, u in SCHEMES.values()) + "; each takes :train|:test (:val if it has one) ?n=N&mode=L|RGB"
