"""Option checks and setup for ``train``: sources, mode, dataset, model and loss are resolved here,
so every refusal happens before the first step and the loop itself has no option handling."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..distributed import DistEnv
from ..errors import DrkitError
from .data import AugmentedDataset, ReinforcedDataset
from .losses import LabelSmoothingCrossEntropy, SoftTargetLoss
from .optim import DEFAULTS
from .outputs import METRICS
from .prepare import load_init, native_size, note, open_source, source_stats
from .state import has_state


@dataclass
class Run:
    """What the loop needs, resolved once (so the loop itself has no option handling)."""

    mode: str
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
    channels_last: bool
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def _resolve_amp(amp: str, device: torch.device, rank: int, quiet: bool) -> torch.dtype | None:
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise DrkitError(f"--amp must be auto, off, bf16 or fp16, got {amp!r}")
    if device.type != "cuda" or amp == "off":
        if device.type != "cuda" and amp in ("bf16", "fp16"):
            note(f"--amp {amp} ignored: mixed precision is used on CUDA only", rank, quiet)
        return None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def check_options(epochs: int, batch_size: int, world: int, views_per_image: int, plain_fraction: float,
                   label_smoothing: float, temperature: float, opt: str, limit_batches: int | None,
                   warmup_epochs: float, reinforced: Any, kd_teacher: Any, resume: bool, out: Path) -> None:
    if reinforced is not None and kd_teacher:
        raise DrkitError("--reinforced and --kd-teacher exclude each other: DR replays stored labels, "
                         "KD runs the teacher online")
    if epochs < 1 or batch_size < 1:
        raise DrkitError("--epochs and --batch-size must be positive")
    if opt not in DEFAULTS:
        raise DrkitError(f"--opt must be one of {', '.join(DEFAULTS)}, got {opt!r}")
    if batch_size % (world * views_per_image):
        raise DrkitError(f"--batch-size {batch_size} must be a multiple of ranks x views per image "
                         f"({world} x {views_per_image})")
    if reinforced is None and (views_per_image != 1 or plain_fraction != 0.0):
        raise DrkitError("--views-per-image and --plain-fraction apply to DR (--reinforced) only")
    if not 0.0 <= label_smoothing < 1.0 or temperature <= 0 or warmup_epochs < 0:
        raise DrkitError("need 0 <= --label-smoothing < 1, --temperature > 0 and --warmup-epochs >= 0")
    if limit_batches is not None and limit_batches < 1:
        raise DrkitError("--limit-batches must be positive")
    if resume and not has_state(out):
        raise DrkitError(f"--resume: {out} has no training state to resume (no {out}/state/state.json)")
    if not resume and ((out / "config.json").exists() or has_state(out) or (out / METRICS).exists()):
        raise DrkitError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")


def build_run(data: Any, val: Any, model_name: str, reinforced: Any, kd_specs: list[str], recipe: str | None,
           image_size: int | None, views_per_image: int, plain_fraction: float, label_smoothing: float,
           temperature: float, soften_targets: bool, device: torch.device, amp: str, channels_last: bool, seed: int, init: str | None,
           split: str | None, download: bool, model_kwargs: dict[str, Any], env: DistEnv, quiet: bool) -> Run:
    """Sources, mode, dataset, model and loss: every refusal happens here, before any training."""
    from ..augment import get_recipe, resolve_recipe
    from ..models import ImageModel, ModelConfig, create_model

    src = open_source(data, split=split, download=download)
    val_src = open_source(val, download=download) if val is not None else None
    if val_src is not None and list(val_src.classes) != list(src.classes):
        raise DrkitError(f"--val {val_src.spec} has other classes than --data {src.spec}")
    if val_src is not None and val_src.channels != src.channels:
        raise DrkitError(f"--val {val_src.spec} has {val_src.channels} channel(s), --data {src.channels}")
    amp_dtype = _resolve_amp(amp, device, env.rank, quiet)
    config: dict[str, Any] = {"data": src.spec, "data_fingerprint": src.fingerprint,
                              "val": val_src.spec if val_src is not None else None,
                              "model": model_name, "model_kwargs": model_kwargs}
    teacher = None
    if reinforced is not None:
        from ..store import open_store

        mode = "dr"
        store = open_store(reinforced)
        store.check_source(src)
        side = store.manifest.get("recipe_side")  # absent in stores written before size-aware recipes
        if recipe is not None and (resolve_recipe(recipe, int(side), strong=True) if side is not None
                                   else get_recipe(recipe)).spec != store.recipe.spec:
            raise DrkitError(f"--recipe {recipe} differs from the store's recipe {store.recipe.spec}: "
                             "DR replays the stored views (omit --recipe)")
        size = int(image_size or store.image_size)
        dataset: Any = ReinforcedDataset(src, store, size, seed=seed, views_per_image=views_per_image,
                                         plain_fraction=plain_fraction, as_uint8=True)
        config.update(store=str(Path(reinforced).resolve()), store_views=store.num_views,
                      recipe=store.recipe.spec, views_per_image=views_per_image, plain_fraction=plain_fraction)
        criterion: nn.Module = SoftTargetLoss(temperature, soften_targets)
    else:
        size = int(image_size or native_size(src))
        if size < 1:
            raise DrkitError(f"--image-size must be positive, got {size}")
        rec = resolve_recipe(recipe, side=min(src.typical_side(), size))
        teacher_size = None
        if kd_specs:
            from ..teachers import load_teacher

            mode = "kd"
            teacher = load_teacher(kd_specs, device=device, classes=list(src.classes), amp=amp_dtype is not None)
            teacher.bind(src)  # out-of-fold members label only the images they never trained on
            if teacher.in_chans != src.channels:
                raise DrkitError(f"--kd-teacher takes {teacher.in_chans}-channel input, {src.spec} has {src.channels}")
            teacher_size = teacher.image_size
            config.update(kd_teacher=kd_specs, teacher_size=teacher_size)
            criterion = SoftTargetLoss(temperature, soften_targets)
        else:
            mode = "erm"
            criterion = LabelSmoothingCrossEntropy(label_smoothing)
        dataset = AugmentedDataset(src, rec, size, seed=seed, teacher_size=teacher_size, as_uint8=True)
        config.update(recipe=rec.spec)
    if size < 1:
        raise DrkitError(f"--image-size must be positive, got {size}")
    config.update(mode=mode, image_size=size)

    if init is not None:
        from ..checkpoint import read_config

        init_cfg, _ = read_config(init[5:] if init.startswith("ckpt:") else init)
        mean, std = list(init_cfg.mean), list(init_cfg.std)
    else:
        mean, std = source_stats(src)
    backbone = create_model(model_name, num_classes=len(src.classes), in_chans=src.channels, seed=seed, **model_kwargs)
    cfg = ModelConfig(model=model_name, num_classes=len(src.classes), in_chans=src.channels, image_size=size,
                      mean=mean, std=std, classes=list(src.classes), model_kwargs=model_kwargs)
    net = ImageModel(backbone, mean, std, config=cfg)
    if init is not None:
        load_init(net, init, env.rank)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return Run(mode=mode, src=src, val_src=val_src, dataset=dataset, model=net, criterion=criterion.to(device),
               teacher=teacher, image_size=size, env=env, device=device, amp_dtype=amp_dtype,
               channels_last=channels_last, config=config, extra={"mean": mean, "std": std})
