"""The built-in scheme loaders: ``timm:``, ``torchvision:`` and ``ckpt:``. Importing this module
registers them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..checkpoint import WEIGHTS_NAME, load_checkpoint, load_strict, read_config
from ..errors import CheckpointError, DrkitError, TeacherError, one_line
from ..folds import load_split, read_folds
from ..models import ImageModel, ModelConfig, create_model, first_conv
from .spec import (IMAGENET_MEAN, IMAGENET_STD, FoldRoute, Member, TeacherInfo, TeacherSpec, WeightFile, as_tuple,
                   build_probe, check_head, classifier_classes, first_conv_chans, fit_stats, register_teacher_scheme,
                   scheme_options, size_option, square_side, weights_path)


def _timm_cached_file(cfg: dict[str, Any]) -> Path | None:
    """Best effort: the local file timm's hub load used (HF cache first, then torch.hub's)."""
    from huggingface_hub import try_to_load_from_cache  # a dependency of timm

    for filename in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(cfg["hf_hub_id"], filename) if filename and cfg.get("hf_hub_id") else None
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return _torch_hub_cached_file(cfg.get("url"))


def _torch_hub_cached_file(url: str | None) -> Path | None:
    if not url:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return path if path.is_file() else None


@dataclass
class _TimmPlan:
    """What the weights fix before timm builds the model (``overlay``: at a local file; empty for the hub)."""

    num_classes: int
    in_chans: int
    label_offset: int
    overlay: dict[str, Any]
    weights: WeightFile | None = None
    head_key: str | None = None


@register_teacher_scheme("timm", options=("file", "size"), usage="NAME[?file=PATH][&size=S]", model_kwargs=True)
def _load_timm(spec: TeacherSpec) -> Member:
    import timm

    name = spec.target
    if not timm.is_model(name):
        raise TeacherError(f"teacher {spec.raw}: unknown timm model {name!r}")
    options, kwargs = scheme_options(spec)
    size = size_option(spec, options)
    if size is None and isinstance(kwargs.get("img_size"), int):
        size = kwargs["img_size"]
    try:  # ``NAME.tag`` picks a tag; {} when the model has no pretrained cfg
        pcfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # invalid pretrained tag
        raise TeacherError(f"teacher {spec.raw}: {one_line(exc)}") from exc
    cfg = pcfg.to_dict() if pcfg is not None else {}
    plan = _timm_plan(spec, name, cfg, options, kwargs)
    if size is not None:
        plan.overlay["input_size"] = (plan.in_chans, size, size)
        if cfg.get("fixed_input_size") and "img_size" not in kwargs:
            kwargs["img_size"] = size  # e.g. ViT: timm resamples the position embedding on load
    kwargs.pop("in_chans", None)
    kwargs.pop("num_classes", None)
    model = _timm_create(spec, name, plan, kwargs)
    info = _timm_info(spec, name, model, plan)
    return _wrap(model, info, f"timm:{name}", kwargs), info


def _timm_plan(spec: TeacherSpec, name: str, cfg: dict[str, Any], options: dict[str, str],
               kwargs: dict[str, Any]) -> _TimmPlan:
    """Class count and input channels from the ``?file=`` weights (``kwargs`` loses ``in_chans``
    there), else from the pretrained cfg of hub weights."""
    import timm

    label_offset = int(cfg.get("label_offset") or 0)
    cfg_chans = int(tuple(cfg.get("input_size") or (3,))[0])
    if "file" not in options:
        if not (cfg.get("hf_hub_id") or cfg.get("url")):
            raise TeacherError(f"teacher {spec.raw}: timm has no pretrained weights for {name}; use ?file=PATH")
        return _TimmPlan(int(cfg.get("num_classes") or 1000), cfg_chans, label_offset, {})
    weights = WeightFile(spec, weights_path(spec, options["file"]))

    def build(n: int) -> nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=n, **kwargs)

    head_key, file_classes = classifier_classes(spec, weights, as_tuple(cfg.get("classifier")), build)
    num_classes = file_classes - label_offset
    in_chans = first_conv_chans(weights, as_tuple(cfg.get("first_conv")), int(kwargs.pop("in_chans", cfg_chans)))
    # num_classes/input_size in the overlay describe the *file*: timm then keeps its head and
    # stem instead of dropping/adapting them.
    cfg_hw = tuple(cfg.get("input_size") or (3, 224, 224))[1:]
    overlay = dict(file=str(weights.path), num_classes=num_classes, input_size=(in_chans, *cfg_hw))
    return _TimmPlan(num_classes, in_chans, label_offset, overlay, weights, head_key)


def _timm_create(spec: TeacherSpec, name: str, plan: _TimmPlan, kwargs: dict[str, Any]) -> nn.Module:
    """timm builds and loads the model; a ``?file=`` model's head is then checked against the file."""
    import timm

    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=plan.overlay or None,
                                  num_classes=plan.num_classes, in_chans=plan.in_chans, **kwargs)
    except DrkitError:
        raise
    except Exception as exc:
        where = f"from {plan.weights.path}" if plan.weights else "from the hub (no network? use ?file=PATH)"
        raise TeacherError(f"teacher {spec.raw}: cannot load weights {where}: {one_line(exc)}") from exc
    if plan.weights is not None and plan.head_key is not None:
        check_head(spec, model, plan.weights, plan.head_key, plan.label_offset)
    return model


