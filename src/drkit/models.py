"""Model factory (:data:`MODEL_FAMILIES`: ``drkit_*`` small CNNs, ``torchvision:NAME``, ``timm:NAME`` or a
bare name) and the input-normalising wrapper every drkit model goes through. Why normalise inside
:class:`ImageModel`: "what the teacher saw" is then the [0, 1] tensor, and mean/std travel with the
weights in :class:`ModelConfig` instead of living in every data pipeline.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .errors import CheckpointError, one_line

__all__ = ["MODELS", "MODEL_FAMILIES", "DrkitCNN", "ImageModel", "ModelConfig", "create_model", "list_models",
           "register_model"]

ModelFn = Callable[..., nn.Module]

#: drkit's own architectures: name -> builder(num_classes, in_chans, **kwargs).
MODELS: dict[str, ModelFn] = {}


def register_model(fn: ModelFn) -> ModelFn:
    """Register ``fn`` under its ``__name__`` (which must start with ``drkit_``)."""
    name = fn.__name__
    if not name.startswith("drkit_"):
        raise ValueError(f"drkit model names start with 'drkit_', got {name!r}")
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names in drkit's own registry (timm and torchvision names are not enumerated here)."""
    return sorted(MODELS)


def _conv_bn_act(cin: int, cout: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if act else []))


class _ResBlock(nn.Module):
    """Two 3x3 conv-bn with an identity skip (constant width, stride 1)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_act(width, width)
        self.conv2 = _conv_bn_act(width, width, act=False)
        # Zero-init the last BN gamma: each block starts as identity, which trains more stably.
        nn.init.zeros_(self.conv2[1].weight)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class DrkitCNN(nn.Module):
    """Conv-bn-relu stages, each ``(width, stride, residual_blocks)``: a transition conv then that many
    :class:`_ResBlock`; global average pool, linear head. ``get_classifier``/``reset_classifier``
    follow timm so teacher and training code treat every backbone alike."""

    def __init__(self, stem: tuple[int, int], stages: Sequence[tuple[int, int, int]], num_classes: int = 10,
                 in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1 or in_chans < 1:
            raise ValueError(f"num_classes and in_chans must be >= 1, got {num_classes}, {in_chans}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem = _conv_bn_act(in_chans, *stem)
        blocks: list[nn.Module] = []
        width = stem[0]
        for out_width, stride, n_res in stages:
            blocks.append(_conv_bn_act(width, out_width, stride))
            blocks.extend(_ResBlock(out_width) for _ in range(n_res))
            width = out_width
        self.stages = nn.Sequential(*blocks)
        self.num_features = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(width, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.pool(self.forward_features(x)).flatten(1)))


@register_model
def drkit_cnn_tiny(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> DrkitCNN:
    """~80k params, ~8 MMACs at 32 px: stride-2 stem, four conv-bn-relu layers. A fast student."""
    return DrkitCNN((24, 2), [(48, 1, 0), (64, 2, 0), (64, 1, 0)], num_classes, in_chans, **kwargs)


@register_model
def drkit_cnn_small(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> DrkitCNN:
    """~0.46M params, ~50 MMACs at 32 px: full-res stem, two stride-2 stages with a residual
    block each. Strong enough to be a teacher on Fashion-MNIST at 28–32 px on a CPU."""
    return DrkitCNN((32, 1), [(64, 2, 1), (128, 2, 1)], num_classes, in_chans, **kwargs)


def _create_drkit(name: str, num_classes: int, in_chans: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    if name not in MODELS:
        raise CheckpointError(f"unknown drkit model {name!r}; known: {', '.join(list_models())}")
    if pretrained:
        raise CheckpointError(f"drkit model {name!r} has no pretrained weights; train one or use ckpt:DIR")
    return MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _adapt_first_conv(model: nn.Module, in_chans: int) -> None:
    """Replace the first ``Conv2d`` (the input conv of every torchvision classifier) by one taking
    ``in_chans`` channels, RGB weights folded by timm's ``adapt_input_conv`` (1 channel: summed, so a
    grayscale input replicated to RGB and the adapted conv give the same response)."""
    found = first_conv(model)
    if found is None:
        raise CheckpointError(f"cannot adapt {type(model).__name__} to in_chans={in_chans}: no Conv2d found")
    conv_name, conv = found
    if conv.in_channels == in_chans:
        return
    if conv.groups != 1:
        raise CheckpointError(f"cannot adapt grouped input conv {conv_name!r} to in_chans={in_chans}")
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                    conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,  # type: ignore[arg-type]
                    device=conv.weight.device, dtype=conv.weight.dtype)
    from timm.models import adapt_input_conv

    with torch.no_grad():
        new.weight.copy_(adapt_input_conv(in_chans, conv.weight.detach()))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)  # type: ignore[union-attr]
    parent_name, _, child = conv_name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _create_torchvision(name: str, num_classes: int, in_chans: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``pretrained=True`` loads the DEFAULT weights (``num_classes`` must then be theirs);
    ``in_chans != 3`` replaces the first conv (:func:`_adapt_first_conv`)."""
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise CheckpointError(f"unknown torchvision classification model {name!r}")
    model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, num_classes=num_classes,
                                         **kwargs)
    if in_chans != 3:
        _adapt_first_conv(model, in_chans)
    return model


