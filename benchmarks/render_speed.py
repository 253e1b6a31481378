"""Batched renderer speed: views/s of `render_batch` against the per-view reference, one run.

    .venv/bin/python benchmarks/render_speed.py --views-per-batch 256 2048 --repeats 3 \
        > benchmarks/results/render_speed_cpu.txt                     # CPU, ~2 min
    python3 benchmarks/render_speed.py --device cuda                  # a GPU machine

Sources: synthetic smooth RGB images of 320x256 (ImageNet-like), RGB 32x32 (CIFAR-like) and grey 28x28
(Fashion-MNIST like); a batch holds ``--views-per-batch`` views, ``--samples`` (NS, reinforce's default 10)
of each of views / NS images, as in reinforce's batches, parameters sampled beforehand (sampling runs in
loader workers during reinforce). Prints
views/s per recipe, size and batch size for the batched renderer on --device and for the per-view
reference on the CPU, and their ratio, beside the aten ops one batch dispatches that launch a kernel and
that make the host wait (counted the same way on any device: on a GPU each launch costs host time
whatever its size, so a count that does not grow with the batch says larger batches amortise it). Only the
crop-resize stage differs by device; ``accel resize`` counts the accelerator's form of it (``crop_batch`` with
``accelerator=True`` on CPU tensors: the same code), so a CPU run shows that stage's launches on a GPU too. Goals
on a GPU (issue 23): >= 100k views/s at 32 px and >= 20k at 224 px, rrc+ra+re. Expected: the batched
renderer is faster than the reference on the CPU and several times faster on a GPU. On the CPU, ``host``
is a profiled batch's wall time less its time inside aten ops, per view, median of 3: the Python and dispatch
around the kernels (and the profiler's bookkeeping: an upper estimate), which a GPU pays too, so at 28-32 px
1e6 / host is a lower estimate of the views/s a GPU's host can feed with
this code (at 224 px it is mostly the CPU-only grouped resize's thousands of small calls). Then the host's rate
of drawing view parameters a batch at once (sampler 2; the per-view numpy generators of sampler 1, 8.4x
slower at 28 px when measured at e9c5f1b, were retired after that).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import numpy as np
import torch
from provenance import commit_id, device_name  # benchmarks/ is on sys.path when run as a script


def _sources(kind: str, n: int) -> list[torch.Tensor]:
    from PIL import Image

    rng = np.random.default_rng(0)
    if kind == "rgb320":
        return [torch.from_numpy(np.array(Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8))
                                          .resize((320, 256), Image.BILINEAR))).permute(2, 0, 1).contiguous()
                for _ in range(n)]
    if kind == "rgb32":
        return [torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)) for _ in range(n)]
    return [torch.from_numpy(rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)) for _ in range(n)]


#: aten ops that launch no kernel (metadata, allocation): left out of the per-batch kernel count
_NO_KERNEL = {"view", "_unsafe_view", "_reshape_alias", "slice", "select", "unsqueeze", "squeeze", "permute", "expand",
              "detach", "alias", "lift_fresh", "as_strided", "t", "transpose", "unflatten", "flatten", "split",
              "unbind", "narrow", "empty", "empty_strided", "empty_like", "view_as_real", "is_nonzero"}
#: ops that make the host wait for the device (a value read back, a data-dependent size)
_SYNC = {"_local_scalar_dense", "item", "nonzero", "masked_select", "unique", "_unique2", "equal"}


def dispatch_counts(fn: Callable[[], object]) -> tuple[int, int]:
    """(kernel ops, host-synchronising ops) one call of ``fn`` dispatches: the launches a GPU pays
    for whatever the batch size, counted the same way on the CPU (no device needed)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        kernels = syncs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = func.overloadpacket.__name__
            Count.kernels += name not in _NO_KERNEL
            Count.syncs += name in _SYNC
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.kernels, Count.syncs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--views-per-batch", type=int, nargs="+", default=[256, 4096], help="batch sizes to render")
    ap.add_argument("--samples", type=int, default=10, help="NS: views of each source image in a batch")
    args = ap.parse_args()
    from drkit.augment import ViewSampler, resolve_recipe
    from drkit.augment.batch import crop_batch, render_batch

    device = torch.device(args.device)
    commit = commit_id()
    name = device_name(device)
    print(f"# command: {' '.join(sys.argv)}\n# commit: {commit}  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  device {name}\n# seed 0, views / {args.samples} source images x "
          f"NS {args.samples} views per batch; kernels / syncs: aten ops one batch dispatches that launch a kernel / "
          f"make the host wait; accel resize: kernels of the accelerator's crop-resize stage (counted on CPU tensors)")
    for kind, size, spec in (("rgb320", 224, "rrc+ra+re"), ("rgb320", 224, "rrc+ta+re+mix"),
                             ("rgb32", 32, "rrc+ra+re"), ("rgb32", 32, "rrc+ta+re+mix"), ("grey28", 28, "rrc+ra+re"),
                             ("grey28", 28, "padcrop+ra+re")):
        ns = args.samples
        images = _sources(kind, max(1, max(args.views_per_batch) // ns))
        recipe = resolve_recipe(spec, side=size, strong=True)
        dev_images = [x.to(device) for x in images]
        ref = None
        for per_batch in args.views_per_batch:
            n_images = max(1, per_batch // ns)
            sampler = ViewSampler(recipe, 0, n_images, ns, lambda i: tuple(images[i].shape[-2:]))
            views = [(i, v) for i in range(n_images) for v in range(ns)]
            params = [sampler(i, v) for i, v in views]
            mixes = [p["mix"] if p.get("mix") and p["mix"]["mode"] else None for p in params]
            pidx = [m["partner"] if m else -1 for m in mixes]
            pparams = [sampler(m["partner"], m["partner_view"]) if m else None for m in mixes]
            index = [i for i, _ in views]

            def batched() -> None:
                render_batch(recipe, dev_images, index, params, size, pidx, pparams)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)

            batched()  # warm-up
            kernels, syncs = dispatch_counts(batched)
            t = time.perf_counter()
            for _ in range(args.repeats):
                batched()
            fast = len(views) * args.repeats / (time.perf_counter() - t)
            if ref is None:  # the per-view reference, on the first batch's views
                t = time.perf_counter()
                for (i, _), p, j, q in zip(views, params, pidx, pparams):
                    recipe.render(images[i], p, size, images[j] if q is not None else None, q)
                ref = len(views) / (time.perf_counter() - t)
            boxes = [p[recipe.ops[0].name] for p in params]  # the accelerator's crop stage, run on CPU tensors
            accel = dispatch_counts(lambda: crop_batch(images, index, boxes, size, accelerator=True))[0]
            host = "" if device.type != "cpu" else \
                f"  host {host_seconds(batched) / len(views) * 1e6:4.1f} us/view"
            print(f"{kind} -> {size:3d} px {spec:16s} {len(views):5d} views/batch  batched ({device.type}) "
                  f"{fast:9.0f} views/s  kernels {kernels:5d}  syncs {syncs:4d}  accel resize {accel:4d}{host}   "
                  f"reference (cpu) {ref:7.0f} views/s   ratio {fast / ref:6.1f}", flush=True)
    sampling_rates(max(20, 4 * args.repeats))


def host_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """A call's wall time less its time inside aten ops (torch.profiler's self CPU time), both from the same
    profiled call, median of ``repeats``: the host work around the kernels, Python mostly, which a GPU pays as
    well. The profiler's own bookkeeping counts as host time, so this overstates the host's share (an upper
    estimate: the views/s a host can feed is at least 1 / this)."""
    import statistics

    from torch.profiler import ProfilerActivity, profile

    spent = []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            fn()
            wall = time.perf_counter() - t
        spent.append(wall - sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6)
    return statistics.median(spent)


def sampling_rates(repeats: int) -> None:
    """Views/s of drawing parameters (host work, in reinforce's loader workers), 256 views at once."""
    from drkit.augment import resolve_recipe

    for spec, size in (("rrc+ra+re", 28), ("rrc+ra+re+mix", 224)):
        recipe = resolve_recipe(spec, side=size, strong=True)
        samples, views = [i for i in range(64) for _ in range(4)], [v for _ in range(64) for v in range(4)]
        recipe.sample_batch(0, samples, views, [(size, size)] * 256, 64, 4)  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            recipe.sample_batch(0, samples, views, [(size, size)] * 256, 64, 4)
        rate = 256 * repeats / (time.perf_counter() - t)
        print(f"sampling {spec:16s} @{size:3d} px  sampler 2 (256 at once) {rate:9.0f} views/s", flush=True)


if __name__ == "__main__":
    main()