def _timm_info(spec: TeacherSpec, name: str, model: nn.Module, plan: _TimmPlan) -> TeacherInfo:
    """Input config as timm resolves it for the built model, and where its weights came from."""
    from timm.data import resolve_data_config

    data = resolve_data_config(model=model)
    if plan.weights is not None:
        weights_file, marker = str(plan.weights.path), None
    else:
        cached = _timm_cached_file(model.pretrained_cfg)
        weights_file, marker = (str(cached) if cached else None), f"hub:timm:{name}"
    return TeacherInfo(
        spec=spec.raw, num_classes=plan.num_classes, in_chans=plan.in_chans,
        image_size=square_side(spec, data["input_size"][1:]),
        mean=fit_stats(data["mean"], plan.in_chans, spec, "mean"),
        std=fit_stats(data["std"], plan.in_chans, spec, "std"),
        interpolation=str(data.get("interpolation") or "bicubic"), crop_pct=float(data.get("crop_pct") or 1.0),
        weights_file=weights_file, weights_marker=marker)


@register_teacher_scheme("torchvision", options=("file", "size", "weights"),
                         usage="NAME[?file=PATH][&size=S][&weights=TAG]")
def _load_torchvision(spec: TeacherSpec) -> Member:
    import torchvision

    name = spec.target
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise TeacherError(f"teacher {spec.raw}: unknown torchvision classification model {name!r}")
    options, _ = scheme_options(spec)
    size = size_option(spec, options)
    tv_weights = _torchvision_weights(spec, name, options.get("weights", "DEFAULT"))
    loaded = _torchvision_from_file(spec, name, options["file"]) if "file" in options else None
    model, num_classes, in_chans, weights_file = loaded or _torchvision_from_hub(spec, name, tv_weights)
    image_size, mean, std, interp, crop_pct = _torchvision_input_config(tv_weights)
    info = TeacherInfo(
        spec=spec.raw, num_classes=num_classes, in_chans=in_chans, image_size=size or image_size,
        mean=fit_stats(mean, in_chans, spec, "mean"), std=fit_stats(std, in_chans, spec, "std"),
        interpolation=interp, crop_pct=crop_pct, weights_file=weights_file, weights_marker=f"hub:torchvision:{name}")
    return _wrap(model, info, f"torchvision:{name}", {}), info


def _torchvision_weights(spec: TeacherSpec, name: str, tag: str) -> Any:
    """The weights enum member ``tag`` of ``name`` (``DEFAULT`` when not given); None when the
    architecture has no pretrained weights."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None
    try:
        return enum[tag] if tag != "DEFAULT" else enum.DEFAULT
    except KeyError as exc:
        tags = ", ".join(w.name for w in enum)
        raise TeacherError(f"teacher {spec.raw}: unknown weights {tag!r} (known: {tags})") from exc


def _torchvision_from_file(spec: TeacherSpec, name: str, value: str) -> tuple[nn.Module, int, int, str | None]:
    """(model, classes, channels, weights file): an architecture built with the class count and
    channels of a local state dict, which is then loaded strictly."""
    import torchvision

    weights = WeightFile(spec, weights_path(spec, value))

    def build(n: int) -> nn.Module:
        return torchvision.models.get_model(name, weights=None, num_classes=n)

    _, num_classes = classifier_classes(spec, weights, (), build)
    first = first_conv(build_probe(build, 1000))
    in_chans = first_conv_chans(weights, (first[0],) if first else (), 3)
    try:
        model = create_model(f"torchvision:{name}", num_classes=num_classes, in_chans=in_chans)
    except CheckpointError as exc:
        raise TeacherError(f"teacher {spec.raw}: {exc}") from exc
    load_strict(model, weights.state_dict(), f"teacher {spec.raw}: weights {weights.path} do not fit the model",
                TeacherError)
    return model, num_classes, in_chans, str(weights.path)


def _torchvision_from_hub(spec: TeacherSpec, name: str, tv_weights: Any) -> tuple[nn.Module, int, int, str | None]:
    """torchvision's own pretrained weights (downloaded or from the torch.hub cache)."""
    import torchvision

    if tv_weights is None:
        raise TeacherError(f"teacher {spec.raw}: torchvision has no pretrained weights for {name}; use ?file=PATH")
    try:
        model = torchvision.models.get_model(name, weights=tv_weights)
    except Exception as exc:
        raise TeacherError(f"teacher {spec.raw}: cannot load {tv_weights} (no network? use ?file=PATH): "
                           f"{one_line(exc)}") from exc
    cached = _torch_hub_cached_file(tv_weights.url)
    return model, len(tv_weights.meta["categories"]), 3, str(cached) if cached else None


