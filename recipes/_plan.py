"""The runner behind the reference recipes: one plan per dataset, turned into drkit commands.

Each recipe script (``imagenet_plus.py``, ...) holds the reference work's settings as a
:class:`Plan`; this module prints the plan's cost estimate, then its commands, and runs them in
order. ``--smoke`` runs the same command sequence on a tiny synthetic image folder with tiny
stand-ins for the teachers and the student (random-weight drkit checkpoints, NS 2, one epoch): it
checks that the commands fit together, not what they would score. ``--dry-run`` only prints.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

#: dense bf16 peak of one H100 SXM (TFLOP/s) and the model-FLOPs utilisation the estimate assumes
H100_BF16_TFLOPS, MFU = 989.0, 0.40


@dataclasses.dataclass(frozen=True)
class Plan:
    """A reference setting: data, teachers, reinforcement and student schedule."""

    name: str
    data: str  # source spec with {root}: the training split
    val: str  # source spec with {root}: the evaluation split
    train_images: int
    num_classes: int
    teachers: tuple[str, ...]  # timm names (pretrained), or names fine-tuned first when finetune is set
    recipe: str
    samples: int
    topk: int = 10
    image_size: int = 224
    finetune: Optional[dict[str, Any]] = None  # teacher fine-tuning schedule (drkit train flags)
    student: str = "resnet50d"
    epochs: int = 150
    batch_size: int = 1024
    lr: float = 0.4
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    plain_fraction: float = 0.01  # the reference replays the original image 1 % of the time
    note: str = ""


def model_flops(name: str, size: int, classes: int) -> float:
    """Forward FLOPs of one ``size`` px image through timm model ``name``, counted by torch's
    FlopCounterMode on the meta device (no weights are made or downloaded)."""
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = timm.create_model(name.split(".")[0], pretrained=False, num_classes=classes)
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def gpu_time(flop: float) -> str:
    """FLOPs as H100 time at the assumed utilisation."""
    hours = flop / (H100_BF16_TFLOPS * MFU * 1e12) / 3600
    if hours >= 10:
        return f"about {hours:,.0f} H100-hours"
    return f"about {hours:.1f} H100-hours" if hours >= 0.1 else f"about {hours * 60:.0f} H100-minutes"


def estimate(plan: Plan) -> list[str]:
    """Lines of the cost estimate: teacher forwards, student training, store size."""
    from drkit.augment import get_recipe
    from drkit.store import array_schema, bytes_per_record

    views = plan.train_images * plan.samples
    teacher = sum(model_flops(t, plan.image_size, plan.num_classes) for t in plan.teachers)
    student = model_flops(plan.student, plan.image_size, plan.num_classes)
    rec = get_recipe(plan.recipe, side=plan.image_size)
    size = views * bytes_per_record(array_schema(rec.code_bytes, plan.topk, plan.num_classes, rec.mixes))
    lines = [f"{plan.name}: cost estimate (FLOPs counted on the architectures; {MFU:.0%} of an H100's "
             f"{H100_BF16_TFLOPS:.0f} dense bf16 TFLOP/s)",
             f"  reinforce: {plan.train_images:,} images x {plan.samples} views x {teacher / 1e9:.0f} GFLOP "
             f"({len(plan.teachers)} teachers) = {views * teacher:.2e} FLOP, {gpu_time(views * teacher)}, once",
             f"  store: {size / 1e9:.1f} GB",
             f"  each student: {plan.epochs} epochs x {plan.train_images:,} images x 3 x {student / 1e9:.1f} GFLOP = "
             f"{gpu_time(3 * plan.epochs * plan.train_images * student)}, the same as training it without drkit"]
    if plan.finetune:
        ft = plan.finetune
        share = (ft["folds"] - 1) / ft["folds"] if ft.get("folds") else 1.0  # each member skips its fold
        member = model_flops(plan.teachers[0], plan.image_size, plan.num_classes)
        flop = len(plan.teachers) * ft["epochs"] * plan.train_images * share * 3 * member
        lines.insert(1, f"  teachers, fine-tuned first: {len(plan.teachers)} x {ft['epochs']} epochs x "
                     f"{plan.train_images * share:,.0f} images (out-of-fold) x 3 x {member / 1e9:.1f} GFLOP = "
                     f"{gpu_time(flop)}")
    return lines


def commands(plan: Plan, root: str, out: Path, smoke: bool) -> list[list[str]]:
    """The drkit command lines of the plan (smoke: tiny stand-ins, same sequence)."""
    data, val = plan.data.format(root=root), plan.val.format(root=root)
    common = ["--device", "cpu", "--workers", "0", "--quiet"] if smoke else []
    size = ["--image-size", "32"] if smoke else ["--image-size", str(plan.image_size)]
    cmds: list[list[str]] = []
    if plan.finetune and not smoke:
        ft = plan.finetune
        cmds.append(["train", "--data", data, "--model", plan.teachers[0], "--init", f"timm:{plan.teachers[0]}",
                     "--epochs", str(ft["epochs"]), "--lr", str(ft["lr"]), "--weight-decay", str(ft["weight_decay"]),
                     "--batch-size", "256", "--folds", str(ft.get("folds", len(plan.teachers))), *size,
                     "--out", str(out / "teachers")])
        teachers = [f"ckpt:{out / 'teachers'}"]
    elif smoke:
        cmds.append(["train", "--data", data, "--model", "drkit_cnn_tiny", "--epochs", "1", "--batch-size", "8",
                     "--folds", "2", *size, *common, "--out", str(out / "teachers")])
        teachers = [f"ckpt:{out / 'teachers'}"]
    else:
        teachers = [f"timm:{t}" for t in plan.teachers]
    cmds.append(["reinforce", "--data", data, *[a for t in teachers for a in ("--teacher", t)],
                 "--recipe", plan.recipe, "--samples", "2" if smoke else str(plan.samples),
                 "--topk", "2" if smoke else str(plan.topk), *size, *common, "--out", str(out / "store")])
    cmds.append(["train", "--data", data, "--val", val, "--reinforced", str(out / "store"),
                 "--model", "drkit_cnn_tiny" if smoke else plan.student, "--epochs", "1" if smoke else str(plan.epochs),
                 "--batch-size", "8" if smoke else str(plan.batch_size), "--lr", str(plan.lr),
                 "--weight-decay", str(plan.weight_decay), "--warmup-epochs", "0" if smoke else str(plan.warmup_epochs),
                 "--plain-fraction", str(plan.plain_fraction), *size, *common, "--out", str(out / "student")])
    cmds.append(["eval", "--checkpoint", str(out / "student"), "--data", val,
                 *(["--device", "cpu", "--workers", "0", "--quiet"] if smoke else []),
                 "--json", str(out / "eval.json")])
    return cmds


def smoke_data(root: Path, classes: int = 3, per_class: int = 8) -> str:
    """A tiny RGB image folder with train/ and val/ (smooth random images, 40 x 36 px)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", per_class // 2)):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(small).resize((40, 36), Image.BILINEAR).save(d / f"{k}.png")
    return str(root)


