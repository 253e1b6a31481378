"""Everything a run needs before its first step: sources, mode, model, input statistics, --init.

Kept apart from the loop so the loop reads as the loop, and so refusals happen before any work.
"""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CheckpointError, DrkitError

if TYPE_CHECKING:
    from ..models import ImageModel
    from ..sources import Source

#: images averaged for the model's input mean/std (evenly strided over the training source)
STATS_IMAGES = 2000


def note(msg: str, rank: int = 0, quiet: bool = False) -> None:
    """One line to stderr from rank 0 (stdout stays for the JSON result)."""
    if rank == 0 and not quiet:
        print(f"drkit train: {msg}", file=sys.stderr, flush=True)


def open_source(spec: Any, split: str | None = None, download: bool = False) -> Source:
    from ..sources import load_source

    return load_source(spec, split=split, download=download) if isinstance(spec, str) else spec


def parse_model_kwargs(value: str | dict[str, Any] | None) -> dict[str, Any]:
    """``--model-kwargs '{"depth": 1}'`` (JSON object) or a dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise DrkitError(f"--model-kwargs is not valid JSON ({e.msg}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise DrkitError(f"--model-kwargs must be a JSON object, got {value!r}")
    return parsed


def native_size(src: Source) -> int:
    """The source's square side when its images share one (first, middle, last agree), else 224."""
    n = len(src)
    sizes = {tuple(src.image_size(i)) for i in sorted({0, n // 2, n - 1})}
    if len(sizes) == 1:
        h, w = next(iter(sizes))
        if h == w:
            return int(h)
    return 224


def source_stats(src: Source, max_images: int = STATS_IMAGES) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in [0, 1] over up to ``max_images`` evenly strided images (the first
    N of an ImageFolder would all be class 0)."""
    n = len(src)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_images)).round().astype(np.int64))
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
    head = None
    getter = getattr(backbone, "get_classifier", None)
    if callable(getter):
        head = getter()
    if not isinstance(head, torch.nn.Module):
        linears = [m for m in backbone.modules() if isinstance(m, torch.nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        return set()
    name = next((n for n, m in backbone.named_modules() if m is head), None)
    if name is None:
        return set()
    return {f"{name}.{k}" if name else k for k in head.state_dict()}


def load_init(model: ImageModel, spec: str, rank: int = 0) -> None:
    """``--init CKPT``: strict load, except a classifier whose class count differs (re-initialised)."""
    from ..checkpoint import _mismatch_reason, load_checkpoint

    path = spec[5:] if spec.startswith("ckpt:") else spec
    src_model, _ = load_checkpoint(path)
    state = src_model.backbone.state_dict()
    own = model.backbone.state_dict()
    head = classifier_keys(model.backbone)
    differs = [k for k in head if k in state and k in own and state[k].shape != own[k].shape]
    if differs:
        for k in head:
            state.pop(k, None)
        note(f"--init {spec}: classifier has {src_model.num_classes} classes, this run {model.num_classes}: "
             "re-initialised the head", rank)
    reason = _mismatch_reason({k: v for k, v in own.items() if not (differs and k in head)}, state)
    if reason:
        raise CheckpointError(f"--init {spec} does not fit {model.config.model if model.config else 'the model'}: {reason}")
    model.backbone.load_state_dict(state, strict=not differs)
