"""Epoch wall time of DR ÷ ERM and online KD ÷ DR, measured in one run (design.md guarantee 4).

Command (from the repository root; about 3 minutes on a 2-core CPU, under 1 minute on a GPU box):

    .venv/bin/python benchmarks/train_cost.py --out-file benchmarks/results/train_cost.txt
    python3 benchmarks/train_cost.py --device cuda --workers 8 --epochs 5     # on a GPU machine

Setup: ``fashion-mnist:train?n=5000`` at 28 px, student ``drkit_cnn_tiny``, recipe
``padcrop+ra+re`` for every mode, the same batch size, loader workers, seed and device. The DR
store is reinforced here by an ensemble of two randomly initialised ``drkit_cnn_small``
teachers (labels do not matter for cost; the same ensemble is the online-KD teacher). Each mode
trains ``--epochs`` epochs, the first is dropped as warm-up, the median of the rest is the epoch
time; modes run interleaved (ERM, DR, KD, then DR, ERM, KD, ...) so drift in machine load hits
all of them alike, and each ratio is the median over repeats of that repeat's ratio (printed too).

Expected result (benchmarks/results/train_cost.txt): DR/ERM ≈ 0.95-1.0, goal ≤ 1.02, issue 21 (replaying
a stored view costs no more than sampling a fresh one: 0.98 on a 2-core CPU, 0.96 on an H100);
KD/DR ≈ 2.2-2.9 on the CPU, where the two teachers' forward passes add to every step, but only ≈ 1.05
on an H100, where this tiny student is loader-bound and the teacher hides behind the loader.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from provenance import commit_id  # benchmarks/ is on sys.path when run as a script

MODES = ("erm", "dr", "kd")


def make_teachers(root: Path, src, seeds: list[int], size: int) -> list[str]:
    """Randomly initialised drkit_cnn_small checkpoints (cost is what is measured, not accuracy)."""
    from drkit.checkpoint import save_checkpoint
    from drkit.models import ImageModel, ModelConfig
    from drkit.train.setup import source_stats

    mean, std = source_stats(src)
    specs = []
    for s in seeds:
        cfg = ModelConfig(model="drkit_cnn_small", num_classes=len(src.classes), in_chans=src.channels,
                          image_size=size, mean=mean, std=std, classes=list(src.classes))
        save_checkpoint(root / f"teacher{s}", ImageModel.from_config(cfg, seed=s), cfg)
        specs.append(f"ckpt:{root / f'teacher{s}'}")
    return specs


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist:train?n=5000")
    p.add_argument("--recipe", default="padcrop+ra+re")
    p.add_argument("--model", default="drkit_cnn_tiny")
    p.add_argument("--epochs", type=int, default=4, help="per mode and repeat (first dropped)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (issue 21: median of >= 3 pairs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=4, help="NS of the store")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out-file", default=None, help="also write the report here")
    a = p.parse_args(argv)

    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.sources import load_source
    from drkit.train import TrainConfig, read_metrics, train

    work = Path(a.work_dir or tempfile.mkdtemp(prefix="drkit-train-cost-"))
    src = load_source(a.data)
    size = int(src.image_size(0)[0])
    teachers = make_teachers(work, src, [a.seed + 1, a.seed + 2], size)
    t0 = time.perf_counter()
    store = reinforce(ReinforceConfig(data=src, teacher=teachers, out=work / "store", recipe=a.recipe, views=a.samples,
                                      topk=5, image_size=size, seed=a.seed, batch_size=256, workers=a.workers,
                                      device=a.device, progress=False, command=["benchmarks/train_cost.py"]))
    reinforce_s = time.perf_counter() - t0

    common = dict(model=a.model, image_size=size, epochs=a.epochs, batch_size=a.batch_size, workers=a.workers,
                  device=a.device, seed=a.seed, quiet=True, opt="sgd", warmup_epochs=0.0)
    mode_kw = {"erm": dict(recipe=a.recipe), "dr": dict(reinforced=store), "kd": dict(recipe=a.recipe, kd_teacher=teachers)}
    epochs: dict[str, list[float]] = {m: [] for m in MODES}
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    per_repeat: list[dict[str, float]] = []  # each repeat's median epoch per mode: its ratios are one pair's
    for r in range(a.repeats):
        per_repeat.append({})
        order = MODES if r % 2 == 0 else ("dr", "erm", "kd")
        for m in order:
            out = work / f"{m}-{r}"
            train(TrainConfig.build(data=src, out=out, **common, **mode_kw[m]))
            rows = read_metrics(out)
            epochs[m] += [row["epoch_seconds"] for row in rows[1:]]
            rates[m] += [row["img_per_s"] for row in rows[1:]]
            per_repeat[-1][m] = statistics.median(row["epoch_seconds"] for row in rows[1:])
    med = {m: statistics.median(v) for m, v in epochs.items()}
    pairs = {k: [p[x] / p[y] for p in per_repeat]
             for k, x, y in (("dr_over_erm", "dr", "erm"), ("kd_over_dr", "kd", "dr"))}
    result = {
        "dr_over_erm": statistics.median(pairs["dr_over_erm"]), "kd_over_dr": statistics.median(pairs["kd_over_dr"]),
        "per_repeat": pairs,
        "epoch_seconds_median": med, "epoch_seconds_all": epochs,
        "img_per_s_median": {m: statistics.median(v) for m, v in rates.items()},
        "reinforce_seconds": reinforce_s,
    }
    device = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    lines = [
        "# drkit train cost: DR / ERM and online KD / DR epoch wall time",
        f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], 'benchmarks/train_cost.py', *(argv if argv is not None else sys.argv[1:])])}",
        f"git commit: {commit_id()}",
        f"device: {device}; torch {torch.__version__}; threads {torch.get_num_threads()}",
        f"data: {a.data} ({len(src)} images, {size} px); student {a.model}; recipe {a.recipe}; batch {a.batch_size}; "
        f"workers {a.workers}; seed {a.seed} (store seed {a.seed}, teacher init seeds {a.seed + 1}, {a.seed + 2})",
        f"store: NS={a.samples}, top-5, 2 x drkit_cnn_small (random init); reinforce took {reinforce_s:.1f} s",
        f"epochs per run {a.epochs} (first dropped), repeats {a.repeats}, interleaved",
        "",
        f"{'mode':<5} {'median epoch s':>15} {'img/s':>9}   all epoch seconds",
    ]
    for m in MODES:
        lines.append(f"{m:<5} {med[m]:>15.3f} {result['img_per_s_median'][m]:>9.0f}   "
                     + " ".join(f"{x:.2f}" for x in epochs[m]))
    each = {k: ", ".join(f"{x:.3f}" for x in v) for k, v in pairs.items()}
    lines += ["", f"DR / ERM = {result['dr_over_erm']:.3f}   (goal <= 1.02; median of the repeats' ratios: "
              f"{each['dr_over_erm']})", f"KD / DR  = {result['kd_over_dr']:.3f}   (repeats: {each['kd_over_dr']})"]
    report = "\n".join(lines) + "\n"
    print(report)
    if a.out_file:
        Path(a.out_file).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out_file).write_text(report)
    return result


if __name__ == "__main__":
    main()
