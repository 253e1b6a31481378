"""The one grammar of drkit's spec strings (sources, teachers, recipes): a head, then ``key=value``
settings, refused the same way everywhere. What a key *means* stays with each parser, which
passes its own error class::

    query spec:   HEAD[?KEY=VALUE[&KEY=VALUE...]]     (sources, teachers)
    op options:   HEAD[@KEY=VALUE[,KEY=VALUE...]]     (recipe ops, joined by ``+``)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, TypeVar

V = TypeVar("V")


class SpecSyntaxError(ValueError):
    """A spec string that does not follow the grammar (the default error of this module)."""


#: what the parsers raise: any exception class taking one message (SourceError, TeacherError, ...)
ErrorClass = Callable[[str], Exception]


def parse_scalar(text: str) -> bool | int | float | str:
    """``"true"``/``"false"`` -> bool, then int, then float, else the text unchanged."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_value(text: str) -> bool | int | float | str:
    """A typed setting: surrounding blanks and quotes dropped, then :func:`parse_scalar`."""
    return parse_scalar(text.strip().strip("'\""))


def split_head(text: str, sep: str) -> tuple[str, Optional[str]]:
    """``HEAD<sep>REST`` -> ``(HEAD, REST)`` at the first ``sep``; ``(text, None)`` without one."""
    head, found, rest = text.partition(sep)
    return head, (rest if found else None)


def parse_pairs(text: str, sep: str, *, context: str = "spec", error: ErrorClass = SpecSyntaxError,
                key: Callable[[str], str] = str.strip, value: Callable[[str], V] = parse_value,  # type: ignore
                keep_empty: bool = False) -> dict[str, V]:
    """``k=v<sep>k2=v2`` -> ``{key(k): value(v), ...}`` in order. An item without ``=``, an empty or
    repeated key raises ``error("context: ...")``; empty items are skipped unless ``keep_empty``."""
    out: dict[str, V] = {}
    for item in text.split(sep):
        if not item and not keep_empty:
            continue
        raw_key, eq, raw_value = item.partition("=")
        if not eq:
            raise error(f"{context}: {item!r} is not KEY=VALUE")
        name = key(raw_key)
        if not name:
            raise error(f"{context}: empty key in {item!r}")
        if name in out:
            raise error(f"{context}: key {name!r} given twice")
        out[name] = value(raw_value)
    return out


def split_query(text: str, **how: Any) -> tuple[str, dict[str, Any]]:
    """``HEAD?k=v&k2=v2`` -> ``(HEAD, {k: v, k2: v2})``; no ``?``: ``(text, {})``; ``how``: parse_pairs's."""
    head, rest = split_head(text, "?")
    return head, ({} if rest is None else parse_pairs(rest, "&", **how))


def split_options(text: str, **how: Any) -> tuple[str, dict[str, Any]]:
    """``HEAD@k=v,k2=v2`` -> ``(HEAD, {k: v, k2: v2})``; no ``@`` gives ``(text, {})``."""
    head, rest = split_head(text, "@")
    return head, ({} if rest is None else parse_pairs(rest, ",", **how))


def format_query(head: str, pairs: Mapping[str, Any]) -> str:
    """``HEAD`` plus ``?k=v&k2=v2`` when there are pairs: what :func:`split_query` reads back."""
    return head + ("?" + "&".join(f"{k}={v}" for k, v in pairs.items()) if pairs else "")
