"""Teacher specs -> an ensemble module that maps [0, 1] images to averaged probabilities.

Spec schemes live in a registry (:data:`TEACHER_SCHEMES`, extended with
:func:`register_teacher_scheme`):

``timm:NAME[?file=PATH][&size=S][&KEY=VALUE…]``
    timm weights through timm's own pretrained machinery. Without ``file`` the hub weights of the
    model's default (or given ``NAME.tag``) pretrained cfg are fetched; with ``file`` a local
    ``.safetensors``/``.pth`` is loaded via ``pretrained_cfg_overlay=dict(file=PATH, …)``. Other
    keys become ``timm.create_model`` keyword arguments (ints/floats/bools parsed), e.g.
    ``&img_size=32&patch_size=4&depth=2`` for a small ViT.
``torchvision:NAME[?file=PATH][&size=S][&weights=TAG]``
    torchvision weights enum (``DEFAULT`` unless ``weights=TAG``), or a local state dict file.
``ckpt:DIR``
    a drkit checkpoint (``drkit train`` output) via :func:`drkit.checkpoint.load_checkpoint`.

**The class count comes from the weights.** For ``?file=`` the classifier tensor's shape is read
from the file (key from timm's ``pretrained_cfg['classifier']``, or found by probing the
architecture) and the model is created with that many classes, so timm never silently swaps in a
random head; after loading, the head is compared with the file's tensor as a final guard. For hub
weights the count is the pretrained cfg's / the weights' category list. ``load_teacher(…,
num_classes=N)`` then refuses any member predicting a different number of classes.

Every member is an :class:`~drkit.models.ImageModel` carrying its own mean/std, so members with
different normalisations ensemble fine; input size, channel count and class count must agree.

``weights_sha256`` in :meth:`TeacherEnsemble.describe` is the sha256 of the weight file: the
checkpoint's ``model.safetensors`` (verified against its config), the ``?file=``, or, for hub
weights, the file in the local timm / Hugging Face / torch.hub cache when it can be found there.
When it cannot, the field holds the marker string ``"hub:<scheme>:<name>"`` (never hex, so it is
never mistaken for a digest).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import unquote, urlparse

import torch
from torch import nn

from drkit.checkpoint import WEIGHTS_NAME, load_checkpoint, read_config, sha256_file
from drkit.errors import CheckpointError, DrkitError, TeacherError
from drkit.errors import one_line as _one_line
from drkit.models import ImageModel, ModelConfig, _first_conv, create_model

__all__ = [
    "TEACHER_SCHEMES",
    "TeacherEnsemble",
    "TeacherInfo",
    "TeacherSpec",
    "load_teacher",
    "parse_teacher_spec",
    "predict",
    "register_teacher_scheme",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# Specs and the scheme registry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherSpec:
    """A parsed spec: ``scheme:target?key=value&key=value`` (values may use %-escapes)."""

    raw: str
    scheme: str
    target: str
    options: dict[str, str] = field(default_factory=dict)


def parse_teacher_spec(spec: str) -> TeacherSpec:
    """Split a spec string. Unknown schemes raise :class:`TeacherError` listing the known ones."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in TEACHER_SCHEMES:
        raise TeacherError(
            f"unknown teacher spec {spec!r}; use one of: "
            + ", ".join(f"{s}:{TEACHER_SCHEMES[s].usage}" for s in sorted(TEACHER_SCHEMES))
        )
    target, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise TeacherError(f"teacher {spec}: option {item!r} is not KEY=VALUE")
        options[unquote(key)] = unquote(value)
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

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weight file (computed once, lazily), else the hub marker string."""
        if self.weights_sha256_known is None:
            if self.weights_file is not None:
                self.weights_sha256_known = sha256_file(self.weights_file)
            else:
                self.weights_sha256_known = self.weights_marker or f"hub:{self.spec}"
        return self.weights_sha256_known

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "weights_sha256": self.weights_sha256,
            "weights_file": self.weights_file,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }


Member = tuple[ImageModel, TeacherInfo]
Loader = Callable[[TeacherSpec], Member]


@dataclass(frozen=True)
class TeacherScheme:
    loader: Loader
    options: frozenset[str]
    usage: str
    model_kwargs: bool = False  # pass unknown options on as model kwargs


#: scheme name -> how to load it
TEACHER_SCHEMES: dict[str, TeacherScheme] = {}


def register_teacher_scheme(
    name: str, options: Sequence[str] = (), usage: str = "NAME", model_kwargs: bool = False
) -> Callable[[Loader], Loader]:
    """Decorator adding a spec scheme. ``options`` are the query keys it accepts."""

    def deco(fn: Loader) -> Loader:
        if name in TEACHER_SCHEMES:
            raise ValueError(f"teacher scheme {name!r} is already registered")
        TEACHER_SCHEMES[name] = TeacherScheme(fn, frozenset(options), usage, model_kwargs)
        return fn

    return deco


# ----------------------------------------------------------------------------------------------
# Helpers shared by loaders
# ----------------------------------------------------------------------------------------------


def _parse_value(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _split_options(spec: TeacherSpec) -> tuple[dict[str, str], dict[str, Any]]:
    """(known options, extra model kwargs); refuses keys the scheme does not take."""
    scheme = TEACHER_SCHEMES[spec.scheme]
    known = {k: v for k, v in spec.options.items() if k in scheme.options}
    extra = {k: _parse_value(v) for k, v in spec.options.items() if k not in scheme.options}
    if extra and not scheme.model_kwargs:
        allowed = ", ".join(sorted(scheme.options)) or "none"
        raise TeacherError(f"teacher {spec.raw}: unknown option(s) {', '.join(sorted(extra))} (allowed: {allowed})")
    return known, extra


def _size_option(spec: TeacherSpec, options: dict[str, str]) -> int | None:
    if "size" not in options:
        return None
    try:
        size = int(options["size"])
    except ValueError:
        size = 0
    if size <= 0:
        raise TeacherError(f"teacher {spec.raw}: size must be a positive integer, got {options['size']!r}")
    return size


def _weights_path(spec: TeacherSpec, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise TeacherError(f"teacher {spec.raw}: weights file {path} does not exist")
    return path


def _fit_stats(values: Sequence[float], in_chans: int, spec: TeacherSpec, what: str) -> list[float]:
    """Per-channel stats for ``in_chans``: one value is broadcast; RGB stats for a one-channel
    model are averaged (a grayscale model fine-tuned with ImageNet defaults)."""
    vals = [float(v) for v in values]
    if len(vals) == in_chans:
        return vals
    if len(vals) == 1:
        return vals * in_chans
    if in_chans == 1:
        return [sum(vals) / len(vals)]
    raise TeacherError(f"teacher {spec.raw}: {what} has {len(vals)} values for {in_chans} input channels")


def _square(spec: TeacherSpec, hw: Sequence[int]) -> int:
    h, w = int(hw[0]), int(hw[1])
    if h != w:
        raise TeacherError(f"teacher {spec.raw}: expects a non-square {h}x{w} input; pass &size=S for a square one")
    return h


class _WeightFile:
    """Shapes (and single tensors) of a local weight file, keyed like timm's loader sees them.

    safetensors: header only (no tensor is read until asked for). Other files: the state dict as
    timm's ``load_state_dict`` returns it (``torch.load(weights_only=True)``, EMA/``state_dict``
    unwrapping, DDP prefixes stripped) — never unrestricted pickle.
    """

    _PREFIXES = ("_orig_mod.", "module.")

    def __init__(self, spec: TeacherSpec, path: Path) -> None:
        self.spec = spec
        self.path = path
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
            raise TeacherError(f"teacher {spec.raw}: cannot read weights {path}: {_one_line(exc)}") from exc
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


def _build_probe(build: Callable[[int], nn.Module], num_classes: int) -> nn.Module:
    """Build cheaply on the meta device (no memory, no init cost); some architectures compute
    Python numbers from tensors at init, which meta cannot do — those are built on CPU."""
    try:
        with torch.device("meta"):
            return build(num_classes)
    except Exception:
        return build(num_classes)


def _probe_classifier_key(build: Callable[[int], nn.Module]) -> str | None:
    """The classifier weight key of an architecture: the ``*.weight`` whose leading dimension
    follows ``num_classes`` (found by building with 1000 and 1001 classes and diffing)."""
    a = _build_probe(build, 1000).state_dict()
    b = _build_probe(build, 1001).state_dict()
    for key, tensor in a.items():
        if key.endswith(".weight") and key in b and tensor.shape[:1] == (1000,) and b[key].shape[:1] == (1001,):
            return key
    return None


def _classifier_classes(
    spec: TeacherSpec, weights: _WeightFile, candidates: Sequence[str], build: Callable[[int], nn.Module]
) -> tuple[str, int]:
    """(classifier weight key, class count) read from the weight file."""
    for name in candidates:
        key = name if name.endswith(".weight") else f"{name}.weight"
        if key in weights.shapes:
            return key, int(weights.shapes[key][0])
    key = _probe_classifier_key(build)
    if key is None or key not in weights.shapes:
        raise TeacherError(
            f"teacher {spec.raw}: cannot find the classifier weights ({key or 'unknown key'}) in {weights.path}; "
            "a headless checkpoint cannot label a dataset"
        )
    return key, int(weights.shapes[key][0])


def _first_conv_chans(weights: _WeightFile, candidates: Sequence[str], default: int) -> int:
    for name in candidates:
        shape = weights.shapes.get(f"{name}.weight")
        if shape is not None and len(shape) == 4:
            return int(shape[1])
    return default


def _check_head(spec: TeacherSpec, model: nn.Module, weights: _WeightFile, key: str, label_offset: int = 0) -> None:
    """Final guard against a random head: the model's classifier must equal the file's."""
    state = model.state_dict()
    if key not in state:
        raise TeacherError(f"teacher {spec.raw}: model has no {key} to check against {weights.path}")
    expected = weights.tensor(key)[label_offset:]
    got = state[key].detach().to("cpu")
    if got.shape != expected.shape or not torch.equal(got, expected.to(got.dtype)):
        raise TeacherError(f"teacher {spec.raw}: classifier {key} was not loaded from {weights.path}")


def _as_tuple(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


# ----------------------------------------------------------------------------------------------
# Schemes
# ----------------------------------------------------------------------------------------------


def _timm_cached_file(cfg: dict[str, Any]) -> Path | None:
    """Best effort: the local file timm's hub load used (HF cache first, then torch.hub's)."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            pass
        else:
            for filename in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"):
                if filename:
                    found = try_to_load_from_cache(hub_id, filename)
                    if isinstance(found, str) and os.path.isfile(found):
                        return Path(found)
    return _torch_hub_cached_file(cfg.get("url"))


