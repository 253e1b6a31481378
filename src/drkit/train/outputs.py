"""What a run leaves behind: ``metrics.jsonl`` (rewritten atomically each epoch), ``curves.png``,
the per-epoch log line and the final ``model.safetensors`` + ``config.json``."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..fileio import atomic_write_bytes
from .optim import EMA

if TYPE_CHECKING:
    from .setup import Run

METRICS = "metrics.jsonl"
CURVES = "curves.png"
#: DR: a final training top-1 this far below the teachers' top-1 on the stored views is called underfitting
UNDERFIT_GAP = 0.10


def note(msg: str, rank: int = 0, quiet: bool = False) -> None:
    """One line to stderr from rank 0 (stdout stays for the JSON result)."""
    if rank == 0 and not quiet:
        print(f"drkit train: {msg}", file=sys.stderr, flush=True)


def warn(msg: str, rank: int = 0) -> None:
    """A warning line to stderr from rank 0, shown even with ``--quiet`` (it says what to do)."""
    if rank == 0:
        print(f"drkit: warning: {msg}", file=sys.stderr, flush=True)


def warn_once_past_teachers(rows: list[dict[str, Any]], row: dict[str, Any], config: dict[str, Any], rank: int) -> None:
    """DR: the first epoch the student beats the teachers that labelled its store (their accuracy on
    images they never trained on, recorded by reinforce), the stored labels start to hold it back."""
    t = config.get("store_teacher_top1")
    passed = [r.get("val_top1") is not None and r["val_top1"] > t for r in [*rows, row]] if t is not None else []
    if not passed or not passed[-1] or any(passed[:-1]):
        return
    warn(f"epoch {row['epoch']}: the student's validation top-1 {100 * row['val_top1']:.2f} % passed the "
         f"store's teacher accuracy {100 * t:.2f} %: its labels now hold the student back; reinforce with "
         f"stronger teachers (or compare with ERM before trusting this run)", rank)


def warn_if_underfit(rows: list[dict[str, Any]], config: dict[str, Any], rank: int) -> None:
    """DR: a student far below its teachers on the very views they labelled has not fitted them, and distillation
    adds nothing it cannot fit (family sweep: 30-epoch transformers 13-19 points below, no gain; gainers 0.5-6.5)."""
    t = config.get("store_views_top1")
    if t is None or not rows or t - rows[-1]["train_top1"] < UNDERFIT_GAP:
        return
    warn(f"the student ends at {100 * rows[-1]['train_top1']:.2f} % top-1 on its training views, "
         f"{100 * (t - rows[-1]['train_top1']):.1f} points below the store's teachers on the same views "
         f"({100 * t:.2f} %): it underfits them and DR cannot help yet; train longer (--epochs) or raise --lr", rank)


def jsonable(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps({k: jsonable(v) for k, v in r.items()}, sort_keys=True) + "\n" for r in rows)
    atomic_write_bytes(out / METRICS, text.encode())


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The rows of ``OUT/metrics.jsonl``, one per epoch (non-finite values read back as ``None``)."""
    text = (Path(out) / METRICS).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_curves(out: Path, rows: list[dict[str, Any]], title: str) -> None:
    """``curves.png``; a missing matplotlib costs the figure, never the run."""
    try:
        from ..plots import plot_curves

        plot_curves(rows, out / CURVES, title=title)
    except ImportError as e:
        note(f"no {CURVES} ({e}); metrics are in {METRICS}")


def log_row(row: dict[str, Any], epochs: int, quiet: bool) -> None:
    if quiet:
        return
    from tqdm.auto import tqdm

    val = (f" val {100 * row['val_top1']:.2f}% nll {row['val_nll']:.3f}" if "val_top1" in row else "")
    tqdm.write(f"epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} train {100 * row['train_top1']:.2f}%"
               f"{val} lr {row['lr']:.3g} {row['img_per_s']:.0f} img/s {row['epoch_seconds']:.1f}s")


def finish(run: Run, rows: list[dict[str, Any]], ema_model: EMA | None, wall: float) -> dict[str, Any]:
    """Write the final checkpoint (EMA weights when kept) and return the run's summary."""
    from ..checkpoint import save_checkpoint

    cfg = run.cfg
    out, epochs, seed, command = Path(cfg.out), cfg.optim.epochs, cfg.seed, cfg.command

    last = rows[-1] if rows else {}
    prefix = "val_ema_" if ema_model is not None else "val_"
    final = {k[len(prefix):]: last[k] for k in (f"{prefix}top1", f"{prefix}nll") if k in last}
    summary = {"out": str(out), "mode": cfg.mode, "model": cfg.model, "epochs": epochs,
               "image_size": run.image_size, "final_val": final, "final_train_loss": last.get("train_loss"),
               "wall_seconds": wall, "img_per_s": float(np.mean([r["img_per_s"] for r in rows])) if rows else None,
               "weights": "ema" if ema_model is not None else "model"}
    if run.env.is_main:
        extra = {"crop_pct": 1.0, "mode": cfg.mode, "recipe": run.config["recipe"], "store": run.config.get("store"),
                 "kd_teacher": run.config.get("kd_teacher"), "data": run.config["data"], "epochs": epochs,
                 "seed": seed, "final_metrics": {k: jsonable(v) for k, v in last.items()},
                 "weights": summary["weights"], "command": list(command) if command is not None else None,
                 # every setting as trained, defaults resolved (which distillation settings were defaults too)
                 "train": {k: jsonable(v) for k, v in run.config.items()}}
        weights = ema_model.module if ema_model is not None else run.model
        save_checkpoint(out, weights, run.model_config, extra=extra)
    return summary
