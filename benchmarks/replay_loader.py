"""DR training throughput against ERM with a plain torchvision v2 loader of the same ops, measured
in one run: same student, batch, loop, loader workers and device.

    .venv/bin/python benchmarks/replay_loader.py                     # ~3 min on 2 CPU cores
    python3 benchmarks/replay_loader.py --device cuda --workers 4 --batch-size 256 \\
        --data imagefolder:/tmp/j64 --make-jpegs 8192                 # a GPU machine (64-px JPEGs)

ERM: ``RandomCrop(28, padding=4) + RandomHorizontalFlip + RandAugment(2, m=3) + RandomErasing``
from torchvision.transforms.v2 on uint8 tensors, default collate. DR: a store of the same data
reinforced with ``padcrop+ra+re`` (RandAugment m = 3 at 28 px, NS 4) by a seeded random teacher
(labels do not matter for speed), replayed as ``drkit train`` does: raw batches from the loader
workers (``ds.raw()`` + ``collate_raw``) rendered whole in the training process (``ds.render``;
the per-view loader path of earlier rows was retired in issue 21). One loop trains
``drkit_cnn_tiny`` for every loader; modes run interleaved (ERM, DR, then again) and the median
epoch rate counts. Goal (issue 11): DR ÷ ERM >= 1.0.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from provenance import commit_id, device_name  # benchmarks/ is on sys.path when run as a script
from torch.utils.data import DataLoader, Dataset


class TorchvisionERM(Dataset):
    """The baseline: a labelled uint8 source through a torchvision v2 pipeline."""

    def __init__(self, src, size: int):
        from torchvision.transforms import v2

        self.src = src
        self.tf = v2.Compose([v2.RandomCrop(size, padding=round(0.125 * size)), v2.RandomHorizontalFlip(),
                              v2.RandAugment(num_ops=2, magnitude=3), v2.RandomErasing(p=0.25)])

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int):
        return self.tf(self.src.load_uint8(i)), int(self.src.labels[i])


def epoch(model, opt, batches, device, soft: bool, render_fn=None) -> float:
    """One pass; returns images/s."""
    model.train()
    n = 0
    t = time.perf_counter()
    for batch in batches:
        if render_fn is not None:
            x, y = render_fn(batch)
        else:
            x, y = batch
        x = x.to(device, non_blocking=True).float().div_(255).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        logits = model(x)
        loss = (-(y * logits.log_softmax(-1)).sum(-1).mean()) if soft else torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist:train?n=6000")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--make-jpegs", type=int, default=0, metavar="N", help="first write N synthetic 64x64 JPEGs "
                    "to the imagefolder:PATH given as --data")
    ap.add_argument("--out-file", default=None)
    args = ap.parse_args()
    from drkit.checkpoint import save_checkpoint
    from drkit.models import ImageModel, ModelConfig, create_model
    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.sources import load_source
    from drkit.store import open_store
    from drkit.train import ReinforcedDataset, collate_raw

    device = torch.device(args.device)
    if args.make_jpegs:
        from reinforce_throughput import make_jpegs  # this folder is on sys.path when run as a script

        make_jpegs(Path(args.data.split(":", 1)[1].split("?")[0]), args.make_jpegs, size=(64, 64))
    commit = commit_id()
    name = device_name(device)
    lines = [f"# command: {' '.join(sys.argv)}",
             f"# commit: {commit}  torch {torch.__version__}  threads {torch.get_num_threads()}  device {name}",
             f"# seeds: teacher 0, store seed 0, student 0; {args.rounds} interleaved rounds, median epoch rate"]
    print("\n".join(lines), flush=True)
    src = load_source(args.data)
    size = int(src.image_size(0)[0])
    tmp = Path(tempfile.mkdtemp())
    cfg = ModelConfig(model="drkit_cnn_small", num_classes=len(src.classes), in_chans=src.channels, image_size=size,
                      mean=[0.5] * src.channels, std=[0.25] * src.channels, classes=list(src.classes))
    save_checkpoint(tmp / "t", ImageModel.from_config(cfg, seed=0), cfg)
    root = reinforce(ReinforceConfig(data=src, teacher=f"ckpt:{tmp / 't'}", out=tmp / "store", recipe="padcrop+ra+re",
                                     views=4, topk=5, device=str(device), workers=args.workers, progress=False,
                                     command=["replay_loader"]))
    store = open_store(root)
    ds = ReinforcedDataset(src, store, as_uint8=True)
    common = dict(batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True,
                  pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
                  generator=torch.Generator().manual_seed(0))
    loaders = {"ERM (torchvision v2)": (DataLoader(TorchvisionERM(src, size), **common), False, None),
               "DR (batches rendered in the loop)": (DataLoader(ds.raw(), collate_fn=collate_raw, **common), True,
                                                     lambda b: ds.render(b, device))}
    rates: dict[str, list[float]] = {k: [] for k in loaders}
    for r in range(args.rounds + 1):
        for label, (loader, soft, fn) in loaders.items():
            model = create_model("drkit_cnn_tiny", num_classes=len(src.classes), in_chans=src.channels, seed=0)
            model = model.to(device).to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            ds.set_epoch(r)
            rate = epoch(model, opt, loader, device, soft, fn)
            if r > 0:  # round 0 warms up workers and caches
                rates[label].append(rate)
    erm = statistics.median(rates["ERM (torchvision v2)"])
    for label, values in rates.items():
        med = statistics.median(values)
        lines.append(f"{label:36s} {med:8.0f} img/s   / ERM {med / erm:5.2f}   (rounds: "
                     + ", ".join(f"{v:.0f}" for v in values) + ")")
        print(lines[-1], flush=True)
    if args.out_file:
        Path(args.out_file).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