def _torch_hub_cached_file(url: str | None) -> Path | None:
    if not url:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return path if path.is_file() else None


@register_teacher_scheme("timm", options=("file", "size"), usage="NAME[?file=PATH][&size=S]", model_kwargs=True)
def _load_timm(spec: TeacherSpec) -> Member:
    import timm
    from timm.data import resolve_data_config

    name = spec.target
    if not timm.is_model(name):
        raise TeacherError(f"teacher {spec.raw}: unknown timm model {name!r}")
    options, kwargs = _split_options(spec)
    size = _size_option(spec, options)
    if size is None and isinstance(kwargs.get("img_size"), int):
        size = kwargs["img_size"]
    try:
        pcfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # invalid pretrained tag
        raise TeacherError(f"teacher {spec.raw}: {_one_line(exc)}") from exc
    cfg: dict[str, Any] = pcfg.to_dict() if pcfg is not None else {}
    cfg_hw = tuple(cfg.get("input_size") or (3, 224, 224))[1:]
    label_offset = int(cfg.get("label_offset") or 0)

    weights: _WeightFile | None = None
    head_key: str | None = None
    overlay: dict[str, Any] = {}
    if "file" in options:
        weights = _WeightFile(spec, _weights_path(spec, options["file"]))

        def build(n: int) -> nn.Module:
            return timm.create_model(name, pretrained=False, num_classes=n, **kwargs)

        head_key, file_classes = _classifier_classes(spec, weights, _as_tuple(cfg.get("classifier")), build)
        num_classes = file_classes - label_offset
        in_chans = _first_conv_chans(weights, _as_tuple(cfg.get("first_conv")), int(kwargs.pop("in_chans", tuple(cfg.get("input_size") or (3,))[0])))
        # num_classes/input_size in the overlay describe the *file*: timm then keeps its head and
        # stem instead of dropping/adapting them.
        overlay = dict(file=str(weights.path), num_classes=num_classes, input_size=(in_chans, *cfg_hw))
    else:
        if not (cfg.get("hf_hub_id") or cfg.get("url")):
            raise TeacherError(f"teacher {spec.raw}: timm has no pretrained weights for {name}; use ?file=PATH")
        num_classes = int(cfg.get("num_classes") or 1000)
        in_chans = int(tuple(cfg.get("input_size") or (3,))[0])
    if size is not None:
        overlay["input_size"] = (in_chans, size, size)
        if cfg.get("fixed_input_size") and "img_size" not in kwargs:
            kwargs["img_size"] = size  # e.g. ViT: timm resamples the position embedding on load
    kwargs.pop("in_chans", None)
    kwargs.pop("num_classes", None)

    try:
        model = timm.create_model(
            name,
            pretrained=True,
            pretrained_cfg_overlay=overlay or None,
            num_classes=num_classes,
            in_chans=in_chans,
            **kwargs,
        )
    except DrkitError:
        raise
    except Exception as exc:
        where = f"from {weights.path}" if weights else "from the hub (no network? use ?file=PATH)"
        raise TeacherError(f"teacher {spec.raw}: cannot load weights {where}: {_one_line(exc)}") from exc
    if weights is not None and head_key is not None:
        _check_head(spec, model, weights, head_key, label_offset)

    data = resolve_data_config(model=model)
    image_size = _square(spec, data["input_size"][1:])
    info = TeacherInfo(
        spec=spec.raw,
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=image_size,
        mean=_fit_stats(data["mean"], in_chans, spec, "mean"),
        std=_fit_stats(data["std"], in_chans, spec, "std"),
        interpolation=str(data.get("interpolation") or "bicubic"),
        crop_pct=float(data.get("crop_pct") or 1.0),
    )
    if weights is not None:
        info.weights_file = str(weights.path)
    else:
        cached = _timm_cached_file(model.pretrained_cfg)
        info.weights_file = str(cached) if cached else None
        info.weights_marker = f"hub:timm:{name}"
    return _wrap(model, info, f"timm:{name}", kwargs), info


