"""Model checkpoints, what ``drkit train`` writes and ``ckpt:DIR`` teachers read (no pickle):
``DIR/model.safetensors`` (the bare backbone's weights, so a timm model's also loads as ``timm:NAME?file=``)
and, written last, ``DIR/config.json`` recording their sha256 (both atomic): a directory with a config has
the weights it describes, and a swapped or truncated file is refused at load.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .fileio import atomic_write_bytes, inside, read_json_object, sha256_bytes, sha256_file
from .models import ImageModel, ModelConfig

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "WEIGHTS_NAME", "checkpoint_dir", "load_checkpoint",
           "read_config", "save_checkpoint", "sha256_file"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "drkit.checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(directory: str | os.PathLike[str], model: ImageModel | nn.Module, config: ModelConfig,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``directory`` (created if needed);
    ``model`` is an :class:`ImageModel` (its backbone is saved) or a bare backbone, ``extra`` is
    merged into ``config.extra``. Returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    data = weights_bytes(model.backbone if isinstance(model, ImageModel) else model)
    atomic_write_bytes(out / WEIGHTS_NAME, data)
    cfg = config.to_dict()
    if extra:
        cfg["extra"] = {**cfg.get("extra", {}), **extra}
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "weights": WEIGHTS_NAME,
           "weights_sha256": sha256_bytes(data), **cfg}
    atomic_write_bytes(out / CONFIG_NAME, (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())
    return out


def weights_bytes(module: nn.Module, drop: Collection[str] = ()) -> bytes:
    """safetensors bytes of ``module``'s state less ``drop``: CPU, contiguous, unshared copies (safetensors
    refuses views and shared storage; channels_last weights are stored canonically) and one metadata key
    (safetensors writes metadata from a hash map: two keys would vary in order, and the same weights in hash)."""
    from safetensors.torch import save as st_save

    return st_save({k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
                    for k, v in module.state_dict().items() if k not in drop}, metadata={"format": "pt"})


def checkpoint_dir(spec: str | os.PathLike[str]) -> str:
    """The directory a ``--init``/export argument names: ``ckpt:DIR`` or a bare ``DIR``."""
    return str(spec).removeprefix("ckpt:")


def read_config(directory: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, Any]]:
    """Parse ``DIR/config.json`` -> (ModelConfig, raw document). Refuses with a one-line reason."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    doc = read_json_object(path, CheckpointError, "checkpoint ")
    fmt, version = doc.get("format", FORMAT), doc.get("format_version", FORMAT_VERSION)
    if fmt != FORMAT or not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {fmt!r} v{version}; "
                              f"this drkit reads {FORMAT!r} up to v{FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(doc)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from exc
    return config, doc


def mismatch_reason(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """One line naming what does not fit, or None when keys and shapes agree."""
    shapes = [f"{k} {tuple(found[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in found and tuple(found[k].shape) != tuple(v.shape)]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    parts = [f"{len(keys)} {what}, first: {keys[0]}" for keys, what in (
        (shapes, "shape mismatch(es)"), (missing, "missing key(s)"), (unexpected, "unexpected key(s)")) if keys]
    return "; ".join(parts) or None


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str, error: type[Exception]) -> None:
    """``module.load_state_dict(state, strict=True)``, refused first with one line naming what does
    not fit: ``error(f"{what}: {reason}")``."""
    reason = mismatch_reason(module.state_dict(), state)
    if reason:
        raise error(f"{what}: {reason}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype or other surprises the key/shape check did not catch
        raise error(f"{what}: {str(exc).splitlines()[0]}") from exc


def load_checkpoint(directory: str | os.PathLike[str], device: str | torch.device = "cpu",
                    verify: bool = True) -> tuple[ImageModel, ModelConfig]:
    """Rebuild the model named in ``config.json``, load its weights strictly, eval mode. With
    ``verify`` the weights' sha256 is checked against the one recorded at save time. Every failure
    is a :class:`~drkit.errors.CheckpointError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config, doc = read_config(directory)
    config_path = Path(directory) / CONFIG_NAME
    weights = inside(directory, doc.get("weights", WEIGHTS_NAME), f"checkpoint {config_path}", CheckpointError)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {weights} is missing")
    recorded = doc.get("weights_sha256")
    if verify and not recorded:
        raise CheckpointError(f"checkpoint {config_path} records no weights_sha256, so its weights "
                              "cannot be checked; save it again with drkit")
    if verify and (actual := sha256_file(weights)) != recorded:
        raise CheckpointError(f"checkpoint {weights} has sha256 {actual[:12]}… but {CONFIG_NAME} records "
                              f"{str(recorded)[:12]}…: the files were changed or mixed up; copy the checkpoint again")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights} is unreadable: {exc}") from exc
    try:
        model = ImageModel.from_config(config)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {config_path}: {exc}") from exc
    load_strict(model.backbone, state, f"checkpoint {weights} does not fit {config.model}", CheckpointError)
    return model.to(device).eval(), config
