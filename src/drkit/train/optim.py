"""Optimiser, learning-rate schedule and weight EMA.

The schedule is a pure function of the global step, so resuming needs only the step count.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import DrkitError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed weights, and no decay for norm/bias/1-D params and what the model's
    ``no_weight_decay()`` names (timm convention: position embeddings, tokens, bias tables)."""
    inner = getattr(model, "backbone", model)  # ImageModel wraps the timm/drkit backbone
    fn = getattr(inner, "no_weight_decay", None)
    skip: set[str] = set(fn()) if callable(fn) else set()
    prefix = "backbone." if inner is not model else ""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name[len(prefix):] if prefix and name.startswith(prefix) else name
        if p.ndim <= 1 or bare in skip or bare.rsplit(".", 1)[-1] in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def create_optimizer(model: nn.Module, opt: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if opt == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    if opt == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    raise DrkitError(f"unknown optimiser {opt!r}; use sgd or adamw")


def cosine_lr(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float = 0.0) -> float:
    """Linear warmup to ``peak`` over ``warmup_steps`` (first step at peak/warmup), then cosine to ``floor``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class EMA:
    """Moving average of a model's weights and float buffers (BN stats; ints copied): ``ema = d*ema + (1-d)*w``.

    Ours rather than timm's so its state is exactly a state dict, saved as safetensors on resume.
    """

    def __init__(self, model: nn.Module, decay: float):
        import copy

        if not 0.0 < decay < 1.0:
            raise DrkitError(f"--ema decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_state = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if value.dtype.is_floating_point:
                target.lerp_(value.detach(), 1.0 - self.decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)


def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser state -> (tensors for safetensors, JSON-able rest). No pickle."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = val
            else:
                scalars.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars}


def unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():  # the caller passes the "optim.*" tensors only
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    for idx, rest in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(rest)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
