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

from ..checkpoint import checkpoint_dir, load_checkpoint, read_config
from ..configs import check
from ..defaults import FOLDS_MIN_STEPS
from ..errors import DrkitError
from ..fileio import atomic_write_json, read_json_object
from ..folds import FOLDS_FILE, FOLDS_FORMAT, FOLDS_VERSION, root_indices, split_for
from .config import TrainConfig
from .outputs import note, warn
from .setup import open_source
from .state import STATE_JSON, has_state, state_dir


def train_folds(cfg: TrainConfig, train_one: Callable[[TrainConfig], dict[str, Any]]) -> dict[str, Any]:
    """Train the K members in turn (finished ones are kept on ``resume`` once their data and weights
    check out), then write ``folds.json``. Member k uses seed ``seed + k``: members differ in
    initialisation as well as in data.

    ``--kd-teacher`` works by design: member k learns from the KD teacher's outputs on its own
    training images only, never on fold k. ``--init`` works from weights that never saw this
    data (an ImageNet-style backbone); weights trained on it would carry fold k into member k,
    so they are refused."""
    out, folds = Path(cfg.out), int(cfg.folds)
    if (out / FOLDS_FILE).exists():
        raise DrkitError(f"{out} already holds a finished --folds run; choose another --out")
    src = open_source(cfg.data, split=cfg.split, download=cfg.download)
    fold_split, fold = split_for(src, folds)
    if (out / "config.json").exists() or has_state(out):
        raise DrkitError(f"{out} holds a single training run; --folds needs its own --out")
    if cfg.init is not None:
        refuse_init_that_saw_the_data(cfg.init, src)
    short_schedule_warning(cfg, int(np.count_nonzero(fold != 0)))
    members, summaries = [], []
    for k in range(folds):
        member = out / f"fold{k}"
        keep = np.flatnonzero(fold != k)
        data = src.subset(keep)
        done = (member / "config.json").exists()
        if done and not cfg.runtime.resume:
            raise DrkitError(f"{out} holds an unfinished --folds run; pass --resume to continue it")
        member_cfg = cfg.replace(data=data, out=member, folds=None, split=None, seed=cfg.seed + k,
                                 resume=cfg.runtime.resume and has_state(member),
                                 label_smoothing=cfg.smoothing if cfg.mode == "erm" else None)
        if done:
            check_finished_member(member, k, member_cfg)
        else:
            note(f"--folds {folds}: member {k} trains on {keep.size} of {len(src)} samples (all outside fold {k})",
                 quiet=cfg.runtime.quiet)
            summaries.append(train_one(member_cfg))
        _, doc = read_config(member)
        members.append({"dir": member.name, "fold": k, "trained_samples": int(keep.size),
                        "data_fingerprint": data.fingerprint, "weights_sha256": doc.get("weights_sha256")})
    atomic_write_json(out / FOLDS_FILE, {
        "format": FOLDS_FORMAT, "format_version": FOLDS_VERSION, "split": fold_split.to_json(),
        "data": {"spec": src.spec, "fingerprint": src.fingerprint, "len": len(src)}, "members": members,
        "command": list(cfg.command) if cfg.command is not None else None})
    return {"out": str(out), "folds": folds, "members": members, "runs": summaries}


def short_schedule_warning(cfg: TrainConfig, member_samples: int) -> int:
    """Warn when a member's schedule is shorter than ``FOLDS_MIN_STEPS`` optimizer steps: a teacher's
    quality is set by its steps, not its epochs (20 epochs of a 1.4k-image set are 140 steps, and
    gave 66 % teachers whose store taught worse than ERM). Returns the member's step count."""
    per_epoch = max(1, member_samples // cfg.optim.batch_size)  # a short last batch is dropped (epoch_batches)
    steps = min(per_epoch, cfg.runtime.limit_batches or per_epoch) * cfg.optim.epochs
    if steps < FOLDS_MIN_STEPS:
        warn(f"--folds members train only {steps} optimizer steps ({cfg.optim.epochs} epochs of {per_epoch} batches); "
             f"teachers this short are weak and their labels can teach less than ERM: give them at least "
             f"{FOLDS_MIN_STEPS} steps (--epochs {-(-FOLDS_MIN_STEPS // per_epoch)} at this batch size)")
    return steps


def check_finished_member(member: Path, k: int, member_cfg: TrainConfig) -> None:
    """A finished member kept by ``--resume`` must have trained on exactly the samples outside fold
    k of *this* run's data, with *this* run's options, and its weights must be the ones its config records."""
    data = member_cfg.data
    try:
        _, config = load_checkpoint(member)  # verifies the weights' sha256
        state = read_json_object(state_dir(member) / STATE_JSON, DrkitError) if has_state(member) else {}
        check(isinstance(state.get("config"), dict), f"its options cannot be checked ({member}/state/ is gone)")
        diff = member_cfg.diff(state["config"])
    except DrkitError as exc:
        raise DrkitError(f"--resume: member {k} ({member}) cannot be kept: {exc}") from None
    if diff:
        raise DrkitError(f"--resume: member {k} ({member}) trained with other settings ({', '.join(diff)}): resume "
                         "with the same options or start the --folds run again in a new --out")
    if config.source_fingerprint != data.fingerprint:
        raise DrkitError(f"--resume: member {k} ({member}) trained on other data than fold {k}'s complement of "
                         f"{data.spec} (fingerprint {str(config.source_fingerprint)[:12]}… vs "
                         f"{data.fingerprint[:12]}…): start the --folds run again in a new --out")


def refuse_init_that_saw_the_data(init: str, src: Any) -> None:
    """``--folds --init CKPT``: refused when CKPT trained on the data being split (or on the dataset
    it is cut from), since every member would then start from weights that saw its held-out fold."""
    directory = checkpoint_dir(init)
    if not (Path(directory) / "config.json").exists():
        return  # not a drkit checkpoint (load_init refuses what it cannot read)
    config, doc = read_config(directory)
    root, _ = root_indices(src)
    data_spec = str((doc.get("extra") or {}).get("data") or "")
    same_root = data_spec.split("?")[0] == root.spec.split("?")[0]
    if config.source_fingerprint in {src.fingerprint, root.fingerprint} or same_root:
        raise DrkitError(f"--folds with --init {init}: those weights trained on {data_spec or src.spec}, so every "
                         f"member would start from a model that saw its held-out fold; train the members from "
                         f"scratch or from weights trained on other data")