@register_teacher_scheme(
    "torchvision", options=("file", "size", "weights"), usage="NAME[?file=PATH][&size=S][&weights=TAG]"
)
def _load_torchvision(spec: TeacherSpec) -> Member:
    import torchvision

    name = spec.target
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise TeacherError(f"teacher {spec.raw}: unknown torchvision classification model {name!r}")
    options, _ = _split_options(spec)
    size = _size_option(spec, options)
    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        enum = None
    tv_weights = None
    if enum is not None:
        tag = options.get("weights", "DEFAULT")
        try:
            tv_weights = enum[tag] if tag != "DEFAULT" else enum.DEFAULT
        except KeyError as exc:
            tags = ", ".join(w.name for w in enum)
            raise TeacherError(f"teacher {spec.raw}: unknown weights {tag!r} (known: {tags})") from exc

    if "file" in options:
        weights = _WeightFile(spec, _weights_path(spec, options["file"]))

        def build(n: int) -> nn.Module:
            return torchvision.models.get_model(name, weights=None, num_classes=n)

        head_key, num_classes = _classifier_classes(spec, weights, (), build)
        first = _first_conv(_build_probe(build, 1000))
        in_chans = _first_conv_chans(weights, (first[0],) if first else (), 3)
        try:
            model = create_model(f"torchvision:{name}", num_classes=num_classes, in_chans=in_chans)
        except CheckpointError as exc:
            raise TeacherError(f"teacher {spec.raw}: {exc}") from exc
        _load_strict(spec, model, weights)
        weights_file: str | None = str(weights.path)
    else:
        if tv_weights is None:
            raise TeacherError(f"teacher {spec.raw}: torchvision has no pretrained weights for {name}; use ?file=PATH")
        num_classes = len(tv_weights.meta["categories"])
        in_chans = 3
        try:
            model = torchvision.models.get_model(name, weights=tv_weights)
        except Exception as exc:
            raise TeacherError(
                f"teacher {spec.raw}: cannot load {tv_weights} (no network? use ?file=PATH): {_one_line(exc)}"
            ) from exc
        cached = _torch_hub_cached_file(tv_weights.url)
        weights_file = str(cached) if cached else None

    # Input config from the weights' own eval transform (architecture defaults for a local file).
    image_size, mean, std, interp, crop_pct = 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875
    if tv_weights is not None:
        tf = tv_weights.transforms()
        crop = int(getattr(tf, "crop_size", [image_size])[0])
        resize = int(getattr(tf, "resize_size", [crop])[0])
        image_size, crop_pct = crop, crop / resize
        mean, std = tuple(getattr(tf, "mean", mean)), tuple(getattr(tf, "std", std))
        mode = getattr(tf, "interpolation", None)
        interp = str(getattr(mode, "value", mode or interp))
    info = TeacherInfo(
        spec=spec.raw,
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=size or image_size,
        mean=_fit_stats(mean, in_chans, spec, "mean"),
        std=_fit_stats(std, in_chans, spec, "std"),
        interpolation=interp,
        crop_pct=crop_pct,
        weights_file=weights_file,
        weights_marker=f"hub:torchvision:{name}",
    )
    return _wrap(model, info, f"torchvision:{name}", {}), info


