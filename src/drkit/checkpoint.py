"""Model checkpoints: ``DIR/model.safetensors`` (backbone weights) + ``DIR/config.json``.

This is what ``drkit train`` writes and what ``ckpt:DIR`` teachers read. No pickle: weights are
safetensors, everything else JSON. The weights file holds the *bare backbone* state dict, so a
checkpoint of a timm model also loads as ``timm:NAME?file=DIR/model.safetensors``.

Both files are written atomically (temp file, fsync, rename), weights first and ``config.json``
last: a directory with a ``config.json`` always has the weights it describes, and the config
records their sha256 so a swapped or truncated weights file is refused at load time.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .fileio import atomic_write_bytes, inside, sha256_bytes, sha256_file
from .models import ImageModel, ModelConfig, create_model

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "checkpoint_dir",
    "load_checkpoint",
    "read_config",
    "save_checkpoint",
    "sha256_file",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "drkit.checkpoint"
FORMAT_VERSION = 1


def _backbone(model: nn.Module) -> nn.Module:
    return model.backbone if isinstance(model, ImageModel) else model


def _contiguous_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies: safetensors refuses views and shared storage, and
    channels_last conv weights must be stored in the canonical layout."""
    return {
        k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for k, v in _backbone(model).state_dict().items()
    }


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: ImageModel | nn.Module,
    config: ModelConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``directory`` (created if needed).

    ``model`` is an :class:`ImageModel` (its backbone is saved) or a bare backbone. ``extra`` is
    merged into ``config.extra`` (JSON values only: e.g. epoch, metrics, command line).
    Returns the directory.
    """
    from safetensors.torch import save as st_save

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = _contiguous_state(model)
    weights = out / WEIGHTS_NAME
    # one metadata key: safetensors writes metadata from a hash map, so two keys would come out in a
    # different order from call to call and the same weights would hash differently
    data = st_save(state, metadata={"format": "pt"})
    atomic_write_bytes(weights, data)

    cfg = config.to_dict()
    if extra:
        cfg["extra"] = {**cfg.get("extra", {}), **extra}
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": WEIGHTS_NAME,
        "weights_sha256": sha256_bytes(data),
        **cfg,
    }
    text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(out / CONFIG_NAME, text.encode("utf-8"))
    return out


def checkpoint_dir(spec: str | os.PathLike[str]) -> str:
    """The directory a ``--init``/export argument names: ``ckpt:DIR`` or a bare ``DIR``."""
    text = str(spec)
    return text[len("ckpt:"):] if text.startswith("ckpt:") else text


def read_config(directory: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, Any]]:
    """Parse ``DIR/config.json`` -> (ModelConfig, raw document). Refuses with a one-line reason."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"checkpoint {path} is not a JSON object")
    fmt = doc.get("format", FORMAT)
    version = doc.get("format_version", FORMAT_VERSION)
    if fmt != FORMAT or not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {fmt!r} v{version}; this drkit reads {FORMAT!r} up to v{FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(doc)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from exc
    return config, doc


def mismatch_reason(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """One line naming what does not fit, or None when keys and shapes agree."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {tuple(found[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), first: {shapes[0]}")
    if missing:
        parts.append(f"{len(missing)} missing key(s), first: {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), first: {unexpected[0]}")
    return "; ".join(parts) or None




def load_checkpoint(
    directory: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> tuple[ImageModel, ModelConfig]:
    """Rebuild the model named in ``config.json``, load its weights strictly, eval mode.

    With ``verify`` the weights' sha256 is checked against the one recorded at save time.
    Every failure is a :class:`~drkit.errors.CheckpointError` naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config, doc = read_config(directory)
    weights = inside(directory, doc.get("weights", WEIGHTS_NAME), f"checkpoint {Path(directory) / CONFIG_NAME}",
                     CheckpointError)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {weights} is missing")
    recorded = doc.get("weights_sha256")
    if verify and not recorded:
        raise CheckpointError(f"checkpoint {Path(directory) / CONFIG_NAME} records no weights_sha256, so its weights "
                              "cannot be checked; save it again with drkit")
    if verify:
        actual = sha256_file(weights)
        if actual != recorded:
            raise CheckpointError(
                f"checkpoint {weights} has sha256 {actual[:12]}… but {CONFIG_NAME} records {str(recorded)[:12]}…"
            )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights} is unreadable: {exc}") from exc

    try:
        backbone = create_model(config.model, config.num_classes, config.in_chans, **config.model_kwargs)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {Path(directory) / CONFIG_NAME}: {exc}") from exc
    reason = mismatch_reason(backbone.state_dict(), state)
    if reason:
        raise CheckpointError(f"checkpoint {weights} does not fit {config.model}: {reason}")
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype or other surprises the key/shape check did not catch
        raise CheckpointError(f"checkpoint {weights} does not fit {config.model}: {str(exc).splitlines()[0]}") from exc
    model = ImageModel(backbone, config.mean, config.std, config=config)
    return model.to(device).eval(), config
