"""The ``drkit eval`` verb: a checkpoint on a labelled split, clean, corrupted and shifted."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DrkitError
from ..fileio import atomic_write_json
from .corruptions import CORRUPTIONS, corrupt, corruption_seed
from .metrics import MetricAccumulator


class EvalViews(Dataset):
    """Plain eval views at the model's size, optionally corrupted (per-image seeded)."""

    def __init__(self, src: Any, size: int, crop_pct: float, indices: np.ndarray, label_map: np.ndarray | None,
                 family: str | None = None, severity: int = 0, seed: int = 0):
        self.src, self.size, self.crop_pct, self.indices = src, size, crop_pct, indices
        self.label_map, self.family, self.severity, self.seed = label_map, family, severity, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        from ..augment import eval_transform

        i = int(self.indices[k])
        x = eval_transform(self.src.load_uint8(i), self.size, self.crop_pct)
        if self.family is not None:
            x = corrupt(x, self.family, self.severity, corruption_seed(self.seed, self.family, self.severity, i))
        y = int(self.src.labels[i])
        return x, int(self.label_map[y]) if self.label_map is not None else y


@torch.inference_mode()
def _run(model: torch.nn.Module, ds: Dataset, batch_size: int, device: str, workers: int,
         class_subset: np.ndarray | None, desc: str, progress: bool) -> MetricAccumulator:
    from tqdm.auto import tqdm

    acc = MetricAccumulator()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    for x, y in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False, dynamic_ncols=True):
        x = x.to(device, non_blocking=True).float().div_(255).contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        if class_subset is not None:  # shifted set with fewer classes: restrict the softmax to them
            logits = logits[:, torch.as_tensor(class_subset, device=logits.device)]
        acc.update(logits.softmax(-1).cpu(), y)
    return acc


def _label_map(model_classes: list[str], src: Any, allow_subset: bool) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                                   np.ndarray]:
    """(label map src->eval index, model class subset, kept sample indices) for a source."""
    src_classes = list(src.classes)
    if not model_classes or src_classes == model_classes:
        if model_classes and len(src_classes) != len(model_classes):
            raise DrkitError(f"{src.spec} has {len(src_classes)} classes, the checkpoint {len(model_classes)}")
        return None, None, np.arange(len(src))
    if not allow_subset:
        raise DrkitError(f"{src.spec}'s class names differ from the checkpoint's; use --shift for a mapped set")
    index = {name: i for i, name in enumerate(model_classes)}
    shared = [c for c in src_classes if c in index]
    if not shared:
        raise DrkitError(f"{src.spec} shares no class name with the checkpoint")
    subset = np.array(sorted(index[c] for c in shared))
    position = {m: k for k, m in enumerate(subset)}
    label_map = np.array([position.get(index.get(c, -1), -1) for c in src_classes])
    keep = np.flatnonzero(label_map[np.asarray(src.labels)] >= 0)
    return label_map, subset, keep


#: corruption sets smaller than this are rendered in the main process (no loader workers)
SMALL_SET = 2048


def evaluate(checkpoint: str | Path, data: str, *, split: str | None = None, download: bool = False,
             corruptions: bool = False, severities: Sequence[int] = (1, 2, 3, 4, 5),
             families: Sequence[str] | None = None, shift: str | None = None, batch_size: int = 256,
             device: str = "auto", json_path: str | Path | None = None, plot: str | Path | None = None,
             limit: int | None = None, seed: int = 0, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Top-1/5, NLL, ECE (15 bins) of a checkpoint; optionally per corruption family/severity and on a
    shifted set. Returns the JSON report (fractions in 0..1)."""
    from ..checkpoint import load_checkpoint
    from ..distributed import resolve_device
    from ..sources import load_source
    from .plots import reliability_diagram

    device = resolve_device(device)
    model, cfg = load_checkpoint(checkpoint, device=device)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    crop_pct = float(cfg.extra.get("crop_pct", 1.0)) if isinstance(cfg.extra, dict) else 1.0
    src = load_source(data, split=split, download=download)
    if src.channels != cfg.in_chans:
        raise DrkitError(f"{src.spec} has {src.channels} channel(s), the checkpoint takes {cfg.in_chans}")
    label_map, subset, keep = _label_map(list(cfg.classes), src, allow_subset=False)
    if limit is not None:
        keep = keep[:limit]
    fam = list(families) if families else list(CORRUPTIONS)
    unknown = sorted(set(fam) - set(CORRUPTIONS))
    if unknown:
        raise DrkitError(f"unknown corruption families {unknown}; known: {sorted(CORRUPTIONS)}")
    run = dict(batch_size=batch_size, device=device, workers=workers, progress=progress)
    clean = _run(model, EvalViews(src, cfg.image_size, crop_pct, keep, label_map), class_subset=subset,
                 desc="eval", **run)
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "data": src.spec, "images": len(keep), **clean.compute()}
    if corruptions:
        from tqdm.auto import tqdm

        table: dict[str, dict[str, float]] = {}
        # 65 small sets: starting loader workers for each (seconds apiece) costs more than rendering
        # a small set in this process, so small sets render here.
        quiet = {**run, "progress": False, "workers": workers if len(keep) >= SMALL_SET else 0}
        bar = tqdm(total=len(fam) * len(severities), desc="corruptions", unit="set", disable=not progress,
                   dynamic_ncols=True)
        for f in fam:
            table[f] = {}
            for s in severities:
                bar.set_postfix_str(f"{f}@{s}")
                ds = EvalViews(src, cfg.image_size, crop_pct, keep, label_map, family=f, severity=int(s), seed=seed)
                table[f][str(s)] = _run(model, ds, class_subset=subset, desc=f"{f}@{s}", **quiet).compute()["top1"]
                bar.update(1)
        bar.close()
        report["corruptions"] = table
        report["mean_corruption_top1"] = float(np.mean([v for row in table.values() for v in row.values()]))
    if shift is not None:
        ssrc = load_source(shift, download=download)
        smap, ssub, skeep = _label_map(list(cfg.classes), ssrc, allow_subset=True)
        if limit is not None:
            skeep = skeep[:limit]
        sres = _run(model, EvalViews(ssrc, cfg.image_size, crop_pct, skeep, smap), class_subset=ssub,
                    desc="shift", **run)
        report["shift"] = {"data": ssrc.spec, "images": len(skeep),
                           "classes": int(len(ssub) if ssub is not None else len(ssrc.classes)), **sres.compute()}
    if plot is not None:
        report["reliability_png"] = str(reliability_diagram(clean.bins(), plot,
                                                            title=f"{Path(checkpoint).name} on {src.spec}"))
    if json_path is not None:
        atomic_write_json(json_path, report)
    return report


def format_report(r: dict[str, Any]) -> str:
    """Human table: clean metrics, then corruption accuracy by family and severity."""
    lines = [f"{r['checkpoint']} on {r['data']} ({r['images']} images)",
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
