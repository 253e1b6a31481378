"""Epoch wall time of ``drkit train`` under each multiprocessing start method, measured in one run.

    .venv/bin/python benchmarks/loader_start.py --out-file benchmarks/results/loader_start.txt   # ~3 min, 2 cores

Where loader workers spawn (macOS; forkserver, Python >= 3.14's default on Linux) each worker start is a
fresh interpreter importing torch: seconds. ``drkit train`` keeps one train and one val loader a run with
persistent workers, so only the first epoch pays for the starts. Each start method trains the same run
(``drkit_cnn_tiny``, ``fashion-mnist:train?n=2048``, val on 1,000 test images, 2 workers, 5 epochs, seed 0)
in a fresh process; an epoch's time is its training plus validation seconds. ``--rounds`` (3) rounds run every
method once each, in rotated order, so drift on a noisy machine falls on every method alike. Printed per method:
the first epoch and the median of the later ones (over all rounds), and the median over rounds of that round's
later-epoch median divided by fork's in the same round, with the per-round ratios. Goal: later epochs cost the same
under every method (ratio <= 1.2, and the per-round ratios straddling it count as no difference).
``results/loader_start_0836dc9.txt`` is an earlier version of this script (one run a method) run against the code before
(a loader an epoch, at 0836dc9), ``results/loader_start.txt`` after.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import commit_id, device_name  # benchmarks/ is on sys.path when run as a script

RUN = dict(data="fashion-mnist:train?n=2048", val="fashion-mnist:test?n=1000", model="drkit_cnn_tiny", epochs=5,
           batch_size=128, seed=0, device="cpu", workers=2, quiet=True)


def one(method: str, out: str) -> None:
    """Child: train the run with loader workers started by ``method``, print its per-epoch seconds as JSON."""
    multiprocessing.set_start_method(method, force=True)
    import torch

    torch.set_num_threads(2)
    from drkit.train import TrainConfig, read_metrics, train

    train(TrainConfig.build(out=out, **RUN))
    print(json.dumps([r["epoch_seconds"] + r["val_seconds"] for r in read_metrics(Path(out))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=[m for m in ("fork", "forkserver", "spawn")
                                                      if m in multiprocessing.get_all_start_methods()])
    ap.add_argument("--out-file", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return one(*args.child)
    lines = [f"# command: {' '.join(sys.argv)}", f"# commit: {commit_id()}  device {device_name('cpu')}",
             f"# seeds: the run's seed 0; {args.rounds} rounds, each method once a round in rotated order",
             f"# run: {json.dumps(RUN)}; epoch = training + validation seconds"]
    epochs: dict[str, list[list[float]]] = {m: [] for m in args.methods}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for method in args.methods[r % len(args.methods):] + args.methods[:r % len(args.methods)]:
                res = subprocess.run([sys.executable, __file__, "--child", method, f"{tmp}/{method}-{r}"],
                                     capture_output=True, text=True, check=True)
                epochs[method].append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = args.methods[0]
    for method, runs in epochs.items():
        ratios = [statistics.median(s[1:]) / statistics.median(b[1:]) for s, b in zip(runs, epochs[base])]
        lines.append(f"{method:10s} first epoch {statistics.median(s[0] for s in runs):6.2f} s   later epochs (median) "
                     f"{statistics.median(x for s in runs for x in s[1:]):6.2f} s   vs {base}: ratio "
                     f"{statistics.median(ratios):5.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
        print(lines[-1], flush=True)
    if args.out_file:
        Path(args.out_file).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
