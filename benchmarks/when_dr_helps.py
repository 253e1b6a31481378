"""When does dataset reinforcement help? DR − best ERM on Fashion-MNIST, swept one factor at a time.

    .venv/bin/python benchmarks/when_dr_helps.py --sweeps family soften     # ~4 h a seed on 2 cores, resumable
    .venv/bin/python benchmarks/when_dr_helps.py --sweeps family --families ViT Swin --family-epochs 100 --seeds 1
                                                   # one seed of the transformers' 100-epoch cells: ~2.2 h
    .venv/bin/python benchmarks/when_dr_helps.py --sweeps headline          # ~35 min
    .venv/bin/python benchmarks/when_dr_helps.py                            # every sweep: ~15 h on 2 cores
    .venv/bin/python benchmarks/when_dr_helps.py --sweeps family --parallel 16 --threads 1 --workers 0 --device cuda
                                                   # the family sweep on one GPU box (16 cores): not yet
                                                   # timed there (~10 min was estimated before the 100- and
                                                   # 200-epoch transformer cells were added)
    .venv/bin/python benchmarks/when_dr_helps.py --smoke --out /tmp/w       # the real path on tiny data, ~2 min

Every run trains one student on the first ``--train-n`` (10,000) Fashion-MNIST training images at
batch 128 and is evaluated on the 10,000 test images (top-1, NLL, ECE, reliability bins) and on 13
corruption families x 5 severities of the first ``--corruption-n`` test images. A cell compares DR
(the student on a store, at ``drkit train``'s default distillation settings unless the cell names a
temperature) with the *best* ERM (best by mean top-1 over the seeds) of the cell's ERM variants for
the same student, recipe and epochs, and reports ECE against the *best-calibrated* ERM as well. The
table gives DR − best ERM as mean ± std over seeds of the per-seed differences, and each row names
the commits that trained its runs. Store: the shipped out-of-fold teachers, padcrop, NS 15, top-5.

* ``headline``: drkit_cnn_tiny, 15 epochs, with online KD from the same teachers;
* ``schedule``: 5, 15, 30 and 60 epochs;
* ``teacher``: memorised (two teachers trained 40 epochs on all 60k images, the student's 10k among
  them; ``benchmarks/teachers/memorised_t*``) vs out-of-fold (``drkit train --folds 2``), T = 1, 2;
* ``recipe``: store recipe padcrop vs padcrop+ta vs padcrop+ra+re (size-aware magnitudes);
* ``soften``: T = 1, 1.5, 2, 3, 4 (both sides): the top-1 vs ECE trade-off (``*_tradeoff.png``);
* ``family``: drkit CNN, ResNet (resnet10t), MobileNetV3, ViT, Swin at 30 epochs (the transformers
  also at 100 and 200: at 30 they underfit their views, and the ViT's gain grew from 30 to 100 to 200
  epochs; ``Family.long_epochs``), each with the
  optimiser that suits it (:data:`FAMILIES`: SGD for the CNNs, AdamW + warmup for transformers),
  the same for ERM (padcrop, label smoothing 0 / 0.1), DR and online KD (drkit CNN, ResNet); every
  epoch is validated on the first ``--val-n`` test images so ``*_family.png`` shows whether ERM
  converged, beside reliability curves of DR, the best and the best-calibrated ERM.

Runs live in ``OUT/runs/<key>`` (shared between sweeps) and write ``result.json`` when evaluated,
copied to ``benchmarks/results/when_dr_helps_runs/<key>.json`` (committed); a later call, on this
machine or another, skips archived runs and resumes interrupted ones, so seeds and sweeps add up
across calls and sessions (runs go seed by seed). Each finished run rewrites
``benchmarks/results/when_dr_helps.md`` (and the call's end the PNGs and the README block) from
every finished run. Cells with fewer finished seeds than asked say so. Expected: DR ≥ best ERM + 1.0 top-1 with lower NLL than every ERM.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from provenance import commit_id  # noqa: E402
from run_archive import archive, finished  # noqa: E402
from readme_block import replace_block  # noqa: E402

from drkit.defaults import DISTILL_TEMPERATURE  # noqa: E402

ERM = (("padcrop", 0.0), ("padcrop", 0.1), ("rrc", 0.0), ("rrc", 0.1))
#: the family sweep's ERM: the store's own recipe (padcrop), with and without label smoothing
ERM_PADCROP = (("padcrop", 0.0), ("padcrop", 0.1))
MEMORISED = [HERE / "teachers" / "memorised_t1", HERE / "teachers" / "memorised_t2"]
SGD = {"opt": "sgd", "lr": 0.1}
#: transformers: AdamW, 3 warmup epochs, weight decay 0.05 (DeiT-style; SGD at lr 0.1 is no recipe for them)
ADAMW = {"opt": "adamw", "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 3.0}


@dataclass(frozen=True)
class Family:
    """A student family: its model, model arguments sized for 28-px images, and the optimiser
    recipe that suits it (the same for its ERM, DR and KD runs)."""

    model: str
    kwargs: dict[str, Any]
    optim: dict[str, Any]
    kd: bool = False  # online KD is run for these (it costs a teacher forward per step)
    #: longer family cells: the transformers underfit their views at 30 epochs (train top-1 on the views ~
    #: val top-1), so whether DR helps a student that can fit them is measured at these many epochs too
    long_epochs: tuple[int, ...] = ()


FAMILIES: dict[str, Family] = {
    "drkit CNN": Family("drkit_cnn_tiny", {}, SGD, kd=True),
    "ResNet": Family("resnet10t", {}, SGD, kd=True),
    "MobileNetV3": Family("mobilenetv3_small_050", {}, SGD),
    "ViT": Family("vit_tiny_patch16_224", {"img_size": 28, "patch_size": 4, "embed_dim": 96, "depth": 4,
                                           "num_heads": 3}, ADAMW, long_epochs=(100, 200)),
    "Swin": Family("swin_tiny_patch4_window7_224", {"img_size": 28, "patch_size": 2, "window_size": 7,
                                                    "embed_dim": 24, "depths": [2, 2], "num_heads": [2, 4]}, ADAMW,
                   long_epochs=(100, 200)),
}
SWEEPS = ("headline", "schedule", "teacher", "recipe", "soften", "family")
#: the per-epoch validation set of the family sweep (its curves show whether ERM converged)
VAL_N = 2000


@dataclass(frozen=True)
class Cell:
    """One comparison: DR with these settings vs the best ERM of the same student and epochs."""

    sweep: str
    label: str
    epochs: int = 15
    family: str = "drkit CNN"
    teacher: str = "oof"
    recipe: str = "padcrop"
    #: DR/KD temperature with targets softened on both sides; None = ``drkit train``'s defaults
    soften: float | None = None
    kd: bool = False
    erm: tuple[tuple[str, float], ...] = ERM
    #: validate every epoch on the first VAL_N test images (curves)
    curves: bool = False


def cells(sweeps: list[str]) -> list[Cell]:
    out: list[Cell] = []
    for s in sweeps:
        if s == "headline":
            out.append(Cell(s, "15 epochs, out-of-fold teachers, default distillation", kd=True))
        elif s == "schedule":
            out += [Cell(s, f"{e} epochs", epochs=e) for e in (5, 15, 30, 60)]
        elif s == "teacher":
            out += [Cell(s, f"{name} teachers, T = {t:g}", teacher=key, soften=None if t == 2.0 else t)
                    for t in (1.0, 2.0) for key, name in (("memorised", "memorised"), ("oof", "out-of-fold"))]
        elif s == "recipe":
            out += [Cell(s, f"store {r}", recipe=r) for r in ("padcrop", "padcrop+ta", "padcrop+ra+re")]
        elif s == "soften":
            out += [Cell(s, f"T = {t:g}", soften=None if t == 2.0 else t) for t in (1.0, 1.5, 2.0, 3.0, 4.0)]
        elif s == "family":
            out += [Cell(s, fam if e == 30 else f"{fam}, {e} epochs", epochs=e, family=fam, kd=f.kd and e == 30,
                         erm=ERM_PADCROP, curves=True)
                    for fam, f in FAMILIES.items() for e in (30, *f.long_epochs)]
    return out


# ----------------------------------------------------------------------------------------------
# one run (in a pool worker)
# ----------------------------------------------------------------------------------------------
def exit_with_parent(parent: int) -> None:
    """A pool worker ends when the benchmark process does (else it would train on for minutes)."""
    if any(t.name == "exit-with-parent" for t in threading.enumerate()):
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def one_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or reuse) one run, evaluate it once, return its result row (with the
    commit that trained it: rows of a table can come from different calls)."""
    exit_with_parent(job["parent"])
    os.environ["OMP_NUM_THREADS"] = str(job["threads"])
    import torch

    torch.set_num_threads(job["threads"])
    from drkit.evaluate import EvalConfig, evaluate
    from drkit.train import TrainConfig, read_metrics, train

    out = Path(job["out"])
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    if not (out / "config.json").exists():
        train(TrainConfig.build(data=job["data"], val=job["val"], model=job["model"], model_kwargs=job["model_kwargs"],
                          epochs=job["epochs"], batch_size=128, out=out, seed=job["seed"], device=job["device"],
                          workers=job["workers"], quiet=True, resume=(out / "state").exists(),
                          command=["benchmarks/when_dr_helps.py"], **job["optim"], **job["kw"]))
    rows = read_metrics(out)
    if len(rows) != job["epochs"]:
        raise SystemExit(f"{out}: {len(rows)} epochs trained, this run needs {job['epochs']}; use another --out")
    r = evaluate(EvalConfig(checkpoint=out, data=job["test"], device=job["device"], workers=job["workers"],
                            progress=False, limit=job["test_n"]))
    rc = evaluate(EvalConfig(checkpoint=out, data=job["test"], corruptions=True, limit=job["corruption_n"],
                             device=job["device"], workers=job["workers"], progress=False))
    result = {"key": out.name, "commit": job["commit"], "top1": r["top1"], "nll": r["nll"], "ece": r["ece"],
              "reliability": r["reliability"], "corruption_top1": rc["mean_corruption_top1"],
              "wall_s": sum(row["epoch_seconds"] for row in rows),
              "val_top1": [row["val_top1"] for row in rows if "val_top1" in row],
              "train_top1": [row["train_top1"] for row in rows]}
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ----------------------------------------------------------------------------------------------
# planning: cells -> stores and runs
# ----------------------------------------------------------------------------------------------
def teacher_specs(name: str) -> list[str]:
    from drkit.demo import teacher_dirs

    return [f"ckpt:{d}" for d in (MEMORISED if name == "memorised" else teacher_dirs())]


