"""Source spec strings: what ``SCHEME[:ARG][:SPLIT][?n=N&mode=L|RGB]`` means, and opening one.

Why its own module: a spec string is how a user, a store manifest and a checkpoint name a
dataset, and it must round-trip (``load_source(src.spec)`` gives the same samples). The
``?key=value`` syntax is :mod:`drkit.textspec`'s, shared with teacher and recipe specs; what is
source-specific (splits, ``n``, ``mode``, the scheme table lookup) is here.

``SPLIT`` is one of ``train``/``val``/``test``; ``?n=N`` keeps the first N samples and is
implemented as ``subset(range(N))`` of the full source, so its fingerprint is derived from the
full source's fingerprint; ``?mode=`` forces the image mode (``L`` or ``RGB``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from ..errors import SourceError
from ..textspec import format_query, split_head, split_query
from .images import MODES
from .registry import SOURCES, known_sources

if TYPE_CHECKING:
    from .base import Source

SPLITS: tuple[str, ...] = ("train", "val", "test")
_QUERY_KEYS = ("n", "mode")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec string; ``format()`` gives the canonical form that ``parse`` reads back."""

    scheme: str
    arg: Optional[str] = None
    split: Optional[str] = None
    n: Optional[int] = None
    mode: Optional[str] = None

    @classmethod
    def parse(cls, spec: str) -> "SourceSpec":
        """Split a spec into scheme, argument, split suffix and query; refuse what is malformed."""
        if not isinstance(spec, str) or not spec.strip():
            raise SourceError(f"empty source spec {spec!r}; known sources: {known_sources()}")
        text, query = split_query(spec.strip(), context=f"query of source spec {spec!r}", error=SourceError,
                                  key=_query_key, value=str.strip, keep_empty=True)
        n, mode = _query_values(query, spec)
        scheme, rest = split_head(text, ":")
        scheme = scheme.strip().lower()
        if not scheme:
            raise SourceError(f"source spec {spec!r} has no scheme; known sources: {known_sources()}")
        split: Optional[str] = None
        arg: Optional[str] = rest
        if rest in SPLITS:  # "fashion-mnist:test": a bare split, no argument
            split, arg = rest, None
        elif rest and ":" in rest:
            head, _, tail = rest.rpartition(":")
            if tail in SPLITS:
                split, arg = tail, head
        return cls(scheme=scheme, arg=arg or None, split=split, n=n, mode=mode)

    def format(self) -> str:
        """The canonical string: ``scheme[:arg][:split][?n=N&mode=M]``."""
        out = self.scheme
        if self.arg:
            out += ":" + self.arg
        if self.split:
            out += ":" + self.split
        query = {key: value for key, value in (("n", self.n), ("mode", self.mode)) if value is not None}
        return format_query(out, query)


def _query_key(key: str) -> str:
    return key.strip().lower()


def _query_values(values: dict[str, str], spec: str) -> tuple[Optional[int], Optional[str]]:
    """(n, mode) from a spec's query: ``n`` a positive integer, ``mode`` L or RGB."""
    for key in values:
        if key not in _QUERY_KEYS:
            raise SourceError(f"unknown query key {key!r} in source spec {spec!r}; known: n, mode")
    n: Optional[int] = None
    if "n" in values:
        try:
            n = int(values["n"])
        except ValueError:
            raise SourceError(f"?n= must be a positive integer in source spec {spec!r}") from None
        if n < 1:
            raise SourceError(f"?n= must be a positive integer in source spec {spec!r}")
    mode: Optional[str] = None
    if "mode" in values:
        mode = values["mode"].upper()
        if mode not in MODES:
            raise SourceError(f"?mode= must be L or RGB in source spec {spec!r}")
    return n, mode


def load_source(spec: str, split: Optional[str] = None, download: bool = False) -> "Source":
    """Open a dataset from its spec string; ``split`` must agree with a ``:split`` suffix."""
    parsed = SourceSpec.parse(spec)
    if split is not None and split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if parsed.split is not None and split is not None and parsed.split != split:
        raise SourceError(
            f"source spec {spec!r} names split {parsed.split!r} but split {split!r} was also given"
        )
    factory = SOURCES.get(parsed.scheme)
    if factory is None:
        raise SourceError(
            f"unknown source scheme {parsed.scheme!r} in {spec!r}; known sources: {known_sources()}"
        )
    chosen = parsed.split or split or "train"
    source = factory(parsed.arg, split=chosen, mode=parsed.mode, download=download)
    if parsed.n is not None:
        if parsed.n > len(source):
            raise SourceError(
                f"?n={parsed.n} asks for more than the {len(source)} samples of {source.spec!r}"
            )
        source = source.subset(range(parsed.n))
    return source


def canonical_spec(scheme: str, arg: Optional[str], split: str, mode: str, default_mode: str) -> str:
    """Spec string a factory stamps on its source; the mode appears only when it is not the default."""
    return SourceSpec(scheme, arg, split, None, None if mode == default_mode else mode).format()


def split_folder(root: str, split: str, scheme: str) -> str:
    """The folder a split reads: ROOT/SPLIT in a train/ + val|test/ layout, else ROOT itself (the
    split is then only recorded)."""
    present = [s for s in ("train", "val", "test") if os.path.isdir(os.path.join(root, s))]
    if "train" in present and ("val" in present or "test" in present):
        if split not in present:
            raise SourceError(f"{scheme} {root} has no {split}/ folder; available splits: {', '.join(present)}")
        return os.path.join(root, split)
    return root


def check_split(scheme: str, split: str, allowed: Sequence[str]) -> None:
    """Refuse a split the source does not have, naming the ones it does."""
    if split not in allowed:
        raise SourceError(f"{scheme} has no split {split!r}; available: {', '.join(allowed)}")
