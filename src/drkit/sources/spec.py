"""Source spec strings, ``SCHEME[:ARG][:SPLIT][?n=N&mode=L|RGB]``, and opening one.

Why its own module: a spec is how a user, a store manifest and a checkpoint name a dataset, and it
must round-trip; ``?n=N`` is ``subset(range(N))``, its fingerprint derived from the full source's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from ..errors import SourceError
from ..textspec import format_query, split_head, split_query
from .registry import known_sources, source_factory

if TYPE_CHECKING:
    from .base import Source

SPLITS: tuple[str, ...] = ("train", "val", "test")
MODES: tuple[str, ...] = ("L", "RGB")
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
                                  key=lambda k: k.strip().lower(), value=str.strip, keep_empty=True)
        for key in query:
            if key not in _QUERY_KEYS:
                raise SourceError(f"unknown query key {key!r} in source spec {spec!r}; known: n, mode")
        try:
            n = int(query["n"]) if "n" in query else None
        except ValueError:
            n = 0
        if n is not None and n < 1:
            raise SourceError(f"?n= must be a positive integer in source spec {spec!r}")
        mode = query["mode"].upper() if "mode" in query else None
        if mode is not None and mode not in MODES:
            raise SourceError(f"?mode= must be L or RGB in source spec {spec!r}")
        scheme, rest = split_head(text, ":")
        scheme = scheme.strip().lower()
        if not scheme:
            raise SourceError(f"source spec {spec!r} has no scheme; known sources: {known_sources()}")
        split: Optional[str] = None
        arg = rest
        head, _, tail = (rest or "").rpartition(":")
        if tail in SPLITS:  # "imagefolder:PATH:val", or a bare split ("fashion-mnist:test": no argument)
            split, arg = tail, head
        return cls(scheme=scheme, arg=arg or None, split=split, n=n, mode=mode)

    def format(self) -> str:
        """The canonical string: ``scheme[:arg][:split][?n=N&mode=M]``."""
        out = ":".join(part for part in (self.scheme, self.arg, self.split) if part)
        query = {key: value for key, value in (("n", self.n), ("mode", self.mode)) if value is not None}
        return format_query(out, query)


def load_source(spec: str, split: Optional[str] = None, download: bool = False) -> "Source":
    """Open a dataset from its spec string; ``split`` must agree with a ``:split`` suffix."""
    parsed = SourceSpec.parse(spec)
    if split is not None and split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if parsed.split is not None and split is not None and parsed.split != split:
        raise SourceError(f"source spec {spec!r} names split {parsed.split!r} but split {split!r} was also given")
    factory = source_factory(parsed.scheme)
    if factory is None:
        raise SourceError(f"unknown source scheme {parsed.scheme!r} in {spec!r}; known sources: {known_sources()}")
    chosen = parsed.split or split or "train"
    source = factory(parsed.arg, split=chosen, mode=parsed.mode, download=download)
    if parsed.n is not None:
        if parsed.n > len(source):
            raise SourceError(f"?n={parsed.n} asks for more than the {len(source)} samples of {source.spec!r}")
        source = source.subset(range(parsed.n))
    return source


def stamp(scheme: str, arg: Optional[str], split: str, mode: Optional[str], default_mode: str) -> dict[str, str]:
    """The ``spec``, ``split`` and ``mode`` a factory gives its source (``mode`` defaulted); the spec
    names the mode only when it is not the default."""
    mode = mode or default_mode
    spec = SourceSpec(scheme, arg, split, None, None if mode == default_mode else mode).format()
    return {"spec": spec, "split": split, "mode": mode}


def local_path(arg: Optional[str], needs: str) -> str:
    """``arg`` as an absolute path; a missing ``arg`` is refused with ``needs``, the form it takes."""
    if not arg:
        raise SourceError(needs)
    return os.path.abspath(os.path.expanduser(arg))


def split_folder(root: str, split: str, scheme: str) -> str:
    """ROOT/SPLIT in a train/ + val|test/ layout, else ROOT itself (the split is only recorded)."""
    present = [s for s in SPLITS if os.path.isdir(os.path.join(root, s))]
    if "train" in present and ("val" in present or "test" in present):
        if split not in present:
            raise SourceError(f"{scheme} {root} has no {split}/ folder; available splits: {', '.join(present)}")
        return os.path.join(root, split)
    return root


def check_split(scheme: str, split: str, allowed: Sequence[str]) -> None:
    """Refuse a split the source does not have, naming the ones it does."""
    if split not in allowed:
        raise SourceError(f"{scheme} has no split {split!r}; available: {', '.join(allowed)}")