def store_dir(out: Path, cell: Cell) -> Path:
    return out / "stores" / f"{cell.teacher}-{cell.recipe}"


def run_keys(cell: Cell, seed: int) -> dict[str, str]:
    """Role -> run key; ERM keys ignore the store, so cells share their baselines."""
    base = f"{FAMILIES[cell.family].model}-e{cell.epochs}{'-v' if cell.curves else ''}"
    keys = {f"erm {r} ls{ls:g}": f"{base}-erm-{r}-ls{ls:g}-s{seed}" for r, ls in cell.erm}
    t = cell.soften if cell.soften is not None else DISTILL_TEMPERATURE
    keys["dr"] = f"{base}-dr-{cell.teacher}-{cell.recipe}-T{t:g}-s{seed}"
    if cell.kd:
        keys["kd"] = f"{base}-kd-{cell.teacher}-{cell.recipe}-T{t:g}-s{seed}"
    return keys


def distill_kwargs(cell: Cell) -> dict[str, Any]:
    """No flag at the defaults (what a user who types no flag gets); else T on both sides."""
    if cell.soften is None:
        return {}
    return {"temperature": cell.soften, "soften_targets": cell.soften != 1.0}


def job_for(role: str, key: str, cell: Cell, seed: int, args: argparse.Namespace, data: str, test: str,
            out: Path) -> dict[str, Any]:
    fam = FAMILIES[cell.family]
    if role == "dr":
        kw: dict[str, Any] = {"reinforced": str(store_dir(out, cell)), **distill_kwargs(cell)}
    elif role == "kd":
        kw = {"kd_teacher": teacher_specs(cell.teacher), "recipe": cell.recipe, **distill_kwargs(cell)}
    else:
        _, recipe, ls = role.split(" ")
        kw = {"recipe": recipe, "label_smoothing": float(ls[2:])}
    return {"out": str(out / "runs" / key), "data": data, "test": test, "epochs": cell.epochs, "model": fam.model,
            "model_kwargs": fam.kwargs, "optim": fam.optim, "seed": seed, "kw": kw, "threads": args.threads,
            "workers": args.workers, "device": args.device, "corruption_n": args.corruption_n,
            "test_n": args.test_n, "val": f"{test}?n={args.val_n}" if cell.curves else None,
            "commit": commit_id(), "parent": os.getpid()}