def _load_strict(spec: TeacherSpec, model: nn.Module, weights: _WeightFile) -> None:
    from drkit.checkpoint import _mismatch_reason

    state = weights.state_dict()
    reason = _mismatch_reason(model.state_dict(), state)
    if reason:
        raise TeacherError(f"teacher {spec.raw}: weights {weights.path} do not fit the model: {reason}")
    model.load_state_dict(state, strict=True)


@register_teacher_scheme("ckpt", usage="DIR")
def _load_ckpt(spec: TeacherSpec) -> Member:
    _split_options(spec)
    try:
        model, config = load_checkpoint(spec.target)
        _, doc = read_config(spec.target)
    except CheckpointError as exc:
        raise TeacherError(f"teacher {spec.raw}: {exc}") from exc
    weights = Path(spec.target) / str(doc.get("weights", WEIGHTS_NAME))
    recorded = doc.get("weights_sha256")  # load_checkpoint verified it against the file
    info = TeacherInfo(
        spec=spec.raw,
        num_classes=config.num_classes,
        in_chans=config.in_chans,
        image_size=config.image_size,
        mean=list(config.mean),
        std=list(config.std),
        interpolation=config.interpolation,
        crop_pct=float(config.extra.get("crop_pct", 1.0)),
        classes=list(config.classes) or None,
        weights_file=str(weights),
        weights_sha256_known=str(recorded) if recorded else None,
    )
    return model, info


