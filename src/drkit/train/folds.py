"""``drkit train --folds K``: K members, member k trained on every sample outside fold k.

The directory holds ``fold0/ … fold{K-1}/`` (ordinary ``drkit train`` outputs, each resumable on
its own) and, written last, ``folds.json`` with the split, so a directory with ``folds.json`` is
complete. ``--teacher ckpt:DIR`` on it labels each image only with the members that never saw it
(:mod:`drkit.teachers.ensemble`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..checkpoint import read_config
from ..errors import DrkitError
from ..fileio import atomic_write_json
from ..folds import FOLDS_FILE, FOLDS_FORMAT, FOLDS_VERSION, split_for
from .config import TrainConfig
from .outputs import note
from .setup import open_source
from .state import has_state


def train_folds(cfg: TrainConfig, train_one: Callable[[TrainConfig], dict[str, Any]]) -> dict[str, Any]:
    """Train the K members in turn (finished ones are kept on ``resume``), then write ``folds.json``.
    Member k uses seed ``seed + k``: members differ in initialisation as well as in data."""
    out, folds = Path(cfg.out), int(cfg.folds)
    if (out / FOLDS_FILE).exists():
        raise DrkitError(f"{out} already holds a finished --folds run; choose another --out")
    src = open_source(cfg.data, split=cfg.split, download=cfg.download)
    fold_split, fold = split_for(src, folds)
    if (out / "config.json").exists() or has_state(out):
        raise DrkitError(f"{out} holds a single training run; --folds needs its own --out")
    members, summaries = [], []
    for k in range(folds):
        member = out / f"fold{k}"
        keep = np.flatnonzero(fold != k)
        done = (member / "config.json").exists()
        if done and not cfg.resume:
            raise DrkitError(f"{out} holds an unfinished --folds run; pass --resume to continue it")
        if not done:
            note(f"--folds {folds}: member {k} trains on {keep.size} of {len(src)} samples (all outside fold {k})",
                 quiet=cfg.quiet)
            summaries.append(train_one(cfg.replace(data=src.subset(keep), out=member, folds=None, split=None,
                                                   resume=cfg.resume and has_state(member), seed=cfg.seed + k)))
        _, doc = read_config(member)
        members.append({"dir": member.name, "fold": k, "trained_samples": int(keep.size),
                        "weights_sha256": doc.get("weights_sha256")})
    atomic_write_json(out / FOLDS_FILE, {
        "format": FOLDS_FORMAT, "format_version": FOLDS_VERSION, "split": fold_split.to_json(),
        "data": {"spec": src.spec, "fingerprint": src.fingerprint, "len": len(src)}, "members": members,
        "command": list(cfg.command) if cfg.command is not None else None})
    return {"out": str(out), "folds": folds, "members": members, "runs": summaries}