def make_stores(todo: list[Cell], out: Path, data: str, args: argparse.Namespace) -> None:
    from drkit.reinforce import ReinforceConfig, reinforce

    for cell in {store_dir(out, c): c for c in todo}.values():
        root = store_dir(out, cell)
        if (root / "manifest.json").exists():
            continue
        print(f"reinforce {root.name}", flush=True)
        reinforce(ReinforceConfig(data=data, teacher=teacher_specs(cell.teacher), out=root, recipe=cell.recipe,
                                  views=args.samples, topk=5, seed=0, batch_size=512, workers=0, device=args.device,
                                  resume=root.exists(), progress=False, command=sys.argv))


# ----------------------------------------------------------------------------------------------
# the table and the figure
# ----------------------------------------------------------------------------------------------
def _ms(values: list[float], scale: float = 100.0, fmt: str = ".2f") -> str:
    vals = [scale * v for v in values]
    sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
    return f"{statistics.mean(vals):{fmt}} ± {sd:{fmt}}" if len(vals) > 1 else f"{vals[0]:{fmt}} (1 seed)"


def summarise(cell: Cell, seeds: list[int], results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """DR − best ERM over the seeds where DR and every ERM variant finished; the best-calibrated
    ERM (lowest mean ECE) beside the most accurate one: a student that copies a stronger teacher's
    confidence is judged against the ERM that is best at what it claims."""
    per = [(s, run_keys(cell, s)) for s in seeds]
    per = [(s, k) for s, k in per if all(v in results for r, v in k.items() if r != "kd")]
    if not per:
        return None
    roles = [r for r in per[0][1] if r.startswith("erm")]
    mean = lambda role, key: statistics.mean(results[k[role]][key] for _, k in per)  # noqa: E731
    best = max(roles, key=lambda r: mean(r, "top1"))
    calibrated = min(roles, key=lambda r: mean(r, "ece"))
    dr = [results[k["dr"]] for _, k in per]
    erm = [results[k[best]] for _, k in per]
    out = {"cell": cell, "seeds": [s for s, _ in per], "best_erm": best, "dr": dr, "erm": erm,
           "calibrated_erm": calibrated, "calibrated": [results[k[calibrated]] for _, k in per],
           "gain": [d["top1"] - e["top1"] for d, e in zip(dr, erm)],
           "nll_below_every_erm": all(mean("dr", "nll") < mean(r, "nll") for r in roles),
           "commits": sorted({results[k[r]].get("commit", "?") for _, k in per for r in ["dr", *roles]})}
    kd = [results[k["kd"]] for _, k in per if k.get("kd") in results]
    if kd:  # online KD where it was affordable: over the seeds where it finished
        out["kd"] = kd
    return out


def table(rows: list[dict[str, Any]], header: list[str]) -> str:
    lines = header + ["", "| sweep | setting | seeds | DR − best ERM top-1 (pp) | DR top-1 % | best ERM (which) top-1 % "
                      "| DR / best ERM NLL | DR NLL < every ERM | DR / best-calibrated ERM (which) ECE % "
                      "| DR / best ERM corruption top-1 % (DR − ERM) | DR / best ERM last-epoch train top-1 on views % "
                      "| online KD top-1 % | commits |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, dr, erm = r["cell"], r["dr"], r["erm"]
        mean = lambda xs, k: statistics.mean(x[k] for x in xs)  # noqa: E731
        kd = _ms([x["top1"] for x in r["kd"]]) + (f" ({len(r['kd'])} seeds)" if len(r["kd"]) > 1 else "") \
            if "kd" in r else "–"
        lines.append(
            f"| {c.sweep} | {c.label} | {len(r['seeds'])} | {_ms(r['gain'])} | {_ms([x['top1'] for x in dr])} | "
            f"{_ms([x['top1'] for x in erm])} ({r['best_erm'][4:]}) | {mean(dr, 'nll'):.4f} / {mean(erm, 'nll'):.4f} | "
            f"{'yes' if r['nll_below_every_erm'] else 'no'} | {100 * mean(dr, 'ece'):.2f} / "
            f"{100 * mean(r['calibrated'], 'ece'):.2f} ({r['calibrated_erm'][4:]}) | "
            f"{100 * mean(dr, 'corruption_top1'):.2f} / {100 * mean(erm, 'corruption_top1'):.2f} "
            f"({_ms([d['corruption_top1'] - e['corruption_top1'] for d, e in zip(dr, erm)])}) | "
            f"{_last_train(dr)} / {_last_train(erm)} | {kd} | "
            f"{', '.join(r['commits'])} |")
    return "\n".join(lines)


def _last_train(runs: list[dict[str, Any]]) -> str:
    """Mean last-epoch training top-1 on the (augmented or stored) views: far below the teachers' top-1
    on the store's views, a student underfits them (the ``--report`` header gives the teachers')."""
    last = [r["train_top1"][-1] for r in runs if r.get("train_top1")]
    return f"{100 * statistics.mean(last):.1f}" if len(last) == len(runs) else "–"


def backfill_train_top1(out: Path, args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    """Runs archived before result rows kept the training curve get it from their own ``metrics.jsonl``."""
    from drkit.train import read_metrics

    for key, r in results.items():
        run = out / "runs" / key
        if "train_top1" not in r and (run / "metrics.jsonl").exists():
            r["train_top1"] = [row["train_top1"] for row in read_metrics(run)]
            archive(args, r)


def store_views_top1(out: Path) -> str:
    """The teachers' top-1 on the family sweep's store views (reinforce's diagnostics)."""
    manifest = store_dir(out, Cell("family", "store")) / "manifest.json"  # the family cells' store
    top1 = json.loads(manifest.read_text())["diagnostics"]["views"]["top1"] if manifest.exists() else None
    return f"{100 * top1:.2f} %" if top1 is not None else "not recorded"


def figure(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [s for s in SWEEPS if any(r["cell"].sweep == s for r in rows)]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(3.4 * len(sweeps), 3.4), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], sweeps):
        rs = [r for r in rows if r["cell"].sweep == s]
        means = [100 * statistics.mean(r["gain"]) for r in rs]
        errs = [100 * statistics.stdev(r["gain"]) if len(r["gain"]) > 1 else 0.0 for r in rs]
        x = range(len(rs))
        ax.bar(x, means, yerr=errs, capsize=3, color=["tab:green" if m > 0 else "tab:red" for m in means])
        ax.axhline(0, color="black", lw=0.8)
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xticks(list(x), [r["cell"].label.replace(" teachers", "").replace(", out-of-fold", "") for r in rs],
                      rotation=35, ha="right", fontsize=7)
        ax.set_title(s, fontsize=9)
    axes[0][0].set_ylabel("DR − best ERM top-1 (pp)")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pooled_reliability(runs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Per-bin mean confidence and accuracy pooled over seeds (count-weighted), filled bins only."""
    n_bins = len(runs[0]["reliability"]["count"])
    conf, acc = [], []
    for i in range(n_bins):
        n = sum(r["reliability"]["count"][i] for r in runs)
        if n:
            conf.append(sum(r["reliability"]["confidence"][i] * r["reliability"]["count"][i] for r in runs) / n)
            acc.append(sum(r["reliability"]["accuracy"][i] * r["reliability"]["count"][i] for r in runs) / n)
    return conf, acc


def family_figure(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Per family: validation top-1 by epoch (did ERM converge?) and reliability curves of DR, the
    most accurate and the best-calibrated ERM, pooled over seeds."""
    fam = [r for r in rows if r["cell"].sweep == "family"]
    if not fam:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(fam), figsize=(max(3.2 * len(fam), 6.4), 6.2), squeeze=False)
    for col, r in enumerate(fam):
        runs = {f"best ERM ({r['best_erm'][4:]})": r["erm"], "DR": r["dr"]}
        if r["calibrated_erm"] != r["best_erm"]:
            runs[f"calibrated ERM ({r['calibrated_erm'][4:]})"] = r["calibrated"]
        if "kd" in r:
            runs["online KD"] = r["kd"]
        ax, rel = axes[0][col], axes[1][col]
        for name, rs in runs.items():
            curves = [x["val_top1"] for x in rs if x.get("val_top1")]
            if curves:
                n = min(len(c) for c in curves)
                ax.plot(range(1, n + 1), [100 * statistics.mean(c[e] for c in curves) for e in range(n)],
                        label=name, lw=1.2)
            if name != "online KD":
                conf, acc = _pooled_reliability(rs)
                rel.plot(conf, acc, marker="o", ms=3, lw=1.2,
                         label=f"{name}: ECE {100 * statistics.mean(x['ece'] for x in rs):.2f} %")
        ax.set_title(f"{r['cell'].label} ({len(r['seeds'])} seed{'s' * (len(r['seeds']) != 1)})", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(f"val top-1 % (first {VAL_N} test images)", fontsize=7)
        ax.legend(fontsize=6)
        rel.plot([0, 1], [0, 1], ls="--", color="gray", lw=0.8)
        rel.set_xlabel("confidence", fontsize=8)
        rel.set_ylabel("accuracy", fontsize=8)
        rel.legend(fontsize=6, loc="upper left")
    fig.suptitle(title, fontsize=7, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def tradeoff_figure(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Top-1 against ECE over the distillation temperature (soften sweep), ERM variants as points."""
    soft = [r for r in rows if r["cell"].sweep == "soften"]
    if not soft:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = [(100 * statistics.mean(x["ece"] for x in r["dr"]), 100 * statistics.mean(x["top1"] for x in r["dr"]),
            r["cell"].label) for r in soft]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:green", label="DR")
    for x, y, label in pts:
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for r, name in ((soft[0]["erm"], soft[0]["best_erm"]), (soft[0]["calibrated"], soft[0]["calibrated_erm"])):
        ax.plot(100 * statistics.mean(x["ece"] for x in r), 100 * statistics.mean(x["top1"] for x in r), "s",
                label=name.replace("erm ", "ERM "))
    ax.set_xlabel("ECE % (15 bins, test)")
    ax.set_ylabel("top-1 % (test)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=7, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/when-dr-helps")
    ap.add_argument("--sweeps", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-n", type=int, default=10_000)
    ap.add_argument("--test-n", type=int, default=None, help="test images for top-1/NLL/ECE (default: all 10,000)")
    ap.add_argument("--val-n", type=int, default=VAL_N, help="test images validated each epoch (family curves)")
    ap.add_argument("--epochs", type=int, default=None, help="override every cell's epochs (smoke runs)")
    ap.add_argument("--samples", type=int, default=15, help="stored views per image")
    ap.add_argument("--corruption-n", type=int, default=500, help="test images for the corruption benchmark")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    ap.add_argument("--results", default=str(HERE / "results" / "when_dr_helps"), help="PATH.md and PATH*.png")
    ap.add_argument("--readme", default=str(HERE.parent / "README.md"), help="README whose block is rewritten ('' off)")
    ap.add_argument("--archive", default=str(HERE / "results" / "when_dr_helps_runs"),
                    help="folder of finished runs' result rows, committed: runs found there are not run again")
    ap.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES),
                    help="student families of the family sweep")
    ap.add_argument("--family-epochs", type=int, nargs="+", default=None,
                    help="family sweep: only the cells of these schedules (e.g. 100: the transformers' long cells)")
    ap.add_argument("--roles", nargs="+", choices=["erm", "dr", "kd"], default=["erm", "dr", "kd"],
                    help="run only these kinds of run (e.g. the ERM baselines while teachers train)")
    ap.add_argument("--plan", action="store_true", help="print the runs a call would make, then stop")
    ap.add_argument("--report", action="store_true",
                    help="only rewrite the table, figure and README block from the finished runs")
    ap.add_argument("--smoke", action="store_true", help="the real path on tiny data (256 images, 1 epoch, one seed); "
                    "results and runs go under --out, the README is left alone")
    args = ap.parse_args(argv)
    if args.smoke:
        args.train_n, args.test_n, args.val_n, args.corruption_n, args.epochs = 256, 256, 128, 32, 1
        args.samples, args.seeds, args.readme = 2, args.seeds[:1], ""
        args.results = str(Path(args.out) / "results" / "when_dr_helps")
        args.archive = str(Path(args.out) / "results" / "runs")

    out = Path(args.out)
    if args.report:
        report(out, args)
        return
    base = f"fashion-mnist:{args.data_dir}" if args.data_dir else "fashion-mnist"
    data, test = f"{base}:train?n={args.train_n}", f"{base}:test"
    todo = [dataclasses.replace(c, epochs=args.epochs) if args.epochs else c for c in cells(args.sweeps)
            if c.sweep != "family" or (c.family in args.families
                                       and (args.family_epochs is None or c.epochs in args.family_epochs))]
    jobs: dict[str, dict[str, Any]] = {}
    # seed-major order: a call cut short leaves every cell with its first seeds rather than one cell whole
    for s in args.seeds:
        for cell in todo:
            for role, key in run_keys(cell, s).items():
                if role.split(" ")[0] in args.roles:
                    jobs.setdefault(key, job_for(role, key, cell, s, args, data, test, out))
    done = finished(out, args)
    pending = [k for k in jobs if k not in done]
    print(f"{len(todo)} cells, {len(jobs)} runs, {len(pending)} to do", flush=True)
    if args.plan:
        print("\n".join(pending))
        return
    if "dr" in args.roles:
        make_stores(todo, out, data, args)
    # spawn, not fork: forking after torch started its OpenMP threads can deadlock the children
    with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in pool.map(one_run, [jobs[k] for k in pending]):
            print(f"{r['key']}: top-1 {100 * r['top1']:.2f} %  NLL {r['nll']:.4f}", flush=True)
            archive(args, r)
            report(out, args, quiet=True, figures=False)  # a call cut short still leaves its table
    report(out, args)


def report(out: Path, args: argparse.Namespace, quiet: bool = False, figures: bool = True) -> None:
    """Table + figures from every finished run of every sweep (not only this call's)."""
    results = finished(out, args)
    backfill_train_top1(out, args, results)
    seeds = sorted({int(k.rsplit("-s", 1)[1]) for k in results})
    every = [dataclasses.replace(c, epochs=args.epochs) if args.epochs else c for c in cells(list(SWEEPS))]
    rows = [r for c in every if (r := summarise(c, seeds, results)) is not None]
    commit = commit_id()
    device = f"{args.device} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    header = [f"command: `{' '.join(['benchmarks/when_dr_helps.py', *sys.argv[1:]])}` (runs accumulate across calls "
              f"in {out}/runs; each row names the commits that trained its runs)",
              f"written at commit {commit}; device {device}; {args.threads} threads per run; Fashion-MNIST first "
              f"{args.train_n} training images, test {args.test_n or '10,000'} images, corruptions on the first "
              f"{args.corruption_n}; batch 128; SGD lr 0.1 (CNNs) or AdamW lr 1e-3 wd 0.05 3 warmup epochs "
              f"(ViT, Swin); DR and KD at drkit train's defaults unless a T is named (T = {DISTILL_TEMPERATURE:g} "
              f"both sides); stores NS {args.samples}, top-5, seed 0; the out-of-fold teachers' top-1 on the padcrop "
              f"store's views: {store_views_top1(out)}; seeds with finished runs: {seeds}"]
    text = table(rows, header)
    md = Path(args.results + ".md")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text + "\n")
    title = f"Fashion-MNIST 10k, mean over seeds, written at {commit}"
    if rows and figures:
        figure(rows, Path(args.results + ".png"),
               f"DR − best ERM on Fashion-MNIST (mean ± std over seeds), {commit}")
        family_figure(rows, Path(args.results + "_family.png"), f"family sweep: curves and reliability; {title}")
        tradeoff_figure(rows, Path(args.results + "_tradeoff.png"),
                        f"drkit CNN, 15 epochs: top-1 vs ECE over T; {title}")
    if args.readme:
        replace_block(Path(args.readme), "when_dr_helps", text)
    if not quiet:
        print(text)


if __name__ == "__main__":
    main()
