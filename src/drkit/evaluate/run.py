"""The ``drkit eval`` verb: a checkpoint on a labelled split, clean, corrupted and shifted."""
from __future__ import annotations

# ruff: noqa: RUF009  (option() returns a dataclasses.field)
import dataclasses
import functools
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..configs import DOWNLOAD_HELP, KW_ONLY, SPLIT_HELP, VerbConfig, check, option
from ..device import resolve_device
from ..errors import SourceError
from ..fileio import atomic_write_json
from ..plots import reliability_diagram
from .corruptions import CORRUPTIONS, SEVERITIES, corrupt, corruption_seed
from .metrics import MetricAccumulator

if TYPE_CHECKING:
    from ..sources import Source


class EvalViews(Dataset):
    """Plain eval views at the model's size, optionally corrupted (per-image seeded). Items are
    ``(image, label, sample index)``; with ``skip_bad`` an undecodable image comes back blank with
    label -1 and is left out of every metric."""

    def __init__(self, src: Any, size: int, crop_pct: float, indices: np.ndarray, label_map: np.ndarray | None,
                 corruption: tuple[str, int, int] | None = None, skip_bad: bool = False):
        self.src, self.size, self.crop_pct, self.indices = src, size, crop_pct, indices
        self.label_map, self.skip_bad = label_map, skip_bad
        #: (family, severity, noise seed), or None for clean views
        self.family, self.severity, self.seed = corruption if corruption is not None else (None, 0, 0)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, int]:
        from ..augment import eval_transform

        i = int(self.indices[k])
        try:
            img = self.src.load_uint8(i)
        except SourceError:
            if not self.skip_bad:
                raise
            return torch.zeros(self.src.channels, self.size, self.size, dtype=torch.uint8), -1, i
        x = eval_transform(img, self.size, self.crop_pct)
        if self.family is not None:
            x = corrupt(x, self.family, self.severity, corruption_seed(self.seed, self.family, self.severity, i))
        y = int(self.src.labels[i])
        return x, int(self.label_map[y]) if self.label_map is not None else y, i


@torch.inference_mode()
def _run(model: torch.nn.Module, ds: Dataset, batch_size: int, device: torch.device, workers: int,
         class_subset: np.ndarray | None, desc: str, progress: bool) -> MetricAccumulator:
    from tqdm.auto import tqdm

    acc = MetricAccumulator()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    for x, y, idx in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False, dynamic_ncols=True):
        good = y >= 0  # -1: an undecodable image skipped with --skip-bad
        acc.skipped += idx[~good].tolist()
        if not good.any():
            continue
        x = x[good].to(device, non_blocking=True).float().div_(255).contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        if class_subset is not None:  # shifted set with fewer classes: restrict the softmax to them
            logits = logits[:, torch.as_tensor(class_subset, device=logits.device)]
        acc.update(logits.softmax(-1).cpu(), y[good])
    return acc


def _label_map(model_classes: list[str], src: Any, allow_subset: bool) -> tuple[Any, Any, np.ndarray]:
    """(label map src->eval index or None, model class subset or None, kept sample indices) for a source."""
    src_classes = list(src.classes)
    if not model_classes or src_classes == model_classes:
        return None, None, np.arange(len(src))
    check(allow_subset, f"{src.spec}'s class names differ from the checkpoint's; use --shift for a mapped set")
    index = {name: i for i, name in enumerate(model_classes)}
    shared = [c for c in src_classes if c in index]
    check(bool(shared), f"{src.spec} shares no class name with the checkpoint")
    subset = np.array(sorted(index[c] for c in shared))
    position = {m: k for k, m in enumerate(subset)}
    label_map = np.array([position.get(index.get(c, -1), -1) for c in src_classes])
    keep = np.flatnonzero(label_map[np.asarray(src.labels)] >= 0)
    return label_map, subset, keep


#: corruption sets smaller than this are rendered in the main process (no loader workers)
SMALL_SET = 2048