def _wrap(backbone: nn.Module, info: TeacherInfo, model_name: str, kwargs: dict[str, Any]) -> ImageModel:
    config = ModelConfig(
        model=model_name,
        num_classes=info.num_classes,
        in_chans=info.in_chans,
        image_size=info.image_size,
        mean=info.mean,
        std=info.std,
        interpolation=info.interpolation,
        model_kwargs={k: v for k, v in kwargs.items() if isinstance(v, (int, float, bool, str))},
        extra={"crop_pct": info.crop_pct, "teacher_spec": info.spec},
    )
    return ImageModel(backbone, info.mean, info.std, config=config)


# ----------------------------------------------------------------------------------------------
# Ensemble
# ----------------------------------------------------------------------------------------------


def _amp_context(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """CUDA: autocast in bf16 where supported, else fp16. Elsewhere full fp32 (CPU bf16 would
    change the labels for no speed-up worth having)."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


class TeacherEnsemble(nn.Module):
    """Members' softmax probabilities averaged in float32: ``forward(x01) -> (N, num_classes)``.

    Always in eval mode (``train()`` is a no-op: a teacher's BatchNorm statistics must never
    move), parameters frozen, channels_last. Runs under ``torch.no_grad`` rather than
    ``inference_mode`` so online-KD losses may use the probabilities as targets.
    """

    def __init__(self, members: Sequence[ImageModel], infos: Sequence[TeacherInfo], amp: bool = True) -> None:
        super().__init__()
        if not members or len(members) != len(infos):
            raise TeacherError("a teacher ensemble needs at least one member")
        first = infos[0]
        for info in infos[1:]:
            for attr, what in (("image_size", "input size"), ("in_chans", "input channels"), ("num_classes", "classes")):
                a, b = getattr(first, attr), getattr(info, attr)
                if a != b:
                    raise TeacherError(
                        f"teachers disagree on {what}: {first.spec} has {a}, {info.spec} has {b}"
                        + ("; align them with &size=S" if attr == "image_size" else "")
                    )
        known = [i for i in infos if i.classes]
        for info in known[1:]:
            if info.classes != known[0].classes:
                raise TeacherError(f"teachers disagree on class names: {known[0].spec} vs {info.spec}")
        self.members = nn.ModuleList(members)
        self.infos = list(infos)
        self.specs = [i.spec for i in infos]
        self.image_size = first.image_size
        self.in_chans = first.in_chans
        self.num_classes = first.num_classes
        self.classes: list[str] | None = list(known[0].classes) if known else None  # type: ignore[arg-type]
        self.interpolation = first.interpolation  # the first member's; members may differ
        self.amp = amp
        for p in self.parameters():
            p.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        super().train(False)

    def train(self, mode: bool = True) -> "TeacherEnsemble":
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def describe(self) -> list[dict[str, Any]]:
        """Per-member provenance and input config, JSON-ready (the store manifest's teachers)."""
        return [info.describe() for info in self.infos]

    def _check_input(self, x: torch.Tensor) -> None:
        # The spatial size is not enforced: ``image_size`` is the members' native size, and a
        # caller may deliberately feed another one (``drkit reinforce --image-size``). Fixed-size
        # members (ViT) then fail in their own forward.
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            s = self.image_size
            raise TeacherError(
                f"teacher input must be N x {self.in_chans} x H x W (native {s} x {s}), "
                f"got {' x '.join(map(str, x.shape))}"
            )

    @torch.no_grad()
    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """``x01``: float NCHW in [0, 1] (uint8 is accepted and divided by 255)."""
        self._check_input(x01)
        device = self.device
        x = x01.to(device, non_blocking=True)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        x = x.contiguous(memory_format=torch.channels_last)
        total: torch.Tensor | None = None
        for member in self.members:
            with _amp_context(device, self.amp):
                logits = member(x)
            probs = logits.float().softmax(dim=-1)
            total = probs if total is None else total + probs
        assert total is not None
        return total / len(self.members)


def predict(ensemble: TeacherEnsemble, x01_batch: torch.Tensor, out_device: str | torch.device = "cpu") -> torch.Tensor:
    """Probabilities for a batch on any device, returned float32 on ``out_device``."""
    return ensemble(x01_batch).to(out_device)


def _check_classes(info: TeacherInfo, classes: list[str]) -> None:
    if info.classes is None or info.classes == classes:
        return
    diff = next((i for i, (a, b) in enumerate(zip(info.classes, classes)) if a != b), min(len(info.classes), len(classes)))
    ours = info.classes[diff] if diff < len(info.classes) else "<end>"
    theirs = classes[diff] if diff < len(classes) else "<end>"
    raise TeacherError(
        f"teacher {info.spec} was trained on other classes than the source: class {diff} is {ours!r} vs {theirs!r}"
    )


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise TeacherError(f"invalid device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TeacherError(f"device {device} requested but CUDA is not available")
    return dev


def load_teacher(
    specs: str | Sequence[str],
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    amp: bool = True,
) -> TeacherEnsemble:
    """Load one or several teacher specs into a :class:`TeacherEnsemble` on ``device``.

    ``num_classes`` (or ``len(classes)``) is the source's class count: a member predicting any
    other count is refused. ``classes`` also has to match the names a ``ckpt:`` teacher was
    trained on (hub teachers carry no comparable names). ``amp`` enables CUDA autocast.
    """
    spec_list = [specs] if isinstance(specs, str) else list(specs)
    if not spec_list:
        raise TeacherError("no teacher given")
    class_list = list(classes) if classes is not None else None
    if class_list is not None:
        if num_classes is not None and num_classes != len(class_list):
            raise TeacherError(f"num_classes={num_classes} but {len(class_list)} class names were given")
        num_classes = len(class_list)
    dev = _resolve_device(device)
    members: list[ImageModel] = []
    infos: list[TeacherInfo] = []
    for raw in spec_list:
        spec = parse_teacher_spec(raw)
        model, info = TEACHER_SCHEMES[spec.scheme].loader(spec)
        if num_classes is not None and info.num_classes != num_classes:
            raise TeacherError(f"teacher {raw} predicts {info.num_classes} classes but the source has {num_classes}")
        if class_list is not None:
            _check_classes(info, class_list)
        members.append(model.eval())
        infos.append(info)
    return TeacherEnsemble(members, infos, amp=amp).to(dev)

