"""Resume state: ``DIR/state/`` = one safetensors file of tensors + ``state.json`` of scalars (no pickle).

Why this order: the tensors file gets a fresh name each epoch and is written first; ``state.json``, which
names it and records its sha256, is written last and is the commit point (both atomically), so a kill
at any moment leaves the previous epoch's state or the new one, never a mix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import DrkitError
from ..fileio import atomic_write_bytes, atomic_write_json, inside, read_json_object, sha256_bytes, sha256_file

STATE_DIR = "state"
STATE_JSON = "state.json"


def state_dir(out: str | Path) -> Path:
    return Path(out) / STATE_DIR


def has_state(out: str | Path) -> bool:
    return (state_dir(out) / STATE_JSON).is_file()


def save_state(out: str | Path, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> Path:
    """Write this epoch's tensors, then the JSON that commits them; drop older tensor files."""
    from safetensors.torch import save

    root = state_dir(out)
    root.mkdir(parents=True, exist_ok=True)
    name = f"tensors-{int(scalars['epoch']):05d}.safetensors"
    data = save({k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format) for k, v in tensors.items()})
    atomic_write_bytes(root / name, data)
    atomic_write_json(root / STATE_JSON, {**scalars, "tensors": name, "tensors_sha256": sha256_bytes(data)})
    for old in root.glob("tensors-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return root


def load_state(out: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, scalars) of the last committed epoch; refuses a missing or damaged state."""
    from safetensors.torch import load_file

    root = state_dir(out)
    path = root / STATE_JSON
    if not path.is_file():
        raise DrkitError(f"--resume: {out} has no training state ({path} is missing); start without --resume")
    doc = read_json_object(path, DrkitError, "--resume: ")
    kinds = {"epoch": int, "step": int, "rows": list, "run": dict, "config": dict, "optimizer": dict}
    if not all(isinstance(doc.get(k), t) for k, t in kinds.items()) or doc["epoch"] < 0 or doc["step"] < 0:
        raise DrkitError(f"--resume: {path} is not a state drkit writes (edited?); train again with another --out")
    tpath = inside(root, doc.get("tensors"), f"--resume: {path}", DrkitError)
    if not tpath.is_file():
        raise DrkitError(f"--resume: {tpath} named by {path} is missing")
    if sha256_file(tpath) != doc.get("tensors_sha256"):
        raise DrkitError(f"--resume: {tpath} fails its sha256 checksum")
    return load_file(str(tpath)), doc


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``{"model.x": t}`` -> ``{"x": t}`` for one prefix."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def with_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}
