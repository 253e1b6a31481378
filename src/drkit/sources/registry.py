"""The table of source schemes: which spec schemes exist and the factory that opens each.

Why its own module: a new source is a factory plus ``@register_source("name")``, with no
if/elif to edit; the table is the one place that knows the schemes, so the spec grammar's
refusals (:mod:`drkit.sources.spec`) can name them without knowing any source.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .base import Source

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


def known_sources() -> str:
    """The registered schemes, sorted and comma-separated, for refusals that list them."""
    return ", ".join(sorted(SOURCES)) or "(none registered)"
