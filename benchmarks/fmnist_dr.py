"""Fashion-MNIST: ERM (best of rrc/padcrop, with/without label smoothing) vs DR vs online KD.

    .venv/bin/python benchmarks/fmnist_dr.py --out runs/fmnist-dr                       # ~16 min a seed, 2 cores
    .venv/bin/python benchmarks/fmnist_dr.py --out runs/fmnist-dr --parallel 6 --threads 2   # 16-core box
    .venv/bin/python benchmarks/fmnist_dr.py --out runs/fmnist-5k --train-n 5000 --epochs 30 --samples 30

Same student (``--model``, default drkit_cnn_tiny, ~76k params), same data (the first
``--train-n`` training images), same epochs and optimiser for every run; each run is evaluated on
the 10,000 test images. The store is reinforced once (``--recipe``, default padcrop,
``--samples`` views, top-5) by the shipped teacher ensemble; KD runs the same ensemble online on
the same recipe. Each training process gets ``--threads`` CPU threads, so wall times compare like
for like. Wall time is the sum of the epochs' seconds (``metrics.jsonl``): training only, without
start-up and the final evaluation.

Every run keeps its directory ``OUT/<variant>_s<seed>`` and writes ``result.json`` there when it is
evaluated; a later call skips finished runs, resumes interrupted ones and evaluates trained ones,
so seeds can be added one call at a time and the table always covers every requested seed.
Prints mean ± std over the seeds and writes ``results.json`` / ``table.md``.
Expected: DR ≥ ERM + 1.0 top-1 with lower NLL than every ERM variant; DR within 0.3 of KD at
≤ half its wall time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: variant key -> (table name, train() keyword arguments; "STORE"/"TEACHERS"/"RECIPE" filled in later)
VARIANTS = {
    "dr": ("DR (store)", {"reinforced": "STORE"}),
    "erm_rrc_ls0.1": ("ERM rrc ls=0.1", {"recipe": "rrc", "label_smoothing": 0.1}),
    "erm_rrc_ls0": ("ERM rrc ls=0", {"recipe": "rrc", "label_smoothing": 0.0}),
    "erm_padcrop_ls0.1": ("ERM padcrop ls=0.1", {"recipe": "padcrop", "label_smoothing": 0.1}),
    "erm_padcrop_ls0": ("ERM padcrop ls=0", {"recipe": "padcrop", "label_smoothing": 0.0}),
    "kd": ("online KD", {"kd_teacher": "TEACHERS", "recipe": "RECIPE"}),
}


def run_dir(out: Path, name: str, seed: int) -> Path:
    return out / f"{name.replace(' ', '_').replace('=', '')}_s{seed}"


def exit_with_parent(parent: int) -> None:
    """A pool worker ends when the benchmark process does (killing the parent would otherwise leave
    the spawned workers training on for minutes)."""
    if any(t.name == "exit-with-parent" for t in threading.enumerate()):
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def one_run(job: dict) -> dict:
    """Train (or resume, or reuse) one variant/seed, evaluate it once, return its result row."""
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
        train(data=job["data"], val=None, model=job["model"], epochs=job["epochs"], batch_size=128, opt="sgd",
              out=out, seed=job["seed"], device=job["device"], workers=job["workers"], quiet=True,
              resume=(out / "state").exists(), command=["benchmarks/fmnist_dr.py"], **job["kw"])
    rows = read_metrics(out)
    if len(rows) != job["epochs"]:
        raise SystemExit(f"{out}: {len(rows)} epochs trained, the benchmark asks for {job['epochs']}; "
                         "use another --out")
    r = evaluate(out, job["test"], device=job["device"], workers=job["workers"], progress=False)
    result = {"name": job["name"], "seed": job["seed"], "top1": r["top1"], "nll": r["nll"], "ece": r["ece"],
              "wall_s": sum(row["epoch_seconds"] for row in rows)}
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


def check_store(store: Path, data: str, recipe: str, samples: int) -> None:
    """An existing store must be the one this call would write (else the table would mix settings)."""
    from drkit.augment import get_recipe
    from drkit.store import read_manifest

    m = read_manifest(store)
    want = {"source": data, "recipe": get_recipe(recipe).spec, "views": samples}
    have = {"source": m["source"]["spec"], "recipe": m["recipe"]["spec"], "views": m["num_views"]}
    if want != have:
        raise SystemExit(f"{store} holds another store ({have}); this call needs {want}: use another --out")


def table(results: list[dict], names: list[str], header: list[str]) -> tuple[str, dict]:
    lines = header + ["", "| run | top-1 % | NLL | ECE % | wall s | seeds |", "|---|---|---|---|---|---|"]
    summary = {}
    for name in names:
        rs = [r for r in results if r["name"] == name]

        def ms(key: str, scale: float, fmt: str) -> str:
            vals = [scale * r[key] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):{fmt}} ± {sd:{fmt}}"

        lines.append(f"| {name} | {ms('top1', 100, '.2f')} | {ms('nll', 1, '.4f')} | {ms('ece', 100, '.2f')} | "
                     f"{ms('wall_s', 1, '.0f')} | {len(rs)} |")
        summary[name] = {k: statistics.mean(r[k] for r in rs) for k in ("top1", "nll", "ece", "wall_s")}
    return "\n".join(lines), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/fmnist-dr")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--train-n", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=15, help="stored views per image")
    ap.add_argument("--recipe", default="padcrop", help="store recipe, also used by online KD")
    ap.add_argument("--model", default="drkit_cnn_tiny", help="the student, the same for every run")
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="run a subset of the variants (default: all)")
    ap.add_argument("--teacher", action="append", default=None)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    args = ap.parse_args()
    from drkit.demo import teacher_dirs
    from drkit.reinforce import reinforce

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teachers = args.teacher or [f"ckpt:{d}" for d in teacher_dirs()]
    base = f"fashion-mnist:{args.data_dir}" if args.data_dir else "fashion-mnist"
    data, test = f"{base}:train?n={args.train_n}", f"{base}:test"
    store = out / "store"
    t = time.perf_counter()
    if (store / "manifest.json").exists():
        check_store(store, data, args.recipe, args.samples)
    else:
        reinforce(data, teachers, store, recipe=args.recipe, samples=args.samples, topk=5, seed=0,
                  batch_size=512, workers=max(2, args.workers), device=args.device, resume=store.exists(),
                  progress=False, command=sys.argv)
    reinforce_s = time.perf_counter() - t
    fill = {"STORE": str(store), "TEACHERS": teachers, "RECIPE": args.recipe}
    jobs = [{"name": name, "seed": s, "kw": {k: fill.get(v, v) if isinstance(v, str) else v for k, v in kw.items()},
             "data": data, "test": test, "epochs": args.epochs, "model": args.model,
             "out": str(run_dir(out, name, s)), "threads": args.threads, "workers": args.workers,
             "device": args.device, "parent": os.getpid()}
            for s in args.seeds for key, (name, kw) in VARIANTS.items() if key in args.only]
    # spawn, not fork: forking after torch started its OpenMP threads can deadlock the children
    with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(one_run, jobs))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = [f"command: {' '.join(sys.argv)}",
              f"commit: {commit}; student {args.model}; {args.train_n} train images, {args.epochs} epochs; "
              f"store {args.recipe}, {args.samples} views, top-5, seed 0 (reinforce {reinforce_s:.0f} s this call); "
              f"seeds {args.seeds}; {args.threads} threads per run, {args.parallel} runs at a time, "
              f"device {args.device}; wall s = sum of epoch seconds"]
    names = [VARIANTS[k][0] for k in VARIANTS if k in args.only]
    text, summary = table(results, names, header)
    print(text)
    (out / "results.json").write_text(json.dumps({"runs": results, "mean": summary}, indent=2) + "\n")
    (out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
