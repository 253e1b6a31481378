"""Teacher spec strings and the scheme registry (``timm:``, ``torchvision:``, ``ckpt:`` and any
registered by users)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import unquote

from ..errors import TeacherError
from ..fileio import sha256_file
from ..folds import FoldSplit
from ..models import ImageModel
from ..textspec import split_head, split_query


@dataclass(frozen=True)
class TeacherSpec:
    """A parsed spec: ``scheme:target?key=value&key=value`` (values may use %-escapes; the
    ``?``/``&`` syntax is :mod:`drkit.textspec`'s, values stay strings until a loader types them)."""

    raw: str
    scheme: str
    target: str
    options: dict[str, str] = field(default_factory=dict)


def parse_teacher_spec(spec: str) -> TeacherSpec:
    """Split a spec string. Unknown schemes raise :class:`TeacherError` listing the known ones."""
    scheme, rest = split_head(spec, ":")
    if rest is None or scheme not in TEACHER_SCHEMES:
        raise TeacherError(f"unknown teacher spec {spec!r}; use one of: "
                           + ", ".join(f"{s}:{TEACHER_SCHEMES[s].usage}" for s in sorted(TEACHER_SCHEMES)))
    target, options = split_query(rest, context=f"teacher {spec}", error=TeacherError, key=unquote, value=unquote)
    if not target:
        raise TeacherError(f"teacher {spec}: missing name after '{scheme}:'")
    return TeacherSpec(raw=spec, scheme=scheme, target=unquote(target), options=options)


@dataclass
class TeacherInfo:
    """What a member was loaded from and how it wants its input (for the store manifest)."""

    spec: str
    num_classes: int
    in_chans: int
    image_size: int
    mean: list[float]
    std: list[float]
    interpolation: str
    crop_pct: float = 1.0
    classes: list[str] | None = None
    weights_file: str | None = None
    weights_marker: str | None = None
    weights_sha256_known: str | None = None
    #: out-of-fold routing (a member of a ``drkit train --folds`` directory), else None
    route: FoldRoute | None = None
    #: a member of a folds directory loaded on its own (``ckpt:DIR/fold0``): not routed, but it
    #: knows which samples it trained on, so labelling them can be called out
    member_of: FoldRoute | None = None

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weight file (computed once, lazily), else the hub marker string."""
        if self.weights_sha256_known is None:
            self.weights_sha256_known = (sha256_file(self.weights_file) if self.weights_file is not None
                                         else self.weights_marker or f"hub:{self.spec}")
        return self.weights_sha256_known

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "weights_sha256": self.weights_sha256, "weights_file": self.weights_file,
                "num_classes": self.num_classes, "in_chans": self.in_chans, "image_size": self.image_size,
                "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
                "crop_pct": self.crop_pct,
                **({"out_of_fold": self.route.describe()} if self.route is not None else {})}


@dataclass(frozen=True)
class FoldRoute:
    """Member ``fold`` of the folds directory ``group``: it trained on every sample of the
    split's data outside its fold, so it may label only the others. ``use_all`` (the spec option
    ``?folds=all``) is the user's word that none of the members saw the data being labelled."""

    group: str
    fold: int
    split: FoldSplit
    use_all: bool = False

    def describe(self) -> dict[str, Any]:
        return {"group": self.group, "fold": self.fold, "use_all": self.use_all, **self.split.to_json(),
                "labels": "every member (folds=all)" if self.use_all else
                          f"only samples it never trained on (fold {self.fold}, or outside the trained prefix)"}


Member = tuple[ImageModel, TeacherInfo]
#: a loader returns one member, or several (a ``--folds`` directory)
Loader = Callable[[TeacherSpec], "Member | list[Member]"]


@dataclass(frozen=True)
class TeacherScheme:
    loader: Loader
    options: frozenset[str]
    usage: str
    model_kwargs: bool = False  # pass unknown options on as model kwargs


#: scheme name -> how to load it
TEACHER_SCHEMES: dict[str, TeacherScheme] = {}


def register_teacher_scheme(name: str, options: Sequence[str] = (), usage: str = "NAME",
                            model_kwargs: bool = False) -> Callable[[Loader], Loader]:
    """Decorator adding a spec scheme. ``options`` are the query keys it accepts."""

    def deco(fn: Loader) -> Loader:
        if name in TEACHER_SCHEMES:
            raise ValueError(f"teacher scheme {name!r} is already registered")
        TEACHER_SCHEMES[name] = TeacherScheme(fn, frozenset(options), usage, model_kwargs)
        return fn

    return deco
