"""Teacher spec strings, the scheme registry (``timm:``, ``torchvision:``, ``ckpt:`` and any registered by
users) and what scheme loaders share: option parsing, weight files, head and class-count checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import unquote

import torch
from torch import nn

from ..errors import TeacherError, one_line
from ..fileio import sha256_file
from ..folds import FoldSplit
from ..models import ImageModel
from ..textspec import parse_scalar, split_head, split_query

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    #: a folds member loaded alone (``ckpt:DIR/fold0``): not routed, but labelling its training images is called out
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
    """Member ``fold`` of the folds directory ``group``: it trained on the split's samples outside its fold, so it
    labels only the others; ``use_all`` (``?folds=all``) is the user's word that no member saw the data."""

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


# -- what scheme loaders share ------------------------------------------------------------
def scheme_options(spec: TeacherSpec) -> tuple[dict[str, str], dict[str, Any]]:
    """(known options, extra model kwargs); refuses keys the scheme does not take."""
    scheme = TEACHER_SCHEMES[spec.scheme]
    known = {k: v for k, v in spec.options.items() if k in scheme.options}
    extra = {k: parse_scalar(v) for k, v in spec.options.items() if k not in scheme.options}
    if extra and not scheme.model_kwargs:
        allowed = ", ".join(sorted(scheme.options)) or "none"
        raise TeacherError(f"teacher {spec.raw}: unknown option(s) {', '.join(sorted(extra))} (allowed: {allowed})")
    return known, extra


def size_option(spec: TeacherSpec, options: dict[str, str]) -> int | None:
    if "size" not in options:
        return None
    try:
        size = int(options["size"])
    except ValueError:
        size = 0
    if size <= 0:
        raise TeacherError(f"teacher {spec.raw}: size must be a positive integer, got {options['size']!r}")
    return size


def weights_path(spec: TeacherSpec, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise TeacherError(f"teacher {spec.raw}: weights file {path} does not exist")
    return path


def fit_stats(values: Sequence[float], in_chans: int, spec: TeacherSpec, what: str) -> list[float]:
    """Per-channel stats for ``in_chans``: one value is broadcast; RGB stats for one channel averaged."""
    vals = [float(v) for v in values]
    if len(vals) == in_chans:
        return vals
    if len(vals) == 1:
        return vals * in_chans
    if in_chans == 1:
        return [sum(vals) / len(vals)]
    raise TeacherError(f"teacher {spec.raw}: {what} has {len(vals)} values for {in_chans} input channels")


def square_side(spec: TeacherSpec, hw: Sequence[int]) -> int:
    h, w = int(hw[0]), int(hw[1])
    if h != w:
        raise TeacherError(f"teacher {spec.raw}: expects a non-square {h}x{w} input; pass &size=S for a square one")
    return h


class WeightFile:
    """Shapes (and tensors) of a local weight file, keyed as timm's loader sees them: safetensors by
    header, others through timm's ``load_state_dict`` (``weights_only``: never unrestricted pickle)."""

    _PREFIXES = ("_orig_mod.", "module.")

    def __init__(self, spec: TeacherSpec, path: Path) -> None:
        self.spec, self.path = spec, path
        self._state: dict[str, torch.Tensor] | None = None
        self._names: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as f:
                    for raw in f.keys():
                        key = raw
                        while key.startswith(self._PREFIXES):
                            key = key.split(".", 1)[1]
                        self._names[key] = raw
                        self.shapes[key] = tuple(f.get_slice(raw).get_shape())
            else:
                from timm.models import load_state_dict

                self._state = {k: v for k, v in load_state_dict(str(path)).items() if torch.is_tensor(v)}
                self.shapes = {k: tuple(v.shape) for k, v in self._state.items()}
        except Exception as exc:  # corrupt / foreign file: one line naming it
            raise TeacherError(f"teacher {spec.raw}: cannot read weights {path}: {one_line(exc)}") from exc
        if not self.shapes:
            raise TeacherError(f"teacher {spec.raw}: weights file {path} holds no tensors")

    def tensor(self, key: str) -> torch.Tensor:
        if self._state is not None:
            return self._state[key]
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            return f.get_tensor(self._names[key])

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self._state is not None:
            return dict(self._state)
        from safetensors.torch import load_file

        raw = load_file(str(self.path), device="cpu")
        return {key: raw[name] for key, name in self._names.items()}


def build_probe(build: Callable[[int], nn.Module], num_classes: int) -> nn.Module:
    """Build on the meta device (no memory, no init cost), or on the CPU when meta cannot."""
    try:
        with torch.device("meta"):
            return build(num_classes)
    except Exception:
        return build(num_classes)


def _probe_classifier_key(build: Callable[[int], nn.Module]) -> str | None:
    """The ``*.weight`` whose leading dimension follows ``num_classes`` (1000 vs 1001 classes)."""
    a, b = build_probe(build, 1000).state_dict(), build_probe(build, 1001).state_dict()
    return next((key for key, tensor in a.items() if key.endswith(".weight") and key in b
                 and tensor.shape[:1] == (1000,) and b[key].shape[:1] == (1001,)), None)


def classifier_classes(spec: TeacherSpec, weights: WeightFile, candidates: Sequence[str],
                       build: Callable[[int], nn.Module]) -> tuple[str, int]:
    """(classifier weight key, class count) read from the weight file."""
    for name in candidates:
        key = name if name.endswith(".weight") else f"{name}.weight"
        if key in weights.shapes:
            return key, int(weights.shapes[key][0])
    key = _probe_classifier_key(build)
    if key is None or key not in weights.shapes:
        raise TeacherError(f"teacher {spec.raw}: cannot find the classifier weights ({key or 'unknown key'}) in "
                           f"{weights.path}; a headless checkpoint cannot label a dataset")
    return key, int(weights.shapes[key][0])


def first_conv_chans(weights: WeightFile, candidates: Sequence[str], default: int) -> int:
    for name in candidates:
        shape = weights.shapes.get(f"{name}.weight")
        if shape is not None and len(shape) == 4:
            return int(shape[1])
    return default


def check_head(spec: TeacherSpec, model: nn.Module, weights: WeightFile, key: str, label_offset: int = 0) -> None:
    """Final guard against a random head: the model's classifier must equal the file's."""
    state = model.state_dict()
    if key not in state:
        raise TeacherError(f"teacher {spec.raw}: model has no {key} to check against {weights.path}")
    expected = weights.tensor(key)[label_offset:]
    got = state[key].detach().to("cpu")
    if got.shape != expected.shape or not torch.equal(got, expected.to(got.dtype)):
        raise TeacherError(f"teacher {spec.raw}: classifier {key} was not loaded from {weights.path}")


def as_tuple(value: Any) -> tuple[str, ...]:
    return (value,) if value and isinstance(value, str) else tuple(value or ())

