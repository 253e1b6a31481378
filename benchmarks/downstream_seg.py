"""Downstream dense task: semantic segmentation on ERM- vs DR-pretrained backbones (exported with drkit).

    .venv/bin/python benchmarks/downstream_seg.py                         # ~10 min on 2 cores, resumable
    .venv/bin/python benchmarks/downstream_seg.py --report                # table, PNG, README block again
    .venv/bin/python benchmarks/downstream_seg.py --smoke --out /tmp/tr   # the real path on tiny data

The reference work's backbone check (Mask R-CNN on COCO), small and offline: a deterministic
synthetic segmentation set, 56 x 56 canvases holding 1-3 Fashion-MNIST items at seeded positions
(later items drawn over earlier ones); a pixel's label is its item's class + 1 where the item's
pixel is above ``THRESHOLD``, else background 0 (11 classes). Training canvases draw items from
Fashion-MNIST *training* images past the first 10,000 (the backbones pretrained on the first
10,000), evaluation canvases from the *test* split; both sets are fixed (numpy Generator seeds 0
and 1) whatever the run seed.

Backbones: ``benchmarks/transfer.py``'s resnet10t pretraining runs (ERM: padcrop + label
smoothing 0.1; DR: the store labelled by the shipped out-of-fold teachers; same ``--out``; trained
here only when missing), exported with ``drkit export`` and loaded with
``drkit.export.load_features`` (timm ``features_only``). Seed s uses the backbones pretrained with
seed s. The head is the same light one for both: a 1x1 convolution on each feature map (strides
2-32), upsampled bilinearly to the canvas and summed (a linear FCN). Two settings: *frozen*
(backbone fixed, features computed once, only the head trains) and *fine-tuned* (backbone and
head, the backbone at a tenth of the head's learning rate). AdamW, batch 64. Metric: mIoU over
the 11 classes (background included) on the evaluation canvases, ``torchmetrics``'
``MulticlassJaccardIndex``; 3 seeds; DR − ERM as mean ± std of the per-seed differences, "ahead"
when the mean exceeds the std, "behind" below minus the std, else "no difference".

Each run writes ``result.json`` (archived in ``benchmarks/results/downstream_seg_runs/``, so later
calls skip it) and its predictions on the first evaluation canvases; the call's end writes
``benchmarks/results/downstream_seg.md``, ``downstream_seg.png`` (input, truth, ERM and DR
predictions) and the README block ``downstream_seg``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import transfer  # noqa: E402
from provenance import commit_id  # noqa: E402
from run_archive import archive, finished  # noqa: E402
from readme_block import replace_block  # noqa: E402

CANVAS = 56
ITEM = 28
THRESHOLD = 25  # uint8: an item pixel above this is the item (Fashion-MNIST's background is 0)
NUM_CLASSES = 11  # background + 10 Fashion-MNIST classes
SETTINGS = ("frozen", "fine-tuned")
PREVIEW = 6  # evaluation canvases whose predictions each run keeps for the figure


@dataclass(frozen=True)
class SegPlan:
    """Sizes of one call (``--smoke`` shrinks them; the run keys name what changes results)."""

    train_canvases: int = 1000
    test_canvases: int = 500
    frozen_epochs: int = 15
    tuned_epochs: int = 8  # resnet10t trains at ~15-30 canvases/s on one shared core: 8 epochs fit
    lr: float = 2e-3
    batch: int = 64


# ----------------------------------------------------------------------------------------------
# the data: fixed synthetic canvases
# ----------------------------------------------------------------------------------------------
def make_canvases(images: np.ndarray, labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` canvases (uint8 (N, 56, 56)) and masks (int64 (N, 56, 56), 0 = background) from
    ``images`` (uint8 (M, 28, 28)); items, positions and counts from ``numpy.random.Generator(seed)``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    canvases = np.zeros((count, CANVAS, CANVAS), np.uint8)
    masks = np.zeros((count, CANVAS, CANVAS), np.int64)
    for n in range(count):
        for _ in range(int(rng.integers(1, 4))):
            j = int(rng.integers(0, len(images)))
            top, left = (int(v) for v in rng.integers(0, CANVAS - ITEM + 1, size=2))
            item = images[j]
            on = item > THRESHOLD
            canvases[n, top:top + ITEM, left:left + ITEM][on] = item[on]
            masks[n, top:top + ITEM, left:left + ITEM][on] = int(labels[j]) + 1
    return canvases, masks


def fmnist_arrays(split: str, start: int, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` images from index ``start`` on, as uint8 (M, 28, 28) and labels."""
    from drkit import load_source

    src = load_source(f"fashion-mnist:{data_dir}:{split}" if data_dir else f"fashion-mnist:{split}")
    idx = range(start, len(src))
    images = np.stack([src.load_uint8(i)[0].numpy() for i in idx])
    return images, np.asarray(src.labels)[start:]