def _torchvision_input_config(tv_weights: Any) -> tuple[int, tuple[float, ...], tuple[float, ...], str, float]:
    """(image size, mean, std, interpolation, crop_pct) from the weights' own eval transform;
    architecture defaults (224, ImageNet stats, bilinear, 0.875) without weights (a local file)."""
    image_size, mean, std, interp, crop_pct = 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875
    if tv_weights is not None:
        tf = tv_weights.transforms()
        crop = int(getattr(tf, "crop_size", [image_size])[0])
        resize = int(getattr(tf, "resize_size", [crop])[0])
        image_size, crop_pct = crop, crop / resize
        mean, std = tuple(getattr(tf, "mean", mean)), tuple(getattr(tf, "std", std))
        mode = getattr(tf, "interpolation", None)
        interp = str(getattr(mode, "value", mode or interp))
    return image_size, mean, std, interp, crop_pct


@register_teacher_scheme("ckpt", options=("folds",), usage="DIR[?folds=all]")
def _load_ckpt(spec: TeacherSpec) -> Member | list[Member]:
    use_all = scheme_options(spec)[0].get("folds")
    if use_all not in (None, "all"):
        raise TeacherError(f"teacher {spec.raw}: folds must be 'all' (use every member), got {use_all!r}")
    try:
        doc = read_folds(spec.target)
    except DrkitError as exc:
        raise TeacherError(f"teacher {spec.raw}: {exc}") from exc
    if doc is None:
        if use_all:
            raise TeacherError(f"teacher {spec.raw}: folds=all applies to a drkit train --folds directory only")
        model, info = _load_ckpt_dir(spec, Path(spec.target), spec.raw)
        info.member_of = _group_of_member(Path(spec.target))
        return model, info
    split = load_split(doc)
    members = []
    for m in doc["members"]:
        model, info = _load_ckpt_dir(spec, Path(spec.target) / m["dir"], f"{spec.raw}#{m['dir']}")
        if m.get("weights_sha256") and m["weights_sha256"] != info.weights_sha256_known:
            raise TeacherError(f"teacher {spec.raw}: member {m['dir']}'s weights (sha256 "
                               f"{str(info.weights_sha256_known)[:12]}…) are not the ones folds.json records "
                               f"({m['weights_sha256'][:12]}…): the folds directory changed after training")
        info.route = FoldRoute(group=spec.raw, fold=int(m["fold"]), split=split, use_all=bool(use_all))
        members.append((model, info))
    return members


def _group_of_member(directory: Path) -> FoldRoute | None:
    """The fold a plain checkpoint holds in the ``--folds`` directory around it, if it is a member:
    loaded alone it labels everything, including the images it trained on."""
    parent = directory.resolve().parent
    try:
        doc = read_folds(parent)
    except DrkitError:
        return None
    for m in (doc or {}).get("members", []):
        if (parent / m["dir"]).resolve() == directory.resolve():
            return FoldRoute(group=f"ckpt:{parent}", fold=int(m["fold"]), split=load_split(doc))
    return None


def _load_ckpt_dir(spec: TeacherSpec, directory: Path, name: str) -> Member:
    try:
        model, config = load_checkpoint(directory)
        _, doc = read_config(directory)
    except CheckpointError as exc:
        raise TeacherError(f"teacher {spec.raw}: {exc}") from exc
    recorded = doc.get("weights_sha256")  # load_checkpoint verified it against the file
    return model, TeacherInfo(
        spec=name, num_classes=config.num_classes, in_chans=config.in_chans, image_size=config.image_size,
        mean=list(config.mean), std=list(config.std), interpolation=config.interpolation,
        crop_pct=float(config.extra.get("crop_pct", 1.0)), classes=list(config.classes) or None,
        weights_file=str(directory / str(doc.get("weights", WEIGHTS_NAME))),
        weights_sha256_known=str(recorded) if recorded else None)


def _wrap(backbone: nn.Module, info: TeacherInfo, model_name: str, kwargs: dict[str, Any]) -> ImageModel:
    config = ModelConfig(
        model=model_name, num_classes=info.num_classes, in_chans=info.in_chans, image_size=info.image_size,
        mean=info.mean, std=info.std, interpolation=info.interpolation,
        model_kwargs={k: v for k, v in kwargs.items() if isinstance(v, (int, float, bool, str))},
        extra={"crop_pct": info.crop_pct, "teacher_spec": info.spec})
    return ImageModel(backbone, info.mean, info.std, config=config)
