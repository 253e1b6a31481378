"""Reinforce throughput versus the teacher's bare forward pass, measured in one run.

    .venv/bin/python benchmarks/reinforce_throughput.py            # ~4 min on 2 CPU cores
    python3 benchmarks/reinforce_throughput.py --device cuda --views 16384 --workers 8 --repeats 1 \\
        --data imagefolder:/tmp/jpegs --make-jpegs 4096 \\
        --small-data imagefolder:/tmp/j32 --make-small-jpegs 32768  # a GPU machine (synthetic 320x256, 32x32 JPEGs)

Prints, for each teacher, the median of `--repeats` (3) ratios, each of reinforce views/s (the
`drkit.reinforce` call on the loaded teacher: workers decoding and sampling, the batched renderer
and the teacher on the device, top-k, shard writes; the end-of-run diagnostics, a plain-image pass
capped at 2,000 images, are timed apart and left out) divided by the teacher-only forward img/s
(same teacher, batch size, device, input size, on pre-rendered uint8 batches). Both run at
reinforce's default batch size unless ``--batch-size`` is given (256 on a CPU; on a GPU about 4M
pixels a batch: 4096 views at 32 px). A ratio near 1 means the teacher is never starved. On CUDA it
also prints the teacher's achieved TFLOP/s (FLOPs counted by torch's FlopCounterMode) and MFU
against the card's dense bf16 peak. Goals (issue 11): CPU 2x resnet50 @128 px >= 0.95, CPU 28-px
drkit_cnn_small >= 0.85, GPU 2x resnet50 @224 px >= 0.85 and 1x resnet18 @32 px >= 0.5 (issue 23).
The small teachers (resnet18 @32 px, drkit_cnn_small @28 px) read ``--small-data`` (default
``--data``). Recipe rrc+ra+re, NS 4, K 10; teachers have random weights
(speed does not depend on them), loaded through `timm:resnet50?file=...` / `ckpt:`. Each timed
section starts after a full `gc.collect()`, as timeit and pyperf arrange: otherwise the ~0.1 s
full collection that loading the teachers and the earlier sections made due lands in whichever
short section comes next (in a real run of hours it is noise). The process reuses freed host memory
as the `drkit` command arranges (`drkit.device.tune_host_allocator`; the header says whether it
applied), and the source's fingerprint is computed before the clock starts, a one-off per dataset.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from provenance import commit_id, device_name  # benchmarks/ is on sys.path when run as a script

#: dense bf16 tensor-core peak, TFLOP/s, by device-name fragment (vendor datasheets)
PEAK_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "4090": 165.0}


def teacher_forward_rate(ens: torch.nn.Module, batch: int, size: int, chans: int, batches: int,
                         device: torch.device) -> float:
    from drkit.reinforce.labeller import Labeller

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, chans, size, size), generator=g, dtype=torch.uint8)
    if device.type == "cuda":
        x = x.pin_memory()
    labeller = Labeller(ens, device, 10)  # reinforce's own labelling path (a CUDA graph on CUDA)
    labeller.prepare(tuple(x.shape))
    labeller(x).result()  # warm-up
    _sync(device)
    gc.collect()  # see the module docstring
    t = time.perf_counter()
    queued = [labeller(x) for _ in range(batches)]  # nothing waits in between
    for labels in queued:
        labels.result()
    return batch * batches / (time.perf_counter() - t)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_image(ens: torch.nn.Module, size: int, chans: int, device: torch.device) -> float:
    """Forward FLOPs of the whole ensemble for one image (torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(2, chans, size, size, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        ens(x)
    return counter.get_total_flops() / 2


def reinforce_rate(data: str, teacher: torch.nn.Module, size: int, views: int, batch: int | None, workers: int,
                   device: torch.device, out: Path) -> float:
    """Views/s of ``drkit.reinforce`` with the already loaded ensemble (loading weights is a
    one-off cost, not throughput), end-of-run diagnostics timed apart."""
    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.sources import load_source

    samples = 4
    sep = "&" if "?" in data else "?"
    src = load_source(f"{data}{sep}n={views // samples}")
    src.fingerprint  # identifying the dataset (hashing all of it once) is a one-off, like loading the weights
    import drkit.reinforce.run as run

    spent = {"diagnostics": 0.0}
    real = run.diagnose

    def timed(*a, **k):  # the end-of-run diagnostics: a capped plain-image pass, not labelling
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            spent["diagnostics"] += time.perf_counter() - t0

    run.diagnose = timed
    _sync(device)
    gc.collect()  # see the module docstring
    t = time.perf_counter()
    try:
        reinforce(ReinforceConfig(data=src, teacher=teacher, out=out, recipe="rrc+ra+re", views=samples, topk=10,
                                  image_size=size, batch_size=batch, workers=workers, device=str(device),
                                  progress=False, images_per_shard=1024, command=["benchmark"]))
    finally:
        run.diagnose = real
    return (views // samples) * samples / (time.perf_counter() - t - spent["diagnostics"])


def make_weights(tmp: Path, model: str, chans: int, classes: int, seed: int) -> str:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = timm.create_model(model, pretrained=False, num_classes=classes, in_chans=chans)
    path = tmp / f"{model}-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


def make_jpegs(root: Path, count: int, classes: int = 10, size: tuple[int, int] = (320, 256)) -> None:
    """A synthetic ImageFolder of RGB JPEGs (smooth noise, quality 90; 320x256: ImageNet-like decode cost)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        d = root / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(d / f"{i:06d}.jpg", quality=90)


def _cases(args: argparse.Namespace, tmp: Path,
           device: torch.device) -> list[tuple[str, str, list[str], int, int, int]]:
    """(name, source, teacher specs, input size, views, channels) of the realistic, the resnet18 and the tiny
    teacher."""
    from drkit.checkpoint import save_checkpoint
    from drkit.models import ImageModel, ModelConfig
    from drkit.sources import load_source

    src, small = load_source(args.data), load_source(args.small_data)
    chans, small_chans = src.channels, small.channels
    small_views = min(args.views * 8, 4 * len(small))  # NS = 4 views of at most every image
    size = args.size or (224 if device.type == "cuda" else 128)
    big = [f"timm:resnet50?file={make_weights(tmp, 'resnet50', chans, 10, s)}" for s in (0, 1)]
    r18 = [f"timm:resnet18?file={make_weights(tmp, 'resnet18', small_chans, 10, 0)}"]
    cfg = ModelConfig(model="drkit_cnn_small", num_classes=10, in_chans=small_chans, image_size=28,
                      mean=[0.286] * small_chans, std=[0.353] * small_chans, classes=list(small.classes))
    save_checkpoint(tmp / "small", ImageModel.from_config(cfg, seed=0), cfg)
    return [(f"2x timm resnet50 @{size}px", args.data, big, size, args.views, chans),
            ("1x timm resnet18 @32px", args.small_data, r18, 32, small_views, small_chans),
            ("1x drkit_cnn_small @28px", args.small_data, [f"ckpt:{tmp / 'small'}"], 28, small_views, small_chans)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--views", type=int, default=768, help="views per reinforce run (realistic teacher)")
    ap.add_argument("--batch-size", type=int, default=None, help="views per teacher batch (default: reinforce's)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: reinforce's own default)")
    ap.add_argument("--size", type=int, default=None, help="realistic teacher's input (default 128 CPU, 224 CUDA)")
    ap.add_argument("--data", default="fashion-mnist:train")
    ap.add_argument("--make-jpegs", type=int, default=0, metavar="N", help="first write N synthetic JPEGs to "
                    "the imagefolder:PATH given as --data")
    ap.add_argument("--small-data", default=None, help="the small teachers' source (default: --data)")
    ap.add_argument("--make-small-jpegs", type=int, default=0, metavar="N", help="first write N synthetic 32x32 "
                    "JPEGs to the imagefolder:PATH given as --small-data")
    ap.add_argument("--repeats", type=int, default=3, help="reinforce runs per teacher; the median ratio is reported")
    ap.add_argument("--out-file", default=None)
    args = ap.parse_args()
    from drkit.device import default_batch_size, tune_host_allocator
    from drkit.teachers import load_teacher

    tuned = tune_host_allocator()  # as the drkit command does at start

    device = torch.device(args.device)
    if args.make_jpegs:
        make_jpegs(Path(args.data.split(":", 1)[1].split("?")[0]), args.make_jpegs)
    args.small_data = args.small_data or args.data
    if args.make_small_jpegs:
        make_jpegs(Path(args.small_data.split(":", 1)[1].split("?")[0]), args.make_small_jpegs, size=(32, 32))
    commit = commit_id()
    name = device_name(device)
    lines = [f"# command: {' '.join(sys.argv)}",
             f"# commit: {commit}  torch {torch.__version__}  threads {torch.get_num_threads()}  device {name}"
             f"  host allocator {'tuned as drkit does' if tuned else 'as found'}",
             f"# seeds: weights 0/1, reinforce seed 0, recipe rrc+ra+re, NS=4, K=10; {args.repeats} run(s) a teacher"
             + (" (a single run: no spread)" if args.repeats == 1 else "")]
    print("\n".join(lines), flush=True)
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for label_, data, specs, size, views, chans in _cases(args, tmp, device):
            ens = load_teacher(specs, device=device, num_classes=10)
            batch = args.batch_size or default_batch_size(device, size)
            # forward measured before and after each reinforce (same number of images), averaged: the
            # machine's speed drifts, and both sides of a ratio should see the same drift; the
            # median of --repeats such ratios is the figure, all of them are printed
            nb = max(2, views // batch // 2)
            runs = []
            for rep in range(args.repeats):
                fwd_a = teacher_forward_rate(ens, batch, size, chans, nb, device)
                rein = reinforce_rate(data, ens, size, views, args.batch_size, args.workers, device,
                                      tmp / f"store-{len(results)}-{rep}")
                fwd_b = teacher_forward_rate(ens, batch, size, chans, nb, device)
                fwd = 2 / (1 / fwd_a + 1 / fwd_b)
                runs.append((rein / fwd, fwd, rein))
            ratio, fwd, rein = sorted(runs)[len(runs) // 2]
            row = {"teacher": label_, "views": views, "batch_size": batch, "teacher_forward_img_s": round(fwd, 1),
                   "reinforce_views_s": round(rein, 1), "ratio": round(ratio, 3),
                   "ratios": [round(r[0], 3) for r in runs]}
            line = (f"{label_:28s} batch {batch:4d}  forward {fwd:9.1f} img/s   reinforce {rein:9.1f} views/s   "
                    f"ratio {ratio:.3f}"
                    + (f" (median of {len(runs)}: {' '.join(f'{r[0]:.3f}' for r in runs)})" if len(runs) > 1 else ""))
            if device.type == "cuda":
                tflops = flops_per_image(ens, size, chans, device) * fwd / 1e12
                peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
                row.update(teacher_tflops=round(tflops, 1), mfu=round(tflops / peak, 3) if peak else None)
                line += f"   teacher {tflops:.1f} TFLOP/s" + (f", MFU {tflops / peak:.1%} of {peak:.0f}" if peak
                                                                  else "")
            results.append(row)
            lines.append(line)
            print(line, flush=True)
    lines.append(json.dumps(results))
    print(lines[-1])
    if args.out_file:
        Path(args.out_file).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
