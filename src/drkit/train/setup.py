"""Everything a run needs before its first step, resolved once from a :class:`TrainConfig`:
sources, mode, dataset, loss, model (input statistics, ``--init``), device and precision.

Every data-dependent refusal happens here, before any file is written; the loop itself has no
option handling.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import checkpoint_dir, load_checkpoint, mismatch_reason, read_config
from ..device import amp_dtype
from ..distributed import DistEnv
from ..errors import CheckpointError, DrkitError, one_line
from .config import TrainConfig
from .data import AugmentedDataset, ReinforcedDataset
from .losses import LabelSmoothingCrossEntropy, SoftTargetLoss
from .outputs import note

if TYPE_CHECKING:
    from ..models import ImageModel, ModelConfig
    from ..sources import Source

#: images averaged for the model's input mean/std (evenly strided over the training source)
STATS_IMAGES = 2000


@dataclass
class Run:
    """What the loop needs, resolved once (so the loop itself has no option handling)."""

    cfg: TrainConfig
    src: Any
    val_src: Any
    dataset: Any
    model: nn.Module
    criterion: nn.Module
    teacher: Any
    image_size: int
    env: DistEnv
    device: torch.device
    amp_dtype: torch.dtype | None
    config: dict[str, Any]  # the settings as trained, defaults resolved (state, checkpoint's extra.train)
    model_config: ModelConfig  # the student's, built once: the checkpoint's config.json


def build_run(cfg: TrainConfig, env: DistEnv, device: torch.device) -> Run:
    """Sources, mode, dataset, model and loss: every refusal happens here, before any training."""
    src = open_source(cfg.data, split=cfg.split, download=cfg.download)
    if getattr(src, "sequential", False):
        raise DrkitError(f"{src.spec} is a stream, read in order; training shuffles: train from a random-access "
                         "copy of the same images (a folder, wds:, lmdb:, hf: saved with save_to_disk), which a "
                         "store made from the stream serves when the content digests match")
    val_src = open_source(cfg.val, download=cfg.download) if cfg.val is not None else None
    if val_src is not None and list(val_src.classes) != list(src.classes):
        raise DrkitError(f"--val {val_src.spec} has other classes than --data {src.spec}")
    if val_src is not None and val_src.channels != src.channels:
        raise DrkitError(f"--val {val_src.spec} has {val_src.channels} channel(s), --data {src.channels}")
    amp = amp_dtype(cfg.runtime.amp, device)
    if device.type != "cuda" and cfg.runtime.amp in ("bf16", "fp16"):
        note(f"--amp {cfg.runtime.amp} ignored: mixed precision is used on CUDA only", env.rank, cfg.runtime.quiet)
    config: dict[str, Any] = {"data": src.spec, "data_fingerprint": src.fingerprint,
                              "val": val_src.spec if val_src is not None else None,
                              "model": cfg.model, "model_kwargs": cfg.model_kwargs}
    if cfg.mode == "dr":
        dataset, criterion, teacher, size = _dr_data(cfg, src, config)
    else:
        dataset, criterion, teacher, size = _augmented_data(cfg, src, device, amp is not None, config)
    config.update(mode=cfg.mode, image_size=size)
    skip = set(dataset.store.skipped) if cfg.mode == "dr" else set()  # --skip-bad stores
    net = _model(cfg, src, size, env, device, skip)
    if cfg.init is not None:
        config["init_from"] = init_provenance(cfg.init)
    return Run(cfg=cfg, src=src, val_src=val_src, dataset=dataset, model=net,
               criterion=criterion.to(device), teacher=teacher, image_size=size, env=env, device=device,
               amp_dtype=amp, config=config, model_config=net.config)


def _dr_data(cfg: TrainConfig, src: Source, config: dict[str, Any]) -> tuple[Any, nn.Module, Any, int]:
    """DR: the store's views and soft labels."""
    from ..augment import get_recipe, resolve_recipe
    from ..store import open_store

    store = open_store(cfg.reinforced)
    store.check_source(src)
    side = store.manifest["recipe_side"]  # None in stores written before size-aware recipes
    if cfg.recipe is not None and (resolve_recipe(cfg.recipe, int(side), strong=True) if side is not None
                                   else get_recipe(cfg.recipe)).spec != store.recipe.spec:
        raise DrkitError(f"--recipe {cfg.recipe} differs from the store's recipe {store.recipe.spec}: "
                         "DR replays the stored views (omit --recipe)")
    size = int(cfg.image_size or store.image_size)
    dataset = ReinforcedDataset(src, store, size, seed=cfg.seed, views_per_image=cfg.distill.views_per_image,
                                plain_fraction=cfg.distill.plain_fraction, as_uint8=True)
    diagnostics = store.manifest.get("diagnostics") or {}
    config.update(store=str(Path(cfg.reinforced).resolve()), store_views=store.num_views,
                  store_teacher_top1=(diagnostics.get("plain") or {}).get("top1"),
                  store_views_top1=(diagnostics.get("views") or {}).get("top1"),
                  recipe=store.recipe.spec, views_per_image=cfg.distill.views_per_image,
                  plain_fraction=cfg.distill.plain_fraction)
    return dataset, distill_loss(cfg), None, size


