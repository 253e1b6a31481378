"""The CUDA paths after a refactor: every verb runs on the GPU, in each precision, and a store
made on the GPU replays on the CPU (and how closely its teacher labels agree).

Command (on a GPU machine, from the repository root; about 1 minute):

    PYTHONPATH=src DRKIT_COMMIT=$(git rev-parse --short HEAD) python3 benchmarks/cuda_paths.py \
        --out-file benchmarks/results/cuda_paths.txt

Data: scikit-learn's digits (8 px, no download). Teachers: two seeded random ``drkit_cnn_tiny``
checkpoints (labels do not matter for the paths). Checks, each printed as a line:
ERM with ``--amp bf16`` and ``--amp fp16`` (GradScaler) and channels_last, DR and online KD on
CUDA, ``eval`` on CUDA; a store reinforced on CUDA and the same store reinforced on the CPU:
the view/mixing arrays must be byte-identical (they never depend on the device), and the share of
records whose stored top-1 class agrees is printed (teacher arithmetic differs by device: bf16
autocast on CUDA, fp32 on the CPU). Expected: every line ``ok``; top-1 agreement near 1.0.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from provenance import commit_id  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]


def _teacher(root: Path, classes: list[str], seed: int) -> str:
    from drkit.checkpoint import save_checkpoint
    from drkit.models import ImageModel, ModelConfig

    cfg = ModelConfig(model="drkit_cnn_tiny", num_classes=len(classes), in_chans=1, image_size=16, mean=[0.5],
                      std=[0.25], classes=list(classes))
    save_checkpoint(root, ImageModel.from_config(cfg, seed=seed), cfg)
    return f"ckpt:{root}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-file", default=None)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    from drkit import (
        EvalConfig,
        ReinforceConfig,
        TrainConfig,
        evaluate,
        load_source,
        open_store,
        reinforce,
        train,
    )

    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    bad: list[str] = []

    def mark(ok: bool, what: str) -> str:
        """``ok`` only when the check held; ``BAD`` lines are what summary.py quotes first."""
        if not ok:
            bad.append(what)
        return "ok " if ok else "BAD"

    def trained(s: dict) -> bool:
        return math.isfinite(s["final_train_loss"]) and s["img_per_s"] > 0

    commit = commit_id()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    say(f"# command: python3 benchmarks/cuda_paths.py --device {args.device}")
    say(f"# commit {commit}, torch {torch.__version__}, device {args.device} ({gpu}), host {platform.node()}")
    say("# seeds: teachers 0 and 1, stores 0, students 0")
    src = load_source("digits:train?n=256")
    tmp = Path(tempfile.mkdtemp())
    teachers = [_teacher(tmp / f"t{i}", src.classes, seed=i) for i in range(2)]
    common = dict(model="drkit_cnn_tiny", epochs=2, batch_size=64, workers=2, seed=0, quiet=True)
    t0 = time.perf_counter()
    for amp in ("bf16", "fp16"):
        s = train(TrainConfig.build(data=src, out=tmp / f"erm_{amp}", device=args.device, amp=amp, recipe="padcrop+ra+re+mix",
                              **common))
        say(f"{mark(trained(s), 'ERM')} ERM --amp {amp} channels_last: loss {s['final_train_loss']:.3f}, "
            f"{s['img_per_s']:.0f} img/s")
    stores = {}
    for name, dev in (("main", args.device), ("cpu", "cpu")):
        stores[name] = reinforce(ReinforceConfig(data=src, teacher=teachers, out=tmp / f"store_{name}",
                                                 recipe="rrc+ra+re+mix", views=4, topk=3, batch_size=128, workers=2,
                                                 device=dev, progress=False, command=["cuda_paths"]))
    a, b = open_store(stores["main"]), open_store(stores["cpu"])
    same_views = all(np.array_equal(a.raw(i)[k], b.raw(i)[k]) for i in range(a.num_samples)
                     for k in a.schema if k not in ("topk_ids", "topk_probs"))
    agree = np.mean([a.raw(i)["topk_ids"][:, 0] == b.raw(i)["topk_ids"][:, 0] for i in range(a.num_samples)])
    say(f"{mark(same_views, 'store')} store on {args.device} vs cpu: view and mixing arrays byte-identical = "
        f"{same_views}; stored top-1 agrees on {100 * agree:.2f} % of records")
    s = train(TrainConfig.build(data=src, out=tmp / "dr", device=args.device, reinforced=stores["main"], **common))
    say(f"{mark(trained(s), 'DR')} DR on {args.device}: loss {s['final_train_loss']:.3f}, {s['img_per_s']:.0f} img/s")
    s = train(TrainConfig.build(data=src, out=tmp / "kd", device=args.device, kd_teacher=teachers, recipe="padcrop",
                          **common))
    say(f"{mark(trained(s), 'KD')} KD on {args.device}: loss {s['final_train_loss']:.3f}, {s['img_per_s']:.0f} img/s")
    r = evaluate(EvalConfig(checkpoint=tmp / "dr", data="digits:test", device=args.device, workers=2, progress=False,
                            corruptions=True, families=["gaussian_noise"], severities=[3]))
    evaluated = 0.0 <= r["top1"] <= 1.0 and math.isfinite(r["nll"])
    say(f"{mark(evaluated, 'eval')} eval on {args.device}: top-1 {100 * r['top1']:.2f} %, gaussian_noise@3 "
        f"{100 * r['mean_corruption_top1']:.2f} %")
    x = a.replay(src, 3, 1)
    good = x.device.type == "cpu" and x.dtype == torch.float32 and tuple(x.shape) == (1, 16, 16)
    say(f"{mark(good, 'replay')} replay of a CUDA-made store on the CPU: {tuple(x.shape)} {x.dtype}")
    say(f"# total {time.perf_counter() - t0:.1f} s")
    if args.out_file:
        Path(args.out_file).write_text("\n".join(lines) + "\n")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
