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


def render_split() -> None:
    """Host time of one batch's render call (until it returns) against its wall time once the
    device has finished: tells a host-bound render from a device-bound one."""
    from render_speed import _sources

    from drkit.augment import ViewSampler, resolve_recipe
    from drkit.augment.batch import render_batch

    images = [x.cuda() for x in _sources("rgb320", 64)]
    recipe = resolve_recipe("rrc+ra+re", side=224, strong=True)
    sampler = ViewSampler(recipe, 0, len(images), 4, lambda i: tuple(images[i].shape[-2:]))
    views = [(i, v) for i in range(len(images)) for v in range(4)]
    params = [sampler(i, v) for i, v in views]
    index = [i for i, _ in views]
    for _ in range(2):
        render_batch(recipe, images, index, params, 224)
    torch.cuda.synchronize()
    host, wall = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        render_batch(recipe, images, index, params, 224)
        host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
    print(f"render 256 views rrc+ra+re @224: host {1e3 * min(host):.1f} ms, until done {1e3 * min(wall):.1f} ms",
          flush=True)


def loop_phases(workers: int) -> None:
    """Wall time per batch of the main loop's parts: waiting for a rendered batch, launching the
    teacher, handing over (waiting for the previous batch's top-k, writing); render time in its thread."""
    from reinforce_throughput import make_weights

    import drkit.reinforce.labeller as labeller
    import drkit.reinforce.run as run
    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.sources import load_source
    from drkit.teachers import load_teacher

    tmp = Path(tempfile.mkdtemp())
    specs = [f"timm:resnet50?file={make_weights(tmp, 'resnet50', 3, 10, s)}" for s in (0, 1)]
    ens = load_teacher(specs, device="cuda", num_classes=10)
    src = load_source("imagefolder:/tmp/jpegs?n=4096")
    spent = {"render (thread)": 0.0, "launch teacher": 0.0, "hand over": 0.0, "diagnostics": 0.0}
    real = {k: getattr(run, k) for k in ("_render", "_hand_over", "diagnose")}
    call = labeller.Labeller.__call__

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper

    for key, name in (("_render", "render (thread)"), ("_hand_over", "hand over"), ("diagnose", "diagnostics")):
        setattr(run, key, timed(name, real[key]))
    labeller.Labeller.__call__ = timed("launch teacher", call)
    t = time.perf_counter()
    try:
        reinforce(ReinforceConfig(data=src, teacher=ens, out=tmp / "s", recipe="rrc+ra+re", views=4, topk=10,
                                  image_size=224, batch_size=256, workers=workers, device="cuda", progress=False))
    finally:
        for k, v in real.items():
            setattr(run, k, v)
        labeller.Labeller.__call__ = call
    total = time.perf_counter() - t - spent["diagnostics"]
    batches = 16384 // 256
    parts = ", ".join(f"{k} {1e3 * v / batches:.1f}" for k, v in spent.items() if k != "diagnostics")
    wait = total - spent["launch teacher"] - spent["hand over"]
    print(f"workers {workers}: {16384 / total:.0f} views/s; ms per batch: main loop {1e3 * total / batches:.1f} = "
          f"waiting for a rendered batch {1e3 * wait / batches:.1f} + launch + hand over; {parts}", flush=True)


if __name__ == "__main__":
    deviation()
    render_split()
    loop_profile()
    for w in (8,):
        loop_phases(w)