def _augmented_data(cfg: TrainConfig, src: Source, device: torch.device, amp: bool,
                    config: dict[str, Any]) -> tuple[Any, nn.Module, Any, int]:
    """ERM / online KD: fresh recipe views, hard targets or the teacher's."""
    from ..augment import resolve_recipe

    size = int(cfg.image_size or native_size(src))
    rec = resolve_recipe(cfg.recipe, side=min(src.typical_side(), size))
    teacher, teacher_size = None, None
    criterion: nn.Module = LabelSmoothingCrossEntropy(cfg.smoothing)
    if cfg.mode == "kd":
        from ..teachers import load_teacher

        teacher = load_teacher(cfg.kd_teacher, device=device, classes=list(src.classes), amp=amp)
        teacher.bind(src)  # out-of-fold members label only the images they never trained on
        if teacher.in_chans != src.channels:
            raise DrkitError(f"--kd-teacher takes {teacher.in_chans}-channel input, {src.spec} has {src.channels}")
        teacher_size = teacher.image_size
        config.update(kd_teacher=list(cfg.kd_teacher), teacher_size=teacher_size)
        criterion = distill_loss(cfg)
    dataset = AugmentedDataset(src, rec, size, seed=cfg.seed, teacher_size=teacher_size, as_uint8=True)
    config.update(recipe=rec.spec)
    return dataset, criterion, teacher, size


def distill_loss(cfg: TrainConfig) -> SoftTargetLoss:
    """DR and KD's loss: soft-target CE at the resolved temperature (``Distill.resolved``)."""
    d = cfg.distill.resolved
    return SoftTargetLoss(d["temperature"], d["soften_targets"])


def _model(cfg: TrainConfig, src: Source, size: int, env: DistEnv, device: torch.device,
           skip: set[int]) -> ImageModel:
    """The student (seeded init; ``--init`` weights), normalising with the data's statistics; its
    ``config`` is the run's one :class:`ModelConfig`, the checkpoint's ``config.json``."""
    from ..models import ImageModel, ModelConfig

    if cfg.init is not None:
        init_cfg, _ = read_config(checkpoint_dir(cfg.init))
        mean, std = list(init_cfg.mean), list(init_cfg.std)
        if init_cfg.in_chans != src.channels:
            raise CheckpointError(f"--init {cfg.init} takes {init_cfg.in_chans}-channel images but {src.spec} has "
                                  f"{src.channels}: read the data as the checkpoint's ({src.spec}?mode=L or RGB)")
    else:
        mean, std = source_stats(src, skip=skip)
    net = ImageModel.from_config(ModelConfig(
        model=cfg.model, num_classes=len(src.classes), in_chans=src.channels, image_size=size, mean=mean, std=std,
        classes=list(src.classes), model_kwargs=cfg.model_kwargs, source_fingerprint=src.fingerprint), seed=cfg.seed)
    if cfg.init is not None:
        load_init(net, cfg.init, env.rank)
    net = net.to(device, memory_format=torch.channels_last if cfg.runtime.channels_last else torch.preserve_format)
    try:  # a ViT built for 224 px fed 28 px, a bad --model-kwargs value: refused here, not as a traceback in step 1
        with torch.no_grad():
            net.eval()(torch.zeros(2, src.channels, size, size, device=device))
    except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
        raise DrkitError(f"{cfg.model} fails on {src.channels}x{size}x{size} images ({one_line(exc)}): check "
                         f"--model-kwargs and --image-size (a timm ViT or Swin is sized by img_size)") from None
    return net


