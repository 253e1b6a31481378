"""Batched renderer speed: views/s of `render_batch` against the per-view reference, one run.

    .venv/bin/python benchmarks/render_speed.py                       # CPU, ~1 min
    python3 benchmarks/render_speed.py --device cuda                  # a GPU machine

Sources: 64 synthetic smooth RGB images of 320x256 (ImageNet-like) and 64 grey 28x28 (Fashion-MNIST
like); each batch holds 256 views (NS 4 of 64 images), parameters sampled beforehand (sampling runs
in loader workers during reinforce). Prints views/s per recipe and size for the batched renderer on
--device and for the per-view reference on the CPU, and their ratio. Expected: the batched renderer
is faster than the reference on the CPU and several times faster on a GPU. Then the host's rate of
drawing view parameters a batch at once (sampler 2; the per-view numpy generators of sampler 1,
8.4x slower at 28 px when measured at e9c5f1b, were retired after that).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from provenance import commit_id, device_name  # benchmarks/ is on sys.path when run as a script


def _sources(kind: str) -> list[torch.Tensor]:
    from PIL import Image

    rng = np.random.default_rng(0)
    if kind == "rgb320":
        return [torch.from_numpy(np.array(Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8))
                                          .resize((320, 256), Image.BILINEAR))).permute(2, 0, 1).contiguous()
                for _ in range(64)]
    return [torch.from_numpy(rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)) for _ in range(64)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from drkit.augment import ViewSampler, resolve_recipe
    from drkit.augment.batch import render_batch

    device = torch.device(args.device)
    commit = commit_id()
    name = device_name(device)
    print(f"# command: {' '.join(sys.argv)}\n# commit: {commit}  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  device {name}\n# seed 0, 256 views per batch (64 images x NS 4)")
    for kind, size, spec in (("rgb320", 224, "rrc+ra+re"), ("rgb320", 224, "rrc+ta+re+mix"),
                             ("grey28", 28, "rrc+ra+re"), ("grey28", 28, "padcrop+ra+re")):
        images = _sources(kind)
        recipe = resolve_recipe(spec, side=size, strong=True)
        sampler = ViewSampler(recipe, 0, len(images), 4, lambda i: tuple(images[i].shape[-2:]))
        views = [(i, v) for i in range(len(images)) for v in range(4)]
        params = [sampler(i, v) for i, v in views]
        mixes = [p["mix"] if p.get("mix") and p["mix"]["mode"] else None for p in params]
        pidx = [m["partner"] if m else -1 for m in mixes]
        pparams = [sampler(m["partner"], m["partner_view"]) if m else None for m in mixes]
        dev_images = [x.to(device) for x in images]
        index = [i for i, _ in views]

        def batched() -> None:
            render_batch(recipe, dev_images, index, params, size, pidx, pparams)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        batched()  # warm-up
        t = time.perf_counter()
        for _ in range(args.repeats):
            batched()
        fast = len(views) * args.repeats / (time.perf_counter() - t)
        t = time.perf_counter()
        for (i, _), p, j, q in zip(views, params, pidx, pparams):
            recipe.render(images[i], p, size, images[j] if q is not None else None, q)
        ref = len(views) / (time.perf_counter() - t)
        print(f"{kind} -> {size:3d} px {spec:16s} batched ({device.type}) {fast:9.0f} views/s   "
              f"reference (cpu) {ref:7.0f} views/s   ratio {fast / ref:5.1f}", flush=True)
    sampling_rates(max(20, 4 * args.repeats))


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