def datasets(plan: SegPlan, data_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Training canvases from train images past the pretraining's first 10,000; evaluation canvases from test."""
    train = make_canvases(*fmnist_arrays("train", 10_000, data_dir), plan.train_canvases, seed=0)
    test = make_canvases(*fmnist_arrays("test", 0, data_dir), plan.test_canvases, seed=1)
    return {"train": train, "test": test}


# ----------------------------------------------------------------------------------------------
# model: exported backbone + light head
# ----------------------------------------------------------------------------------------------
def ensure_export(run: Path, out: Path) -> Path:
    """``drkit export`` of a pretraining run, made once."""
    from drkit.export import export_backbone

    dest = out / "exports" / run.name
    if not (dest / "config.json").exists():
        export_backbone(run, dest)
    return dest


def build(export: Path, seed: int) -> Any:
    """Backbone (timm features_only from the export) + a 1x1-conv head per feature map; the head's
    initialisation comes from ``seed`` through a private generator (no global RNG)."""
    import torch
    from torch import nn

    from drkit.export import load_features, read_export

    doc = read_export(export)

    class Seg(nn.Module):
        """Per-map 1x1 convolutions, upsampled to the input and summed: a linear FCN head."""

        def __init__(self) -> None:
            super().__init__()
            self.body = load_features(export, doc)
            self.heads = nn.ModuleList(nn.Conv2d(c, NUM_CLASSES, 1) for c in self.body.feature_info.channels())
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for h in self.heads:
                    bound = 1.0 / h.in_channels ** 0.5
                    h.weight.copy_(torch.rand(h.weight.shape, generator=g) * 2 * bound - bound)
                    h.bias.zero_()
            self.register_buffer("mean", torch.tensor(doc["mean"]).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(doc["std"]).view(1, -1, 1, 1))

        def features(self, x: torch.Tensor) -> list[torch.Tensor]:
            return self.body((x.float() / 255.0 - self.mean) / self.std)

        def head(self, maps: list[torch.Tensor], size: int) -> torch.Tensor:
            out = 0
            for h, m in zip(self.heads, maps):
                out = out + nn.functional.interpolate(h(m), size=(size, size), mode="bilinear", align_corners=False)
            return out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x), x.shape[-1])

    return Seg()


