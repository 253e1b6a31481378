"""What checking every shard on use costs a DR epoch, measured in one run (issue 12 goal <= 1.02).

    .venv/bin/python benchmarks/verify_cost.py --out-file benchmarks/results/verify_cost.txt   # ~4 min, 2 CPU cores

Store: the first 10,000 Fashion-MNIST training images, ``padcrop``, NS 10, top-5, labelled by a
seeded random ``drkit_cnn_small`` (labels do not matter for speed). Training: ``drkit_cnn_tiny``,
batch 128, 2 loader workers (each checks the shards it opens: path, size, sha256, schema, values;
and every image it reads against the content digest the store recorded), 3 epochs per run with
the first dropped, runs interleaved checked / unchecked / checked / unchecked. "Unchecked"
replaces the shard check with a bare memory map and reads images without their digests. Prints
the median epoch seconds of each and their ratio, and, because epoch times on a shared 2-core
machine wander by several per cent, also the checks' own work timed directly (opening and
checking every shard and digest file, and every image's digest compared) as a share of the
unchecked epoch.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from provenance import commit_id  # benchmarks/ is on sys.path when run as a script


def check_work(root: Path, src) -> float:
    """Seconds of checking one epoch costs: every shard and digest file opened and checked, and
    every image's digest compared, minus the same loads unchecked (median of 3)."""
    import time

    from drkit.store import open_store

    costs = []
    for _ in range(3):
        store = open_store(root)
        t = time.perf_counter()
        for k in range(len(store.manifest["shards"])):
            store._reader(k)
            store.content_digests(k)
        load = store.image_loader(src)
        for i in range(len(src)):
            load(i)
        checked = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(len(src)):
            src.load_uint8(i)
        costs.append(checked - (time.perf_counter() - t))
    return statistics.median(costs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist:train?n=10000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out-file", default=None)
    args = ap.parse_args()
    import drkit.store.store as store_module
    from drkit.checkpoint import save_checkpoint
    from drkit.models import ImageModel, ModelConfig
    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.sources import load_source
    from drkit.store.shards import ShardReader
    from drkit.train import TrainConfig, read_metrics, train

    commit = commit_id()
    lines = [f"# command: {' '.join(sys.argv)}",
             f"# commit: {commit}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
             f"device cpu x{os.cpu_count()}", "# seeds: teacher 0, store 0, student 0"]
    print("\n".join(lines), flush=True)
    src = load_source(args.data)
    tmp = Path(tempfile.mkdtemp())
    cfg = ModelConfig(model="drkit_cnn_small", num_classes=10, in_chans=1, image_size=28, mean=[0.5], std=[0.25],
                      classes=list(src.classes))
    save_checkpoint(tmp / "t", ImageModel.from_config(cfg, seed=0), cfg)
    root = reinforce(ReinforceConfig(data=src, teacher=f"ckpt:{tmp / 't'}", out=tmp / "store", recipe="padcrop",
                                     views=10, topk=5, progress=False, command=["verify_cost"]))
    checked = store_module.open_shard
    checked_loader = store_module.Store.image_loader

    def unchecked_loader(self, src):  # images read without their content digests
        self.check_source(src)
        return src.load_uint8

    def unchecked(root_, info, manifest, code_bits, checksums=True):  # a bare memory map
        return ShardReader(Path(root_) / info["file"], manifest["arrays"], info["stop"] - info["start"],
                           int(manifest["num_views"]))

    seconds: dict[str, list[float]] = {"checked": [], "unchecked": []}
    for r in range(args.rounds):
        for mode in ("checked", "unchecked")[::1 if r % 2 == 0 else -1]:  # alternate: warm-up hits both alike
            store_module.open_shard = checked if mode == "checked" else unchecked
            store_module.Store.image_loader = checked_loader if mode == "checked" else unchecked_loader
            out = tmp / f"{mode}{r}"
            train(TrainConfig.build(data=src, out=out, reinforced=root, model="drkit_cnn_tiny", epochs=3, batch_size=128,
                              workers=2, seed=0, quiet=True, device="cpu"))
            seconds[mode] += [row["epoch_seconds"] for row in read_metrics(out)[1:]]
    store_module.open_shard = checked
    store_module.Store.image_loader = checked_loader
    med = {k: statistics.median(v) for k, v in seconds.items()}
    direct = check_work(root, src)
    for k, v in seconds.items():
        lines.append(f"{k:10s} median epoch {med[k]:.3f} s   (epochs: " + ", ".join(f"{x:.2f}" for x in v) + ")")
    lines.append(f"checked / unchecked = {med['checked'] / med['unchecked']:.3f}   (goal <= 1.02)")
    lines.append(f"the checks' own work, timed directly: {1e3 * direct:.1f} ms per epoch in one process = "
                 f"{direct / med['unchecked']:.2%} of the unchecked epoch (workers share it)")
    print("\n".join(lines[3:]), flush=True)
    if args.out_file:
        Path(args.out_file).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