def open_source(spec: Any, split: str | None = None, download: bool = False) -> Source:
    from ..sources import load_source

    return load_source(spec, split=split, download=download) if isinstance(spec, str) else spec


def native_size(src: Source) -> int:
    """The source's square side when its images share one (first, middle, last agree), else 224."""
    n = len(src)
    sizes = {tuple(src.image_size(i)) for i in sorted({0, n // 2, n - 1})}
    h, w = next(iter(sizes))
    return int(h) if len(sizes) == 1 and h == w else 224


def source_stats(src: Source, max_images: int = STATS_IMAGES,
                 skip: set[int] | frozenset[int] = frozenset()) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in [0, 1] over up to ``max_images`` evenly strided images (the first
    N of an ImageFolder would all be class 0), leaving out ``skip`` (a store's undecodable images)."""
    idx = np.array([i for i in src.probe_indices(max_images) if int(i) not in skip], dtype=np.int64)
    c = src.channels
    total = np.zeros(c, dtype=np.float64)
    total_sq = np.zeros(c, dtype=np.float64)
    count = 0
    for i in idx:
        x = src.load_uint8(int(i)).to(torch.float64).div_(255).reshape(c, -1)
        total += x.sum(1).numpy()
        total_sq += (x * x).sum(1).numpy()
        count += x.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    std = np.where(std < 1e-3, 1.0, std)  # a constant channel: do not blow it up
    return [float(v) for v in mean], [float(v) for v in std]


def classifier_keys(backbone: torch.nn.Module) -> set[str]:
    """State-dict keys of the classifier head (timm/drkit ``get_classifier``, else the last Linear)."""
    getter = getattr(backbone, "get_classifier", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, torch.nn.Module):
        head = next((m for m in reversed(list(backbone.modules())) if isinstance(m, torch.nn.Linear)), None)
    name = next((n for n, m in backbone.named_modules() if m is head), None) if head is not None else None
    if name is None:
        return set()
    return {f"{name}.{k}" if name else k for k in head.state_dict()}


def init_provenance(spec: str) -> dict[str, Any]:
    """What ``--init`` started from, for the run's config: the checkpoint, its weights' sha256, the
    data and mode it trained with, and the store it replayed when it was a DR run (a fine-tuning
    chain such as DR -> DR stays traceable from its last link)."""
    path = checkpoint_dir(spec)
    _, doc = read_config(path)
    extra = doc.get("extra") or {}
    return {"checkpoint": str(Path(path).resolve()), "weights_sha256": doc.get("weights_sha256"),
            "data": extra.get("data"), "mode": extra.get("mode"), "store": extra.get("store")}


def load_init(model: ImageModel, spec: str, rank: int = 0) -> None:
    """``--init CKPT``: strict load, except a classifier whose class count differs (re-initialised)."""
    path = checkpoint_dir(spec)
    src_model, _ = load_checkpoint(path)
    state = src_model.backbone.state_dict()
    own = model.backbone.state_dict()
    head = classifier_keys(model.backbone)
    differs = [k for k in head if k in state and k in own and state[k].shape != own[k].shape and
               src_model.num_classes != model.num_classes]  # else the head differs with the model: refused below
    if differs:
        for k in head:
            state.pop(k, None)
        note(f"--init {spec}: classifier has {src_model.num_classes} classes, this run {model.num_classes}: "
             "re-initialised the head", rank)
    reason = mismatch_reason({k: v for k, v in own.items() if not (differs and k in head)}, state)
    if reason:
        raise CheckpointError(f"--init {spec} does not fit {getattr(model.config, 'model', 'the model')}: {reason}")
    model.backbone.load_state_dict(state, strict=not differs)
