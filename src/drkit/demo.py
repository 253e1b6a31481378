"""``drkit demo``: the whole story on Fashion-MNIST, end to end on a 2-core CPU in under 10 minutes.

1. measure the shipped out-of-fold teacher pair (``assets/teachers/fmnist_oof``) on the test set;
2. reinforce 10,000 training images (``padcrop``, top-5), each labelled only by the member that
   never trained on it (a teacher's labels of its own training images are near one-hot);
3. train ``drkit_cnn_tiny`` three ways, seeds 0, 1, 2: ERM with and without label smoothing, and DR
   on the store at ``drkit train``'s defaults;
4. evaluate each (top-1, NLL, ECE, corruptions); 5. print the table and the PNGs' paths.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .defaults import DISTILL_TEMPERATURE
from .errors import DrkitError

TEACHER = "fmnist_oof"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of a demo run; ``smoke`` shrinks everything to check the path in about a minute."""

    train_n: int = 10_000
    test_n: int | None = None
    corruption_n: int = 500
    samples: int = 10
    topk: int = 5
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1  # SGD at batch 128: beats the linearly scaled 0.05 for this small student
    #: one student per seed and run: a single seed cannot tell a gain from seed noise
    seeds: tuple[int, ...] = (0, 1, 2)
    families: tuple[str, ...] | None = None

    @classmethod
    def smoke(cls) -> "DemoConfig":
        return cls(train_n=256, test_n=256, corruption_n=64, samples=2, epochs=2, batch_size=64, seeds=(0,),
                   families=("gaussian_noise", "contrast"))


def teacher_dirs() -> list[Path]:
    """The shipped teacher directory: one ``drkit train --folds`` output."""
    d = Path(__file__).resolve().parent / "assets" / "teachers" / TEACHER
    if not (d / "folds.json").exists():
        raise DrkitError(f"demo teacher weights are missing: {d} has no folds.json")
    return [d]


def teacher_members(d: Path) -> list[Path]:
    """The member checkpoints of a folds directory, in fold order."""
    return [d / m["dir"] for m in json.loads((d / "folds.json").read_text())["members"]]


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def run_demo(out: str | Path = "demo-out", data_dir: str | None = None, smoke: bool = False,
             device: str = "auto", config: DemoConfig | None = None) -> dict[str, Any]:
    """Run the demo into ``out``; returns the table rows (also written to ``out/results.json``)."""
    from .inspect import format_stats, inspect_store
    from .reinforce import ReinforceConfig, reinforce

    cfg = config or (DemoConfig.smoke() if smoke else DemoConfig())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = f"fashion-mnist:{data_dir}" if data_dir else "fashion-mnist"
    train_src = f"{base}:train?n={cfg.train_n}"
    test_src = f"{base}:test" + (f"?n={cfg.test_n}" if cfg.test_n else "")
    val_src = f"{base}:test?n={min(cfg.test_n or 2000, 2000)}"  # per-epoch curve only; final eval uses test_src
    teachers = [f"ckpt:{d}" for d in teacher_dirs()]
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    eval_kw = dict(device=device, progress=True, workers=1)

    t = _step("1/5 teachers: measured test accuracy of the shipped checkpoints")
    teacher_rows = _measure_teachers(test_src, cfg.test_n or 2000, eval_kw)
    timings["teachers"] = time.perf_counter() - t

    t = _step(f"2/5 reinforce {cfg.train_n} training images x {cfg.samples} views (padcrop, top-{cfg.topk})")
    store = _fresh(out / "fmnist+")
    reinforce(ReinforceConfig(data=train_src, teacher=teachers, out=store, recipe="padcrop", views=cfg.samples,
                              topk=cfg.topk, seed=0, batch_size=512, workers=1, device=device, progress=True,
                              command=["drkit", "demo"]))
    stats = inspect_store(store, grid=out / "inspect_grid.png", json_path=out / "inspect.json", samples=5)
    print(format_stats(stats))
    timings["reinforce"] = time.perf_counter() - t

    rows = _students(cfg, out, store, {"train": train_src, "val": val_src, "test": test_src}, device, eval_kw)
    table = format_table(rows, teacher_rows, cfg, device=_device_line(device))
    print(f"\n{table}\n\ninspect grid:  {out / 'inspect_grid.png'}")
    for row in rows:
        print(f"{row['run']}:\n  curves       {row['curves']}\n  reliability  {row['reliability']}")
    print(f"\ntotal demo time: {(time.perf_counter() - t_all) / 60:.1f} min")
    result = {"config": cfg.__dict__, "teachers": teacher_rows, "rows": rows, "table": table,
              "seconds": time.perf_counter() - t_all, "timings": timings}
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "table.md").write_text(table + "\n")
    return result


