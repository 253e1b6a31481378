"""What the verbs' configs share: frozen dataclasses built from keywords or argparse, compared
field by field on resume, refused in one line when a keyword is unknown. Each verb's ``validate()``
decides every refusal from the options alone; data-dependent checks happen where data is opened."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from .errors import DrkitError

C = TypeVar("C", bound="VerbConfig")

#: field metadata: options that do not change a run's result (free to differ on --resume)
FREE = {"free": True}


@dataclasses.dataclass(frozen=True)
class VerbConfig:
    """Base of the verb configs: construction from keywords, argparse and JSON; ``diff``."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def build(cls: type[C], **options: Any) -> C:
        """``cls(**options)``, refusing unknown keywords with the list of known ones."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise DrkitError(f"{cls.__name__} has no option {', '.join(unknown)} "
                             f"(options: {', '.join(cls.names())})")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in options
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise DrkitError(f"{cls.__name__} needs {', '.join(missing)}")
        return cls(**options)

    @classmethod
    def from_args(cls: type[C], args: Any, **overrides: Any) -> C:
        """From an ``argparse.Namespace`` (or mapping): fields named like its dests, then overrides."""
        values = vars(args) if not isinstance(args, Mapping) else dict(args)
        picked = {k: v for k, v in values.items() if k in cls.names()}
        picked.update(overrides)
        return cls.build(**picked)

    def replace(self: C, **changes: Any) -> C:
        return self.build(**{k: getattr(self, k) for k in self.names()} | changes)  # refuses unknown keys

    def to_dict(self, include_free: bool = True) -> dict[str, Any]:
        """JSON-friendly values (tuples as lists, objects such as an in-memory source by their ``spec``)."""
        out = {}
        for f in dataclasses.fields(self):
            if not include_free and f.metadata.get("free"):
                continue
            out[f.name] = _jsonable(getattr(self, f.name))
        return out

    def diff(self, saved: Mapping[str, Any]) -> list[str]:
        """Result-determining fields whose value differs from ``saved`` (a ``to_dict()``)."""
        mine = self.to_dict(include_free=False)
        return sorted(k for k in mine if saved.get(k) != mine[k])


def _jsonable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    spec = getattr(v, "spec", None)
    return spec if isinstance(spec, str) else type(v).__name__


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DrkitError(message)


def positional(**given: Any) -> dict[str, Any]:
    """The given (not ``None``) positional arguments: ``train(src, out)`` == ``train(data=src, out=out)``."""
    return {k: v for k, v in given.items() if v is not None}
