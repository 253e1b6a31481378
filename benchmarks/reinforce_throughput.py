"""Reinforce throughput versus the teacher's bare forward pass, measured in one run.

    .venv/bin/python benchmarks/reinforce_throughput.py            # ~4 min on 2 CPU cores
    .venv/bin/python benchmarks/reinforce_throughput.py --device cuda --views 8192

Prints, for each teacher, reinforce views/s (the whole `drkit.reinforce` call: workers rendering
views, teacher, top-k, shard writes) divided by teacher-only forward img/s (same teacher, batch
size, device, input size, on pre-rendered uint8 batches). A ratio near 1 means the teacher is
never starved. Expected on the 2-core CPU: >= 0.90 for the realistic teacher (two timm resnet50
at 128 px, random weights loaded through `timm:resnet50?file=...`); the tiny teacher is
augmentation-bound and reported for contrast.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def teacher_forward_rate(ens: torch.nn.Module, batch: int, size: int, chans: int, batches: int, device: str) -> float:
    from drkit.reinforce import _label

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, chans, size, size), generator=g, dtype=torch.uint8)
    _label(ens, x, device, 10)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(batches):
        _label(ens, x, device, 10)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - t)


def reinforce_rate(data: str, specs: list[str], size: int, views: int, batch: int, workers: int, device: str,
                   out: Path) -> float:
    from drkit.reinforce import reinforce
    from drkit.sources import load_source

    samples = 4
    src = load_source(f"{data}?n={views // samples}")
    t = time.perf_counter()
    reinforce(src, specs, out, recipe="rrc+ra+re", samples=samples, topk=10, image_size=size, batch_size=batch,
              workers=workers, device=device, progress=False, samples_per_shard=1024, command=["benchmark"])
    return (views // samples) * samples / (time.perf_counter() - t)


def make_weights(tmp: Path, model: str, chans: int, classes: int, seed: int) -> str:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = timm.create_model(model, pretrained=False, num_classes=classes, in_chans=chans)
    path = tmp / f"{model}-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--views", type=int, default=768, help="views per reinforce run (realistic teacher)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--data", default="fashion-mnist:train")
    args = ap.parse_args()
    from drkit.teachers import load_teacher

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# commit: {commit}  torch {torch.__version__}  threads {torch.get_num_threads()}  device {args.device}")
    print("# seeds: weights 0/1, reinforce seed 0, recipe rrc+ra+re, NS=4, K=10")
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cases = [
            ("2x timm resnet50 @128px", [f"timm:resnet50?file={make_weights(tmp, 'resnet50', 1, 10, s)}" for s in (0, 1)],
             128, args.views),
            ("1x drkit_cnn_small @28px", None, 28, args.views * 8),
        ]
        for name, specs, size, views in cases:
            if specs is None:
                from drkit.checkpoint import save_checkpoint
                from drkit.models import ImageModel, ModelConfig
                from drkit.sources import load_source

                src = load_source(args.data)
                cfg = ModelConfig(model="drkit_cnn_small", num_classes=10, in_chans=1, image_size=28,
                                  mean=[0.286], std=[0.353], classes=list(src.classes))
                save_checkpoint(tmp / "small", ImageModel.from_config(cfg, seed=0), cfg)
                specs = [f"ckpt:{tmp / 'small'}"]
            ens = load_teacher(specs, device=args.device, num_classes=10)
            # forward measured before and after reinforce (same number of images), averaged: the
            # machine's speed drifts, and both sides of the ratio should see the same drift
            nb = max(2, views // args.batch_size // 2)
            fwd_a = teacher_forward_rate(ens, args.batch_size, size, 1, nb, args.device)
            rein = reinforce_rate(args.data, specs, size, views, args.batch_size, args.workers, args.device,
                                  tmp / f"store-{len(results)}")
            fwd_b = teacher_forward_rate(ens, args.batch_size, size, 1, nb, args.device)
            fwd = 2 / (1 / fwd_a + 1 / fwd_b)
            results.append({"teacher": name, "views": views, "teacher_forward_img_s": round(fwd, 1),
                            "reinforce_views_s": round(rein, 1), "ratio": round(rein / fwd, 3)})
            print(f"{name:28s} forward {fwd:9.1f} img/s   reinforce {rein:9.1f} views/s   ratio {rein / fwd:.3f}",
                  flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