def _fresh(path: Path) -> Path:
    """What an earlier demo left at ``path`` is replaced, with a line saying so."""
    if path.exists():
        print(f"drkit demo: replacing {path} (left by an earlier run)", file=sys.stderr)
        shutil.rmtree(path)
    return path


def _measure_teachers(test_src: str, limit: int, eval_kw: dict[str, Any]) -> list[dict[str, Any]]:
    """The shipped teachers' accuracy, measured on the test split (never a hard-coded figure)."""
    from .evaluate import EvalConfig, evaluate

    rows = []
    for member in teacher_members(teacher_dirs()[0]):
        r = evaluate(EvalConfig(checkpoint=member, data=test_src, limit=limit, **eval_kw))
        rows.append({"teacher": f"{member.parent.name}/{member.name}", "top1": r["top1"], "nll": r["nll"],
                     "ece": r["ece"], "images": r["images"]})
        print(f"  {rows[-1]['teacher']}: top-1 {100 * r['top1']:.2f} % on {r['images']} test images")
    return rows


def _students(cfg: DemoConfig, out: Path, store: Path, data: dict[str, str], device: str,
              eval_kw: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run (ERM with/without label smoothing, DR): per-seed figures and their means."""
    runs = {
        "ERM (padcrop, label smoothing 0.1)": ("erm_ls", dict(recipe="padcrop", label_smoothing=0.1)),
        "ERM (padcrop, no label smoothing)": ("erm", dict(recipe="padcrop", label_smoothing=0.0)),
        f"DR (reinforced store, defaults: T = {DISTILL_TEMPERATURE:g})": ("dr", dict(reinforced=str(store))),
    }
    rows = []
    for name, (folder, extra) in runs.items():
        per_seed = [_student(cfg, name, out / folder / f"seed{seed}", seed, data, device, eval_kw, extra)
                    for seed in cfg.seeds]
        rows.append({"run": name, "seeds": list(cfg.seeds), "curves": per_seed[0]["curves"],
                     "reliability": per_seed[0]["reliability"], "per_seed": per_seed,
                     **{k: sum(r[k] for r in per_seed) / len(per_seed)
                        for k in ("top1", "nll", "ece", "corruption_top1", "train_seconds")}})
    return rows


def _student(cfg: DemoConfig, name: str, run_dir: Path, seed: int, data: dict[str, str], device: str,
             eval_kw: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    from .evaluate import EvalConfig, evaluate
    from .train import TrainConfig, train

    t = _step(f"3-4/5 train + evaluate {name}, seed {seed}: drkit_cnn_tiny, {cfg.epochs} epochs")
    _fresh(run_dir)
    summary = train(TrainConfig.build(data=data["train"], val=data["val"], model="drkit_cnn_tiny", epochs=cfg.epochs,
                                batch_size=cfg.batch_size, lr=cfg.lr, opt="sgd", out=str(run_dir), seed=seed,
                                device=device, workers=1, quiet=False, command=["drkit", "demo"], **extra))
    train_s = time.perf_counter() - t
    r = evaluate(EvalConfig(checkpoint=run_dir, data=data["test"], plot=run_dir / "reliability.png",
                            json_path=run_dir / "eval.json", **eval_kw))
    rc = evaluate(EvalConfig(checkpoint=run_dir, data=data["test"], corruptions=True, families=cfg.families,
                             limit=cfg.corruption_n, json_path=run_dir / "eval_corruptions.json", **eval_kw))
    return {"seed": seed, "top1": r["top1"], "nll": r["nll"], "ece": r["ece"],
            "corruption_top1": rc["mean_corruption_top1"], "train_seconds": train_s,
            "curves": str(run_dir / "curves.png"), "reliability": str(run_dir / "reliability.png"),
            "summary": summary}


def format_table(rows: list[dict[str, Any]], teachers: list[dict[str, Any]], cfg: DemoConfig,
                 device: str = "") -> str:
    """Markdown table: per run the mean (and range) over seeds, then DR against the better ERM."""
    seeds = ", ".join(str(s) for s in cfg.seeds)
    lines = [f"command: `drkit demo{' --smoke' if cfg.train_n < 10_000 else ''}`; commit {_commit()}; seeds {seeds}; "
             f"device {device}; SGD lr {cfg.lr} batch {cfg.batch_size}; "
             f"DR at the defaults (T = {DISTILL_TEMPERATURE:g}, both sides); "
             f"store padcrop, {cfg.samples} views, top-{cfg.topk}", "",
             f"Fashion-MNIST, student drkit_cnn_tiny, {cfg.train_n} training images, {cfg.epochs} epochs, "
             f"test set {'first ' + str(cfg.test_n) if cfg.test_n else '10,000'} images; corruptions: "
             f"mean top-1 over {'all' if cfg.families is None else len(cfg.families)} families x 5 severities "
             f"on the first {cfg.corruption_n} test images; "
             + ("mean (min–max) over the seeds" if len(cfg.seeds) > 1 else "one seed"),
             "", "| run | top-1 % | NLL | ECE % | corruption top-1 % | train time s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {_cell(r, 'top1', 100, 2)} | {_cell(r, 'nll', 1, 4)} | "
                     f"{_cell(r, 'ece', 100, 2)} | {_cell(r, 'corruption_top1', 100, 2)} | {r['train_seconds']:.0f} |")
    lines += ["", _verdict(rows), "",
              "teachers (ensemble members): " + ", ".join(
                  f"{t['teacher']} {100 * t['top1']:.2f} % top-1 on {t['images']} test images" for t in teachers)]
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str, scale: float, digits: int) -> str:
    values = [scale * r[key] for r in row["per_seed"]]
    mean = f"{scale * row[key]:.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _verdict(rows: list[dict[str, Any]]) -> str:
    """DR's mean top-1 against the better ERM's, a difference only beyond the wider seed range; its
    ECE and NLL against the ERM that is best at each."""
    dr = rows[-1]
    erm = max(rows[:-1], key=lambda r: r["top1"])
    calibrated = min(rows[:-1], key=lambda r: r["ece"])
    delta = 100 * (dr["top1"] - erm["top1"])
    also = (f"ECE: DR {100 * dr['ece']:.2f} % vs {100 * calibrated['ece']:.2f} % for the best-calibrated ERM "
            f"({calibrated['run']}); NLL: DR {dr['nll']:.4f} vs {min(r['nll'] for r in rows[:-1]):.4f} for the "
            "best ERM")
    if len(dr["per_seed"]) < 2:
        return f"DR − best ERM top-1: {delta:+.2f} points (one seed: no spread to compare with). {also}"
    spread = max(100 * (max(v) - min(v)) for v in ([r["top1"] for r in row["per_seed"]] for row in (dr, erm)))
    verdict = "no difference" if abs(delta) <= spread else ("DR better" if delta > 0 else "DR worse")
    return f"DR − best ERM ({erm['run']}) top-1: {delta:+.2f} points, seed spread {spread:.2f}: **{verdict}**. {also}"


def _commit() -> str:
    import subprocess  # the checkout's commit (an installed wheel has none)

    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() or "unknown"


def _device_line(device: str) -> str:
    import os
    import platform

    from .device import resolve_device

    return f"{resolve_device(device)} ({platform.machine()}, {os.cpu_count()} cores)"
