"""One-off diagnostics on a GPU machine: CPU-vs-GPU render deviation per op, and where reinforce's
main loop spends its time (loader alone vs render vs teacher). Not a benchmark; output goes to the note."""
from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def deviation() -> None:
    from test_renderer import _images, _views

    from drkit.augment import get_recipe
    from drkit.augment.batch import render_batch

    g = torch.Generator().manual_seed(1)
    square = [torch.randint(0, 256, (3, 24, 24), generator=g, dtype=torch.uint8) for _ in range(12)]
    for spec, images in (("rrc", _images()), ("rrc", square), ("padcrop", square), ("padcrop", _images()),
                         ("padcrop+ra", square), ("padcrop+ta", square), ("padcrop+re", square),
                         ("padcrop+mix@mixup=1,cutmix=0", square), ("padcrop+mix@mixup=0,cutmix=1", square)):
        recipe = get_recipe(spec)
        views, params, pidx, pparams = _views(recipe, images)
        index = [i for i, _ in views]
        cpu = render_batch(recipe, images, index, params, 24, pidx, pparams)
        gpu = render_batch(recipe, [x.cuda() for x in images], index, params, 24, pidx, pparams).cpu()
        d = (cpu.int() - gpu.int()).abs().float()
        bad = [r for r in range(d.shape[0]) if d[r].max() > 0]
        extra = ""
        if bad and "ra" in spec or bad and "ta" in spec:
            op = "ra" if "ra" in spec else "ta"
            extra = " ops of differing views: " + str(sorted({tuple(params[r][op].values()) for r in bad})[:8])
        print(f"{spec:32s} {images[0].shape[-1]}px-src: max {d.max():.0f} mean {d.mean():.3f} "
              f"share {(d > 0).float().mean():.4f} views differing {len(bad)}/{d.shape[0]}{extra}", flush=True)


def loop_profile() -> None:
    from torch.utils.data import DataLoader

    from drkit.augment import resolve_recipe
    from drkit.reinforce.views import ViewBatches, batch_tasks
    from drkit.sources import load_source

    src = load_source("imagefolder:/tmp/jpegs?n=4096")
    rec = resolve_recipe("rrc+ra+re", 224, strong=True)
    tasks = batch_tasks([(0, 0, 4096)], 4, 256)
    for workers in (12,):
        loader = DataLoader(ViewBatches(src, rec, 0, 4, tasks, False), batch_size=None, num_workers=workers,
                            prefetch_factor=4)
        t = time.perf_counter()
        n = 0
        for item in loader:
            n += len(item["samples"])
        print(f"loader alone, {workers} workers: {n / (time.perf_counter() - t):.0f} views/s", flush=True)
    t = time.perf_counter()
    ViewBatches(src, rec, 0, 4, tasks, False)[0]
    print(f"one item in-process: {1e3 * (time.perf_counter() - t):.0f} ms", flush=True)
    pr = cProfile.Profile()
    pr.enable()
    ViewBatches(src, rec, 0, 4, tasks, False)[1]
    pr.disable()
    pstats.Stats(pr).sort_stats("cumulative").print_stats(12)


def reinforce_profile() -> None:
    from reinforce_throughput import make_weights

    from drkit.reinforce import reinforce
    from drkit.sources import load_source

    tmp = Path(tempfile.mkdtemp())
    specs = [f"timm:resnet50?file={make_weights(tmp, 'resnet50', 3, 10, s)}" for s in (0, 1)]
    src = load_source("imagefolder:/tmp/jpegs?n=4096")
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    reinforce(src, specs, tmp / "s", recipe="rrc+ra+re", samples=4, topk=10, image_size=224, batch_size=256,
              workers=12, device="cuda", progress=False)
    pr.disable()
    print(f"reinforce 16384 views incl. diagnostics: {16384 / (time.perf_counter() - t):.0f} views/s", flush=True)
    pstats.Stats(pr).sort_stats("tottime").print_stats(22)


if __name__ == "__main__":
    deviation()
    loop_profile()
    reinforce_profile()