def _create_timm(name: str, num_classes: int, in_chans: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``kwargs`` go to the model (e.g. ``img_size``, ``embed_dim``, ``depth`` for tiny ViTs)."""
    import timm

    if not timm.is_model(name):
        raise CheckpointError(f"unknown model {name!r}: not a drkit model ({', '.join(list_models())}), "
                              "a timm model, or torchvision:NAME")
    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


#: prefix (before ``:``) -> factory. A bare name is a drkit model if registered, else timm.
MODEL_FAMILIES: dict[str, Callable[..., nn.Module]] = {"drkit": _create_drkit, "torchvision": _create_torchvision,
                                                       "timm": _create_timm}


def split_model_name(name: str) -> tuple[str, str]:
    """``"torchvision:resnet18"`` -> ``("torchvision", "resnet18")``; bare names resolve to
    ``drkit`` when registered, else ``timm``."""
    family, sep, rest = name.partition(":")
    if not sep:
        return ("drkit" if name in MODELS or name.startswith("drkit_") else "timm"), name
    if family not in MODEL_FAMILIES:
        raise CheckpointError(f"unknown model family {family!r} in {name!r}; use one of: "
                              f"{', '.join(sorted(MODEL_FAMILIES))}")
    return family, rest


def create_model(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, seed: int | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build a backbone (logits out, expects *normalised* input; wrap in :class:`ImageModel`); ``seed``
    makes the initialisation deterministic inside a forked RNG, leaving the global torch RNG as it was."""
    family, arch = split_model_name(name)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        try:  # a wrong --model-kwargs key or value, weights that cannot be fetched: one line, any family
            return MODEL_FAMILIES[family](arch, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained,
                                          **kwargs)
        except (ValueError, TypeError, RuntimeError, AssertionError, OSError) as exc:
            raise CheckpointError(f"cannot build {family}:{arch}: {one_line(exc)}") from exc


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and feed it (``config.json`` in a checkpoint);
    ``image_size`` is the square input side the model was trained/evaluated at."""

    model: str
    num_classes: int
    in_chans: int = 3
    image_size: int = 224
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    interpolation: str = "bilinear"
    classes: list[str] = field(default_factory=list)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    source_fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean, self.std = [float(v) for v in self.mean], [float(v) for v in self.std]
        self.classes = [str(c) for c in self.classes]
        self.num_classes, self.in_chans, self.image_size = map(int, (self.num_classes, self.in_chans, self.image_size))
        if not (isinstance(self.model_kwargs, dict) and self.image_size >= 1 and all(s > 0 for s in self.std)
                and {len(self.mean), len(self.std)} <= {1, self.in_chans}):
            raise ValueError(f"model_kwargs must be an object, image_size positive, std > 0, and mean and std have 1 "
                             f"or in_chans ({self.in_chans}) values")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Keys that are not fields (file-format bookkeeping) are ignored; missing required ones are refused."""
        missing = [n for n in ("model", "num_classes") if n not in data]
        if missing:
            raise CheckpointError(f"model config lacks {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _stat_buffer(values: Sequence[float], in_chans: int, what: str) -> torch.Tensor:
    vals = [float(v) for v in values]
    vals = vals * in_chans if len(vals) == 1 else vals
    if len(vals) != in_chans:
        raise ValueError(f"{what} has {len(vals)} values but the model takes {in_chans} channels")
    return torch.tensor(vals, dtype=torch.float32).view(1, in_chans, 1, 1)


class ImageModel(nn.Module):
    """Backbone + input normalisation: ``forward(x)`` takes float NCHW in [0, 1], returns logits;
    ``mean``/``std`` are non-persistent buffers, so checkpoints hold the bare backbone's state dict,
    loadable into timm/torchvision directly."""

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float],
                 config: ModelConfig | None = None, in_chans: int | None = None) -> None:
        super().__init__()
        if in_chans is None:
            in_chans = config.in_chans if config is not None else max(len(mean), len(std))
        self.backbone = backbone
        self.in_chans = in_chans
        self.register_buffer("mean", _stat_buffer(mean, in_chans, "mean"), persistent=False)
        self.register_buffer("std", _stat_buffer(std, in_chans, "std"), persistent=False)
        self.config = config

    @classmethod
    def from_config(cls, config: ModelConfig, pretrained: bool = False, seed: int | None = None) -> "ImageModel":
        """Build the backbone named by ``config`` and wrap it."""
        backbone = create_model(config.model, config.num_classes, config.in_chans, pretrained=pretrained, seed=seed,
                                **config.model_kwargs)
        return cls(backbone, config.mean, config.std, config=config)

    @property
    def num_classes(self) -> int | None:
        if self.config is not None:
            return self.config.num_classes
        n = getattr(self.backbone, "num_classes", None)
        return int(n) if isinstance(n, int) else None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))
