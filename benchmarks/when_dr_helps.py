"""When does dataset reinforcement help? DR − best ERM on Fashion-MNIST, swept one factor at a time.

    .venv/bin/python benchmarks/when_dr_helps.py --sweeps headline                 # ~35 min, 2 cores
    .venv/bin/python benchmarks/when_dr_helps.py --sweeps headline teacher soften  # ~1 h more
    .venv/bin/python benchmarks/when_dr_helps.py                                   # every sweep: ~15 h on 2 cores
    .venv/bin/python benchmarks/when_dr_helps.py --parallel 8 --threads 2 --device cpu   # a 16-core box

Every run trains one student on the first ``--train-n`` (10,000) Fashion-MNIST training images with
SGD at batch 128 (lr 0.1, cosine) and is evaluated on all 10,000 test images (top-1, NLL, ECE) and on
13 corruption families x 5 severities of the first ``--corruption-n`` test images. A cell compares
DR (the student on a store) with the *best* ERM of recipes {padcrop, rrc} x label smoothing {0, 0.1}
(best by mean top-1 over the seeds) for the same student and epochs; the table reports, per cell,
DR − best ERM as mean ± std over seeds of the per-seed differences, and DR's and the best ERM's
absolute figures. Sweeps (drkit_cnn_tiny unless stated; store: shipped out-of-fold teachers, padcrop,
NS 15, top-5; DR targets softened to ``p**(1/T)`` with the student at the same T = 2, the setting
that won the ``soften`` sweep; KD uses the same T):

* ``headline``: 15 epochs, with online KD from the same teachers;
* ``schedule``: 5, 15, 30 and 60 epochs;
* ``teacher``: memorised (two teachers trained 40 epochs on all 60k images, the student's 10k among
  them; ``benchmarks/teachers/memorised_t*``) vs out-of-fold (``drkit train --folds 2``), at T = 1
  and T = 2, 15 epochs;
* ``recipe``: store recipe padcrop vs padcrop+ta vs padcrop+ra+re (size-aware magnitudes), 15 epochs;
* ``soften``: T = 1 (targets as stored), 2, 4, 15 epochs;
* ``family``: the reference work's families at 30 epochs: drkit CNN, ResNet, MobileNetV3, ViT, Swin.

Runs live in ``OUT/runs/<key>`` (shared between sweeps) and write ``result.json`` when evaluated; a
later call skips finished runs and resumes interrupted ones, so seeds and sweeps add up across calls.
Each call rewrites ``benchmarks/results/when_dr_helps.{md,png}`` and the README block from every
finished run, with the command, commit, seeds and device. Cells with fewer finished seeds than asked
say so. Expected: DR ≥ best ERM + 1.0 top-1 with lower NLL than every ERM at 15 epochs (headline).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from readme_block import replace_block  # noqa: E402

ERM = [("padcrop", 0.0), ("padcrop", 0.1), ("rrc", 0.0), ("rrc", 0.1)]
MEMORISED = [HERE / "teachers" / "memorised_t1", HERE / "teachers" / "memorised_t2"]
#: student family -> (model name, model kwargs); sized for 28-px images on a CPU
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "drkit CNN": ("drkit_cnn_tiny", {}),
    "ResNet": ("resnet10t", {}),
    "MobileNetV3": ("mobilenetv3_small_050", {}),
    "ViT": ("vit_tiny_patch16_224", {"img_size": 28, "patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3}),
    "Swin": ("swin_tiny_patch4_window7_224", {"img_size": 28, "patch_size": 2, "window_size": 7, "embed_dim": 24,
                                              "depths": [2, 2], "num_heads": [2, 4]}),
}
SWEEPS = ("headline", "schedule", "teacher", "recipe", "soften", "family")


@dataclass(frozen=True)
class Cell:
    """One comparison: DR with these settings vs the best ERM of the same student and epochs."""

    sweep: str
    label: str
    epochs: int = 15
    family: str = "drkit CNN"
    teacher: str = "oof"
    recipe: str = "padcrop"
    soften: float = 2.0
    kd: bool = False
    erm_kwargs: dict[str, Any] = field(default_factory=dict, compare=False)


def cells(sweeps: list[str]) -> list[Cell]:
    out: list[Cell] = []
    for s in sweeps:
        if s == "headline":
            out.append(Cell(s, "15 epochs, out-of-fold teachers, T = 2", kd=True))
        elif s == "schedule":
            out += [Cell(s, f"{e} epochs", epochs=e) for e in (5, 15, 30, 60)]
        elif s == "teacher":
            out += [Cell(s, f"{name} teachers, T = {t:g}", teacher=key, soften=t)
                    for t in (1.0, 2.0) for key, name in (("memorised", "memorised"), ("oof", "out-of-fold"))]
        elif s == "recipe":
            out += [Cell(s, f"store {r}", recipe=r) for r in ("padcrop", "padcrop+ta", "padcrop+ra+re")]
        elif s == "soften":
            out += [Cell(s, f"T = {t:g}", soften=t) for t in (1.0, 2.0, 4.0)]
        elif s == "family":
            out += [Cell(s, fam, epochs=30, family=fam) for fam in FAMILIES]
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
    """Train (or resume, or reuse) one run, evaluate it once, return its result row."""
    exit_with_parent(job["parent"])
    os.environ["OMP_NUM_THREADS"] = str(job["threads"])
    import torch

    torch.set_num_threads(job["threads"])
    from drkit.evaluate import evaluate
    from drkit.train import read_metrics, train

    out = Path(job["out"])
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    if not (out / "config.json").exists():
        train(data=job["data"], val=None, model=job["model"], model_kwargs=job["model_kwargs"], epochs=job["epochs"],
              batch_size=128, lr=0.1, opt="sgd", out=out, seed=job["seed"], device=job["device"],
              workers=job["workers"], quiet=True, resume=(out / "state").exists(),
              command=["benchmarks/when_dr_helps.py"], **job["kw"])
    rows = read_metrics(out)
    if len(rows) != job["epochs"]:
        raise SystemExit(f"{out}: {len(rows)} epochs trained, this run needs {job['epochs']}; use another --out")
    r = evaluate(out, job["test"], device=job["device"], workers=job["workers"], progress=False)
    rc = evaluate(out, job["test"], corruptions=True, limit=job["corruption_n"], device=job["device"],
                  workers=job["workers"], progress=False)
    result = {"key": out.name, "top1": r["top1"], "nll": r["nll"], "ece": r["ece"],
              "corruption_top1": rc["mean_corruption_top1"], "wall_s": sum(row["epoch_seconds"] for row in rows)}
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
    base = f"{FAMILIES[cell.family][0]}-e{cell.epochs}"
    keys = {f"erm {r} ls{ls:g}": f"{base}-erm-{r}-ls{ls:g}-s{seed}" for r, ls in ERM}
    keys["dr"] = f"{base}-dr-{cell.teacher}-{cell.recipe}-T{cell.soften:g}-s{seed}"
    if cell.kd:
        keys["kd"] = f"{base}-kd-{cell.teacher}-{cell.recipe}-s{seed}"
    return keys


def job_for(role: str, key: str, cell: Cell, seed: int, args: argparse.Namespace, data: str, test: str,
            out: Path) -> dict[str, Any]:
    model, model_kwargs = FAMILIES[cell.family]
    if role == "dr":
        kw: dict[str, Any] = {"reinforced": str(store_dir(out, cell))}
        if cell.soften != 1.0:
            kw.update(temperature=cell.soften, soften_targets=True)
    elif role == "kd":
        kw = {"kd_teacher": teacher_specs(cell.teacher), "recipe": cell.recipe}
        if cell.soften != 1.0:
            kw.update(temperature=cell.soften, soften_targets=True)
    else:
        _, recipe, ls = role.split(" ")
        kw = {"recipe": recipe, "label_smoothing": float(ls[2:])}
    return {"out": str(out / "runs" / key), "data": data, "test": test, "epochs": cell.epochs, "model": model,
            "model_kwargs": model_kwargs, "seed": seed, "kw": kw, "threads": args.threads, "workers": args.workers,
            "device": args.device, "corruption_n": args.corruption_n, "parent": os.getpid()}


def make_stores(todo: list[Cell], out: Path, data: str, args: argparse.Namespace) -> None:
    from drkit.reinforce import reinforce

    for cell in {store_dir(out, c): c for c in todo}.values():
        root = store_dir(out, cell)
        if (root / "manifest.json").exists():
            continue
        print(f"reinforce {root.name}", flush=True)
        reinforce(data, teacher_specs(cell.teacher), root, recipe=cell.recipe, samples=args.samples, topk=5, seed=0,
                  batch_size=512, workers=0, device=args.device, resume=root.exists(), progress=False,
                  command=sys.argv)


# ----------------------------------------------------------------------------------------------
# the table and the figure
# ----------------------------------------------------------------------------------------------
def _ms(values: list[float], scale: float = 100.0, fmt: str = ".2f") -> str:
    vals = [scale * v for v in values]
    sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
    return f"{statistics.mean(vals):{fmt}} ± {sd:{fmt}}" if len(vals) > 1 else f"{vals[0]:{fmt}} (1 seed)"


def summarise(cell: Cell, seeds: list[int], results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """DR − best ERM over the seeds where DR and every ERM variant finished."""
    per = [(s, run_keys(cell, s)) for s in seeds]
    per = [(s, k) for s, k in per if all(v in results for r, v in k.items() if r != "kd")]
    if not per:
        return None
    roles = [r for r in per[0][1] if r.startswith("erm")]
    best = max(roles, key=lambda r: statistics.mean(results[k[r]]["top1"] for _, k in per))
    dr = [results[k["dr"]] for _, k in per]
    erm = [results[k[best]] for _, k in per]
    out = {"cell": cell, "seeds": [s for s, _ in per], "best_erm": best, "dr": dr, "erm": erm,
           "gain": [d["top1"] - e["top1"] for d, e in zip(dr, erm)],
           "nll_below_every_erm": all(statistics.mean(results[k["dr"]]["nll"] for _, k in per)
                                      < statistics.mean(results[k[r]]["nll"] for _, k in per) for r in roles)}
    kd = [results[k["kd"]] for _, k in per if k.get("kd") in results]
    if kd:  # online KD where it was affordable: over the seeds where it finished
        out["kd"] = kd
    return out


def table(rows: list[dict[str, Any]], header: list[str]) -> str:
    lines = header + ["", "| sweep | setting | seeds | DR − best ERM top-1 (pp) | DR top-1 % | best ERM (which) top-1 % "
                      "| DR / ERM NLL | DR NLL < every ERM | DR / ERM ECE % | DR / ERM corruption top-1 % | online KD top-1 % |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, dr, erm = r["cell"], r["dr"], r["erm"]
        mean = lambda xs, k: statistics.mean(x[k] for x in xs)  # noqa: E731
        kd = (_ms([x["top1"] for x in r["kd"]]) + f" ({len(r['kd'])} seed{'s' * (len(r['kd']) > 1)})"
              if "kd" in r else "–")
        lines.append(
            f"| {c.sweep} | {c.label} | {len(r['seeds'])} | {_ms(r['gain'])} | {_ms([x['top1'] for x in dr])} | "
            f"{_ms([x['top1'] for x in erm])} ({r['best_erm'][4:]}) | {mean(dr, 'nll'):.4f} / {mean(erm, 'nll'):.4f} | "
            f"{'yes' if r['nll_below_every_erm'] else 'no'} | {100 * mean(dr, 'ece'):.2f} / {100 * mean(erm, 'ece'):.2f} | "
            f"{100 * mean(dr, 'corruption_top1'):.2f} / {100 * mean(erm, 'corruption_top1'):.2f} | {kd} |")
    return "\n".join(lines)


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


# ----------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/when-dr-helps")
    ap.add_argument("--sweeps", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-n", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=15, help="stored views per image")
    ap.add_argument("--corruption-n", type=int, default=500, help="test images for the corruption benchmark")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    ap.add_argument("--results", default=str(HERE / "results" / "when_dr_helps"), help="PATH.md and PATH.png")
    ap.add_argument("--readme", default=str(HERE.parent / "README.md"), help="README whose block is rewritten ('' off)")
    ap.add_argument("--roles", nargs="+", choices=["erm", "dr", "kd"], default=["erm", "dr", "kd"],
                    help="run only these kinds of run (e.g. the ERM baselines while teachers train)")
    ap.add_argument("--plan", action="store_true", help="print the runs a call would make, then stop")
    ap.add_argument("--report", action="store_true",
                    help="only rewrite the table, figure and README block from the finished runs")
    args = ap.parse_args()

    out = Path(args.out)
    if args.report:
        report(out, args)
        return
    base = f"fashion-mnist:{args.data_dir}" if args.data_dir else "fashion-mnist"
    data, test = f"{base}:train?n={args.train_n}", f"{base}:test"
    todo = cells(args.sweeps)
    jobs: dict[str, dict[str, Any]] = {}
    for cell in todo:
        for s in args.seeds:
            for role, key in run_keys(cell, s).items():
                if role.split(" ")[0] in args.roles:
                    jobs.setdefault(key, job_for(role, key, cell, s, args, data, test, out))
    pending = [k for k in jobs if not (out / "runs" / k / "result.json").exists()]
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
    report(out, args)


def report(out: Path, args: argparse.Namespace) -> None:
    """Table + figure from every finished run of every sweep (not only this call's)."""
    results = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/result.json")}
    seeds = sorted({int(k.rsplit("-s", 1)[1]) for k in results})
    rows = [r for c in cells(list(SWEEPS)) if (r := summarise(c, seeds, results)) is not None]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=HERE).stdout.strip()
    device = f"{args.device} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    header = [f"command: `{' '.join(['benchmarks/when_dr_helps.py', *sys.argv[1:]])}` (runs accumulate across calls "
              f"in {out}/runs)",
              f"commit: {commit}{' (uncommitted changes)' if dirty else ''}; device {device}; {args.threads} threads "
              f"per run; Fashion-MNIST first {args.train_n} training images, test 10,000 images, corruptions on the "
              f"first {args.corruption_n}; SGD lr 0.1 batch 128; stores NS {args.samples}, top-5, seed 0; "
              f"seeds with finished runs: {seeds}"]
    text = table(rows, header)
    md, png = Path(args.results + ".md"), Path(args.results + ".png")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text + "\n")
    if rows:
        figure(rows, png, f"DR − best ERM on Fashion-MNIST (mean ± std over seeds), commit {commit}")
    if args.readme:
        replace_block(Path(args.readme), "when_dr_helps", text)
    print(text)


if __name__ == "__main__":
    main()
