"""Fashion-MNIST: ERM (best of rrc/padcrop, with/without label smoothing) vs DR vs online KD.

    .venv/bin/python benchmarks/fmnist_dr.py --out runs/fmnist-dr --parallel 1      # ~35 min, 2 cores
    .venv/bin/python benchmarks/fmnist_dr.py --out runs/fmnist-dr --parallel 6 --threads 2   # 16-core box

Same student (drkit_cnn_tiny, ~76k params), same data (first 10,000 training images), same epochs
and optimiser for every run; each run is evaluated on the 10,000 test images. The store is
reinforced once (``--recipe``, default padcrop, NS=15, top-5) by the shipped teacher ensemble; KD runs the same
ensemble online on the same recipe. Each training process gets ``--threads`` CPU threads, so wall
times compare like for like. Prints mean ± std over the seeds and writes results.json / table.md.
Expected: DR ≥ ERM + 1.0 top-1 with lower NLL than every ERM variant; DR within 0.3 of KD at
≤ half its wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def one_run(job: dict) -> dict:
    os.environ["OMP_NUM_THREADS"] = str(job["threads"])
    import torch

    torch.set_num_threads(job["threads"])
    from drkit.evaluate import evaluate
    from drkit.train import train

    t = time.perf_counter()
    train(data=job["data"], val=None, model="drkit_cnn_tiny", epochs=job["epochs"], batch_size=128, opt="sgd",
          out=job["out"], seed=job["seed"], device=job["device"], workers=job["workers"], quiet=True,
          command=["benchmarks/fmnist_dr.py"], **job["kw"])
    wall = time.perf_counter() - t
    r = evaluate(job["out"], job["test"], device=job["device"], workers=job["workers"], progress=False)
    return {"name": job["name"], "seed": job["seed"], "top1": r["top1"], "nll": r["nll"], "ece": r["ece"],
            "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/fmnist-dr")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--train-n", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--recipe", default="padcrop", help="store recipe, also used by online KD")
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
    if not (store / "manifest.json").exists():
        reinforce(data, teachers, store, recipe=args.recipe, samples=args.samples, topk=5, seed=0,
                  batch_size=512, workers=max(2, args.workers), device=args.device, resume=store.exists(), progress=False,
                  command=sys.argv)
    reinforce_s = time.perf_counter() - t
    variants = {
        "DR (store)": {"reinforced": str(store)},
        "ERM rrc ls=0.1": {"recipe": "rrc", "label_smoothing": 0.1},
        "ERM rrc ls=0": {"recipe": "rrc", "label_smoothing": 0.0},
        "ERM padcrop ls=0.1": {"recipe": "padcrop", "label_smoothing": 0.1},
        "ERM padcrop ls=0": {"recipe": "padcrop", "label_smoothing": 0.0},
        "online KD": {"kd_teacher": teachers, "recipe": args.recipe},
    }
    jobs = [{"name": name, "seed": s, "kw": kw, "data": data, "test": test, "epochs": args.epochs,
             "out": str(out / f"{name.replace(' ', '_').replace('=', '')}_s{s}"), "threads": args.threads,
             "workers": args.workers, "device": args.device}
            for s in args.seeds for name, kw in variants.items()]
    # spawn, not fork: forking after torch started its OpenMP threads can deadlock the children
    with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(one_run, jobs))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"command: {' '.join(sys.argv)}", f"commit: {commit}; seeds {args.seeds}; store seed 0; "
             f"{args.threads} threads per run, {args.parallel} runs at a time, device {args.device}; "
             f"reinforce took {reinforce_s:.0f} s", "",
             "| run | top-1 % | NLL | ECE % | wall s |", "|---|---|---|---|---|"]
    summary = {}
    for name in variants:
        rs = [r for r in results if r["name"] == name]

        def ms(key: str, scale: float = 1.0) -> str:
            vals = [scale * r[key] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.2f} ± {sd:.2f}" if scale != 1.0 or key == "wall_s" else \
                f"{statistics.mean(vals):.4f} ± {sd:.4f}"

        lines.append(f"| {name} | {ms('top1', 100)} | {ms('nll')} | {ms('ece', 100)} | {ms('wall_s')} |")
        summary[name] = {k: statistics.mean(r[k] for r in rs) for k in ("top1", "nll", "ece", "wall_s")}
    table = "\n".join(lines)
    print(table)
    (out / "results.json").write_text(json.dumps({"runs": results, "mean": summary}, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