def one_run(key: str, export: Path, setting: str, seed: int, data: dict[str, Any], plan: SegPlan,
            run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the head (frozen) or head + backbone (fine-tuned) and measure mIoU on the evaluation canvases."""
    import torch
    from torchmetrics.classification import MulticlassJaccardIndex

    model = build(export, seed)
    x_tr, y_tr = (torch.from_numpy(a) for a in data["train"])
    x_te, y_te = (torch.from_numpy(a) for a in data["test"])
    x_tr, x_te = x_tr.unsqueeze(1), x_te.unsqueeze(1)
    g = torch.Generator().manual_seed(1000 + seed)
    frozen = setting == "frozen"
    epochs = plan.frozen_epochs if frozen else plan.tuned_epochs
    if frozen:
        model.body.eval().requires_grad_(False)
        with torch.no_grad():  # the frozen features, once
            cache = [model.features(x_tr[i:i + 256]) for i in range(0, len(x_tr), 256)]
        cache_maps = [torch.cat([c[k] for c in cache]) for k in range(len(cache[0]))]
        groups = [{"params": model.heads.parameters(), "lr": plan.lr}]
    else:
        groups = [{"params": model.heads.parameters(), "lr": plan.lr},
                  {"params": model.body.parameters(), "lr": plan.lr / 10}]
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps = epochs * -(-len(x_tr) // plan.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[gr["lr"] for gr in groups], total_steps=steps,
                                                pct_start=0.1)
    t = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(x_tr), generator=g)
        model.train() if not frozen else model.heads.train()
        total = 0.0
        for i in range(0, len(order), plan.batch):
            b = order[i:i + plan.batch]
            logits = model.head([m[b] for m in cache_maps], CANVAS) if frozen else model(x_tr[b])
            loss = torch.nn.functional.cross_entropy(logits, y_tr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        print(f"    {key} epoch {epoch + 1}/{epochs}: loss {total / len(x_tr):.4f}", flush=True)
    wall = time.perf_counter() - t
    model.eval()
    miou = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average="macro")
    per_class = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average="none")
    preds = []
    with torch.no_grad():
        for i in range(0, len(x_te), 256):
            p = model(x_te[i:i + 256]).argmax(1)
            miou.update(p, y_te[i:i + 256])
            per_class.update(p, y_te[i:i + 256])
            preds.append(p)
    pred = torch.cat(preds)
    run.mkdir(parents=True, exist_ok=True)
    np.save(run / "preview.npy", pred[:PREVIEW].numpy().astype(np.uint8))
    cfg = json.loads((export / "config.json").read_text())
    result = {"key": key, "commit": args.commit, "setting": setting, "seed": seed, "miou": float(miou.compute()),
              "iou_per_class": [float(v) for v in per_class.compute()],
              "pixel_acc": float((pred == y_te).float().mean()), "epochs": epochs, "train_s": wall,
              "backbone_weights_sha256": cfg["source_weights_sha256"], "backbone": cfg["source_checkpoint"]}
    (run / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


# ----------------------------------------------------------------------------------------------
# archive, table, figure
# ----------------------------------------------------------------------------------------------
def run_key(method: str, setting: str, seed: int, plan: SegPlan, tplan: transfer.Plan) -> str:
    pe = transfer.epochs(transfer.FAMILIES["ResNet"], tplan)[0]
    e = plan.frozen_epochs if setting == "frozen" else plan.tuned_epochs
    return f"seg-resnet10t-{method}-pe{pe}-{setting}-e{e}-n{plan.train_canvases}-s{seed}"


def table(results: dict[str, dict[str, Any]], plan: SegPlan, tplan: transfer.Plan, args: argparse.Namespace,
          header: list[str]) -> tuple[str, list[dict[str, Any]]]:
    lines = header + ["", "| setting | backbone | seeds | mIoU % | pixel acc % | DR − ERM mIoU (pp) | verdict "
                      "| commits |", "|---|---|---|---|---|---|---|---|"]
    rows = []
    for setting in SETTINGS:
        keys = {s: {m: run_key(m, setting, s, plan, tplan) for m in ("erm", "dr")} for s in args.seeds}
        done = [s for s in args.seeds if all(k in results for k in keys[s].values())]
        if not done:
            continue
        by = {m: [results[keys[s][m]] for s in done] for m in ("erm", "dr")}
        diff = [d["miou"] - e["miou"] for d, e in zip(by["dr"], by["erm"])]
        commits = ", ".join(sorted({x["commit"] for m in by for x in by[m]}))
        rows.append({"setting": setting, "seeds": done, "diff": diff, **by})
        for m in ("erm", "dr"):
            last = m == "dr"
            lines.append(f"| {setting} | {m.upper()}-pretrained | {len(done)} "
                         f"| {transfer._ms([x['miou'] for x in by[m]])} "
                         f"| {transfer._ms([x['pixel_acc'] for x in by[m]])} "
                         f"| {transfer._ms(diff) if last else '–'} | {transfer.verdict(diff) if last else '–'} "
                         f"| {commits} |")
    return "\n".join(lines), rows


def figure(out: Path, data: dict[str, Any], plan: SegPlan, tplan: transfer.Plan, seed: int, path: Path,
           title: str) -> bool:
    """A few evaluation canvases: input, truth, and each setting's ERM and DR predictions (seed ``seed``)."""
    cols = [("input", None), ("truth", None)] + [(f"{m.upper()} {s}", run_key(m, s, seed, plan, tplan))
                                                 for s in SETTINGS for m in ("erm", "dr")]
    preds = {k: np.load(out / "seg_runs" / k / "preview.npy") for _, k in cols
             if k and (out / "seg_runs" / k / "preview.npy").exists()}
    if not preds:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = data["test"]
    n = min(PREVIEW, len(x))
    cols = [(name, k) for name, k in cols if k is None or k in preds]
    fig, axes = plt.subplots(n, len(cols), figsize=(1.5 * len(cols), 1.5 * n + 0.5), squeeze=False)
    for i in range(n):
        for j, (name, k) in enumerate(cols):
            ax = axes[i][j]
            if name == "input":
                ax.imshow(x[i], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(y[i] if k is None else preds[k][i], cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=7, wrap=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/transfer", help="benchmarks/transfer.py's --out (its pretraining runs)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (see transfer.py --help)")
    ap.add_argument("--workers", type=int, default=0, help="loader workers for a pretraining run trained here")
    ap.add_argument("--device", default="cpu", help="pretraining runs trained here; the segmentation runs use the CPU")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    ap.add_argument("--results", default=str(HERE / "results" / "downstream_seg"), help="PATH.md and PATH.png")
    ap.add_argument("--readme", default=str(HERE.parent / "README.md"), help="README whose block is rewritten ('' off)")
    ap.add_argument("--archive", default=str(HERE / "results" / "downstream_seg_runs"),
                    help="folder of finished runs' result rows, committed: runs found there are not run again")
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS),
                    help="run only these settings (e.g. one process per seed and setting on a shared CPU)")
    ap.add_argument("--wait-pretrain", action="store_true", help="wait for a transfer.py call running beside this "
                    "one to finish each pretraining run (polling its result.json) instead of training it here")
    ap.add_argument("--report", action="store_true", help="only rewrite the table, PNG and README block")
    ap.add_argument("--smoke", action="store_true", help="the real path on tiny data, one seed; results under --out")
    args = ap.parse_args(argv)
    plan, tplan = SegPlan(), transfer.Plan(data_dir=args.data_dir)
    if args.smoke:
        plan = SegPlan(train_canvases=128, test_canvases=64, frozen_epochs=1, tuned_epochs=1)
        tplan = transfer.Plan(source_n=256, source_test_n=256, pre_epochs=1, data_dir=args.data_dir)
        args.seeds, args.readme = args.seeds[:1], ""
        args.results = str(Path(args.out) / "results" / "downstream_seg")
        args.archive = str(Path(args.out) / "results" / "downstream_seg_runs")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    args.commit = commit_id()
    out = Path(args.out)
    t0 = transfer._say(f"downstream_seg: seeds {args.seeds}, out {out}")
    data = datasets(plan, args.data_dir)
    if not args.report:
        tplan_args = argparse.Namespace(**{**vars(args), "archive": str(Path(args.archive).parent / "transfer_runs")
                                           if not args.smoke else str(Path(args.out) / "results" / "transfer_runs")})
        done = finished(out, args, "seg_runs")
        fam = transfer.FAMILIES["ResNet"]
        for seed in args.seeds:
            for method in ("erm", "dr"):
                keys = {s: run_key(method, s, seed, plan, tplan) for s in args.settings}
                if all(k in done for k in keys.values()):
                    continue
                if args.wait_pretrain:
                    transfer.wait_for(out / "runs" / transfer.pre_key(fam, method, tplan, seed) / "result.json")
                export = ensure_export(transfer.ensure_pretrain(out, fam, method, seed, tplan, tplan_args), out)
                for setting, key in keys.items():
                    if key in done:
                        continue
                    transfer._say(f"seg {key}")
                    r = one_run(key, export, setting, seed, data, plan, out / "seg_runs" / key, args)
                    archive(args, r)
                    transfer._say(f"  {key}: mIoU {100 * r['miou']:.2f} %  pixel acc {100 * r['pixel_acc']:.2f} %  "
                                  f"({r['train_s']:.0f} s)")
    results = finished(out, args, "seg_runs")
    device = (f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), {args.threads} "
              "thread(s) per process")
    header = [
        f"command: `benchmarks/downstream_seg.py --out {out}{' --smoke' if args.smoke else ''}` (resumable; each "
        f"row names the commits that ran its runs); this file written by "
        f"`{' '.join(['benchmarks/downstream_seg.py', *sys.argv[1:]])}` at commit {commit_id()}; device {device}; "
        f"seeds {args.seeds}",
        "",
        f"{CANVAS}x{CANVAS} canvases with 1-3 Fashion-MNIST items (pixels > {THRESHOLD} labelled class + 1, "
        f"{NUM_CLASSES} classes with background): {plan.train_canvases} training canvases from train images "
        f"10,000+, {plan.test_canvases} evaluation canvases from the test split. Backbones: resnet10t pretrained "
        f"{transfer.epochs(transfer.FAMILIES['ResNet'], tplan)[0]} epochs on the first {tplan.source_n} "
        "Fashion-MNIST images by benchmarks/transfer.py "
        f"(ERM: padcrop + label smoothing 0.1; DR: store labelled by the shipped out-of-fold teachers), via drkit "
        f"export + drkit.export.load_features. Head: 1x1 conv per feature map (strides 2-32), upsampled and summed. "
        f"AdamW (wd 1e-4, one-cycle), batch {plan.batch}, head lr {plan.lr:g}; frozen: {plan.frozen_epochs} epochs; "
        f"fine-tuned: {plan.tuned_epochs} epochs, backbone lr {plan.lr / 10:g}. mIoU (torchmetrics "
        "MulticlassJaccardIndex, macro over 11 classes) on the evaluation canvases; mean ± std over seeds; "
        "DR − ERM as mean ± std of per-seed differences (inside one std = no difference).",
    ]
    text, rows = table(results, plan, tplan, args, header)
    md = Path(args.results + ".md")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text + "\n")
    if rows:
        seed = rows[0]["seeds"][0]
        figure(out, data, plan, tplan, seed, Path(args.results + ".png"),
               f"evaluation canvases: input, truth, predictions on ERM- and DR-pretrained resnet10t (seed {seed}), "
               f"{commit_id()}")
        if args.readme:
            replace_block(Path(args.readme), "downstream_seg", text)
    print(text, flush=True)
    transfer._say(f"downstream_seg: {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