@dataclasses.dataclass(frozen=True, **KW_ONLY)
class EvalConfig(VerbConfig):
    """A checkpoint on a labelled split (see ``drkit eval --help``, generated from the fields): clean
    metrics, optionally per corruption family and severity and on a shifted set (classes mapped by name)."""

    checkpoint: str | Path = option(required=True, metavar="DIR")
    data: str | Source = option(required=True, metavar="SRC")
    corruptions: bool = option(False, help="also evaluate -C style corruptions")
    families: tuple[str, ...] | None = option(None, nargs="*", help="corruption families (default: all)")
    severities: tuple[int, ...] = option((1, 2, 3, 4, 5), nargs="*")
    shift: str | None = option(None, metavar="SRC", help="another labelled set, classes mapped by name")
    batch_size: int = option(256)
    limit: int | None = option(None, help="evaluate the first N images only")
    workers: int = option(2, free=True, help="DataLoader workers decoding images")
    skip_bad: bool = option(False, help="leave undecodable images out of every metric (counted and listed under "
                            "'skipped' in --json) instead of stopping at the first")
    device: str = option("auto", free=True)
    seed: int = option(0, help="corruption noise seed")
    json_path: str | Path | None = option(None, flag="--json", metavar="PATH")
    plot: str | Path | None = option(None, metavar="PNG", help="reliability diagram")
    progress: bool = option(True, free=True, flag="--quiet", action="store_false")
    split: str | None = option(None, help=SPLIT_HELP)
    download: bool = option(False, free=True, help=DOWNLOAD_HELP)

    def validate(self) -> EvalConfig:
        """Refuse what the options alone rule out, before the model is loaded; returns ``self``."""
        check(self.batch_size >= 1, f"--batch-size must be positive, got {self.batch_size}")
        check(self.limit is None or self.limit >= 1, f"--limit must be positive, got {self.limit}")
        check(self.workers >= 0, f"--workers must be 0 or more, got {self.workers}")
        check(isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"--seed must be in 0..2**63-1, got {self.seed}")
        bad = [s for s in self.severities if s not in SEVERITIES]
        check(not bad, f"--severities must be among {list(SEVERITIES)}, got {bad}")
        unknown = sorted(set(self.families or ()) - set(CORRUPTIONS))
        check(not unknown, f"unknown corruption families {unknown}; known: {sorted(CORRUPTIONS)}")
        for flag, path in (("--json", self.json_path), ("--plot", self.plot)):
            if path is not None:
                parent = Path(path).resolve().parent
                check(parent.is_dir(), f"{flag} {path}: {parent} is not a directory")
                check(os.access(parent, os.W_OK), f"{flag} {path}: {parent} is not writable (read-only or "
                      "no permission); choose another path")
        return self


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Top-1/5, NLL, ECE (15 bins) of a checkpoint; optionally per corruption family/severity and on a
    shifted set: ``evaluate(EvalConfig(checkpoint=..., data=...))``. Returns the JSON report
    (fractions in 0..1)."""
    from ..checkpoint import load_checkpoint
    from ..sources import load_source

    check(isinstance(cfg, EvalConfig), "evaluate takes one EvalConfig: evaluate(EvalConfig(checkpoint=..., data=...))")
    cfg.validate()
    device = resolve_device(cfg.device)
    model, mcfg = load_checkpoint(cfg.checkpoint, device=device)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    src = load_source(cfg.data, split=cfg.split, download=cfg.download) if isinstance(cfg.data, str) else cfg.data
    shift = None if cfg.shift is None else load_source(cfg.shift, split=cfg.split, download=cfg.download)
    for s in filter(None, (src, shift)):  # both refused before the long runs, not after the corruption table
        check(s.channels == mcfg.in_chans,
              f"{s.spec} has {s.channels} channel(s), the checkpoint takes {mcfg.in_chans}: read it as ?mode=L or RGB")
    views, run, keep, _ = _views_and_run(cfg, model, mcfg, src, device)
    workers = src.loader_workers(cfg.workers)
    clean = run(views(), workers=workers, desc="eval", progress=cfg.progress)
    check(len(clean.skipped) != len(keep), f"none of the {len(keep)} images of {src.spec} can be decoded")
    report: dict[str, Any] = {"checkpoint": str(cfg.checkpoint), "data": src.spec,
                              "images": len(keep) - len(clean.skipped), **clean.compute(), "reliability": clean.bins()}
    if cfg.skip_bad:
        report["skipped"] = sorted(clean.skipped)
    if cfg.corruptions:
        # 65 small sets: starting loader workers for each (seconds apiece) costs more than rendering
        # a small set in this process, so small sets render here.
        workers = workers if len(keep) >= SMALL_SET else 0
        report["corruptions"] = _corruption_table(cfg, views, functools.partial(run, workers=workers, progress=False))
        report["mean_corruption_top1"] = float(np.mean([v for row in report["corruptions"].values()
                                                        for v in row.values()]))
    if shift is not None:
        report["shift"] = _shifted(cfg, model, mcfg, shift, device)
    if cfg.plot is not None:
        report["reliability_png"] = str(reliability_diagram(clean.bins(), cfg.plot,
                                                            title=f"{Path(cfg.checkpoint).name} on {src.spec}"))
    if cfg.json_path is not None:
        atomic_write_json(cfg.json_path, report)
    return report


def _corruption_table(cfg: EvalConfig, views: Callable[..., Dataset],
                      run: Callable[..., MetricAccumulator]) -> dict[str, dict[str, float]]:
    """Top-1 per corruption family and severity."""
    from tqdm.auto import tqdm

    families = list(cfg.families) if cfg.families else list(CORRUPTIONS)
    table: dict[str, dict[str, float]] = {f: {} for f in families}
    bar = tqdm(list(itertools.product(families, cfg.severities)), desc="corruptions", unit="set",
               disable=not cfg.progress, dynamic_ncols=True)
    for f, s in bar:
        bar.set_postfix_str(f"{f}@{s}")
        table[f][str(s)] = run(views(corruption=(f, int(s), cfg.seed)), desc=f"{f}@{s}").compute()["top1"]
    return table


def _views_and_run(cfg: EvalConfig, model: Any, mcfg: Any, src: Any, device: Any, shifted: bool = False) -> tuple:
    """(views of ``src``'s kept samples, runner, kept indices, model class subset); a ``shifted``
    set's classes are mapped by name (softmax over the shared ones), else they must be the model's."""
    crop_pct = float(mcfg.extra.get("crop_pct", 1.0)) if isinstance(mcfg.extra, dict) else 1.0
    label_map, subset, keep = _label_map(list(mcfg.classes), src, allow_subset=shifted)
    keep = keep[:cfg.limit] if cfg.limit is not None else keep
    views = functools.partial(EvalViews, src, mcfg.image_size, crop_pct, keep, label_map, skip_bad=cfg.skip_bad)
    run = functools.partial(_run, model, batch_size=cfg.batch_size, device=device, class_subset=subset)
    return views, run, keep, subset


def _shifted(cfg: EvalConfig, model: Any, mcfg: Any, src: Any, device: Any) -> dict[str, Any]:
    """Metrics on another labelled set (``--shift``), classes mapped by name."""
    views, run, keep, subset = _views_and_run(cfg, model, mcfg, src, device, shifted=True)
    res = run(views(), workers=src.loader_workers(cfg.workers), desc="shift", progress=cfg.progress)
    return {"data": src.spec, "images": len(keep) - len(res.skipped),
            "classes": int(len(subset) if subset is not None else len(src.classes)), **res.compute()}


def format_report(r: dict[str, Any]) -> str:
    """Human table: clean metrics, then corruption accuracy by family and severity."""
    skipped = f", {len(r['skipped'])} undecodable skipped" if r.get("skipped") else ""
    lines = [f"{r['checkpoint']} on {r['data']} ({r['images']} images{skipped})",
             f"  top-1 {100 * r['top1']:6.2f} %   top-5 {100 * r['top5']:6.2f} %   NLL {r['nll']:.4f}   "
             f"ECE {100 * r['ece']:.2f} %"]
    if "corruptions" in r:
        sev = list(next(iter(r["corruptions"].values())).keys())
        lines.append("  corruption top-1 (%)     " + " ".join(f"s{s:>5}" for s in sev) + "    mean")
        for fam, row in r["corruptions"].items():
            vals = [100 * row[s] for s in sev]
            lines.append(f"  {fam:<24} " + " ".join(f"{v:6.2f}" for v in vals) + f"  {np.mean(vals):6.2f}")
        lines.append(f"  mean corruption top-1  {100 * r['mean_corruption_top1']:.2f} %")
    if "shift" in r:
        s = r["shift"]
        lines.append(f"  shift {s['data']} ({s['images']} images, {s['classes']} classes): top-1 "
                     f"{100 * s['top1']:.2f} %  NLL {s['nll']:.4f}  ECE {100 * s['ece']:.2f} %")
    if "reliability_png" in r:
        lines.append(f"  reliability diagram: {r['reliability_png']}")
    return "\n".join(lines)
