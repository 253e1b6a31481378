"""What the verbs' configs share: frozen dataclasses built from keywords or argparse, compared
field by field on resume, refused in one line when a keyword is unknown. Each verb's ``validate()``
decides every refusal from the options alone; data-dependent checks happen where data is opened.
A field's :func:`option` is its flag too (:func:`add_options`): a default, a choice list and a help
text exist only in the config. No torch here (``drkit --help`` stays cheap)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Mapping, TypeVar

from .errors import DrkitError

C = TypeVar("C", bound="VerbConfig")

KW_ONLY: dict[str, bool] = {"kw_only": True} if sys.version_info >= (3, 10) else {}  # configs take keywords (3.10+)


def option(default: Any = dataclasses.MISSING, *, free: bool = False, internal: bool = False, derived: bool = False,
           **cli: Any) -> Any:
    """A config field. ``free``: does not change a run's result (may differ on resume); ``internal``:
    no flag; ``derived``: resolved from the others unless given (again by ``replace``). ``cli``:
    argparse keywords (``help``, ``metavar``, ``choices``, ``required``, ``nargs``, ``action``), ``flag``."""
    return dataclasses.field(default=default, metadata={"free": free, "internal": internal, "derived": derived,
                                                        "cli": cli})


def section(cls: type[VerbConfig]) -> Any:
    """A nested config (its own typed fields); flags, keywords and ``replace`` stay flat, routed by name."""
    return dataclasses.field(default_factory=cls, metadata={"section": cls})


def _sections(cls: Any) -> dict[str, type[VerbConfig]]:
    return {f.name: f.metadata["section"] for f in dataclasses.fields(cls) if "section" in f.metadata}


SPLIT_HELP = "train|test|val when SRC has no :split suffix"  # --split, --download: every verb that reads a source
DOWNLOAD_HELP = "let torchvision sources download their files"


def add_options(parser: argparse.ArgumentParser, cls: type[VerbConfig], **help_: str) -> None:
    """``cls``'s fields as flags: type from the annotation (a tuple repeats, or takes ``nargs``), a bool
    a switch (with ``--no-…`` unless False by default), default from the field; ``help_`` by field name."""
    for f in dataclasses.fields(cls):
        if "section" in f.metadata:  # a titled group of the same flat flags
            group = parser.add_argument_group(f.name, (f.metadata["section"].__doc__ or "").split("\n")[0])
            add_options(group, f.metadata["section"], **help_)  # type: ignore[arg-type]
            continue
        if f.metadata.get("internal"):
            continue
        kw = dict(f.metadata.get("cli", {}))
        flag = kw.pop("flag", "--" + f.name.replace("_", "-"))
        kw.update(dest=f.name, **({"help": help_[f.name]} if f.name in help_ else {}))
        if not kw.get("required"):
            kw["default"] = f.default
        kind, item = _flag_type(str(f.type))
        if kind is bool:
            kw.setdefault("action", "store_true" if f.default is False else argparse.BooleanOptionalAction)
        elif kind is tuple:
            kw.update(type=item, **({} if "nargs" in kw else {"action": "append"}))
        else:
            kw["type"] = kind
        parser.add_argument(flag, **kw)


def _flag_type(annotation: str) -> tuple[type, type]:
    """(bool | tuple | int | float | str, a tuple's item type) from a field's annotation text: its
    first alternative that a flag can give (a ``Source`` or a module reads as str)."""
    scalars = {t.__name__: t for t in (bool, int, float, str)}
    for part in (p.strip() for p in annotation.split("|")):
        if part.startswith("tuple["):
            return tuple, scalars.get(part[6:].split(",")[0].strip(" ]"), str)
        if part in scalars:
            return scalars[part], scalars[part]
    return str, str


@dataclasses.dataclass(frozen=True)
class VerbConfig:
    """Base of the verb configs: construction from keywords, argparse and JSON; ``diff``."""

    @classmethod
    def names(cls) -> list[str]:
        """Every option's keyword, a section's included (they are unique across sections)."""
        return [n for f in dataclasses.fields(cls) for n in
                (f.metadata["section"].names() if "section" in f.metadata else [f.name])]

    @classmethod
    def build(cls: type[C], **options: Any) -> C:
        """``cls(**options)`` from flat keywords (a section's are routed to it, or the section is given
        whole by its name), refusing unknown keywords with the list of known ones."""
        unknown = sorted(set(options) - set(cls.names()) - set(_sections(cls)))
        if unknown:
            raise DrkitError(f"{cls.__name__} has no option {', '.join(unknown)} (options: {', '.join(cls.names())})")
        for name, sub in _sections(cls).items():
            mine = {k: options.pop(k) for k in sub.names() if k in options}  # flat keys win over a given section
            options[name] = options[name].replace(**mine) if name in options else sub.build(**mine)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in options
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        check(not missing, f"{cls.__name__} needs {', '.join(missing)}")
        return cls(**options)

    @classmethod
    def from_args(cls: type[C], args: Any, **overrides: Any) -> C:
        """From an ``argparse.Namespace`` (or mapping): fields named like its dests, then overrides."""
        values = vars(args) if not isinstance(args, Mapping) else dict(args)
        return cls.build(**({k: v for k, v in values.items() if k in cls.names()} | overrides))

    def flat(self) -> dict[str, Any]:
        """Every option by its keyword (a section's too), the values as they are."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out.update(value.flat() if "section" in f.metadata else {f.name: value})
        return out

    def replace(self: C, **changes: Any) -> C:
        drop = {f.name for f in dataclasses.fields(self) if f.metadata.get("derived")}  # and a replaced section's:
        drop |= {k for name, sub in _sections(self).items() if name in changes for k in sub.names()}
        return self.build(**{k: v for k, v in self.flat().items() if k not in drop} | changes)  # refuses unknown

    def to_dict(self, include_free: bool = True) -> dict[str, Any]:
        """JSON-friendly values (tuples as lists, objects such as an in-memory source by their ``spec``),
        a section as a nested dict."""
        out = {}
        for f in dataclasses.fields(self):
            if not include_free and f.metadata.get("free"):
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_dict(include_free) if "section" in f.metadata else _jsonable(value)
        return out

    @classmethod
    def flat_dict(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        """A ``to_dict()`` with its sections' keys at the top (what :meth:`diff` compares)."""
        return {k2: v2 for k, v in saved.items()
                for k2, v2 in (v.items() if k in _sections(cls) and isinstance(v, Mapping) else [(k, v)])}

    @classmethod
    def upgrade(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        """An older release's saved ``to_dict()`` in this one's flat form (a config with new fields says how)."""
        return cls.flat_dict(saved)

    def diff(self, saved: Mapping[str, Any]) -> list[str]:
        """Result-determining options whose value differs from ``saved`` (a ``to_dict()``, upgraded)."""
        mine, saved = self.flat_dict(self.to_dict(include_free=False)), self.upgrade(saved)
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