def main(plan: Plan) -> None:
    ap = argparse.ArgumentParser(description=f"{plan.name} with drkit, the reference settings. {plan.note}")
    ap.add_argument("--root", help="dataset root (the folder the data spec names)")
    ap.add_argument("--out", default=None, help="where teachers, store, student and eval go")
    ap.add_argument("--smoke", action="store_true", help="run the same commands on a tiny synthetic folder")
    ap.add_argument("--dry-run", action="store_true", help="print the estimate and the commands only")
    ap.add_argument("--no-estimate", action="store_true", help="skip the cost estimate")
    args = ap.parse_args()
    if not args.no_estimate:
        print("\n".join(estimate(plan)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            plan = dataclasses.replace(plan, data="imagefolder:{root}:train", val="imagefolder:{root}:val")
            root = smoke_data(Path(tmp) / "data")
        elif args.root is None and not args.dry_run:
            ap.error("--root is required (or --smoke / --dry-run)")
        else:
            root = args.root or "ROOT"
        out = Path(args.out or (Path(tmp) / "run" if args.smoke else f"runs/{plan.name.lower().replace('-', '')}"))
        for cmd in commands(plan, root, out, args.smoke):
            print("drkit " + " ".join(shlex.quote(c) for c in cmd), flush=True)
            if not args.dry_run:
                code = subprocess.run([sys.executable, "-m", "drkit", *cmd]).returncode
                if code:
                    sys.exit(f"{plan.name}: the step above failed (exit code {code}); fix it and rerun the "
                             "remaining steps by hand (reinforce and train take --resume)")
