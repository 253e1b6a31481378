"""Read throughput of each source and of the importer, measured in one run on the same images.

    .venv/bin/python benchmarks/source_throughput.py --out-file benchmarks/results/source_throughput.txt   # ~2 min

Writes ``--images`` synthetic 320x256 RGB JPEGs (quality 90, ImageNet-like decode cost, seed 0)
as an image folder, a ``save_to_disk`` HF dataset, two WebDataset tar shards, an LMDB and parquet
files (streamed by ``hf-stream:``), then times ``load_uint8`` (read + decode, one process) over
every sample in order and in a shuffled order (seed 0; a stream has no random access), median of
``--repeats``, each divided by the image folder's rate from the same run. The importer is timed
on reference-format files (``{index}.pth.tar`` with NS views of ``rrc+ra+re`` parameters and top-10)
as files/s, from the directory and from a ``.tar.gz`` of it.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import commit_id  # benchmarks/ is on sys.path when run as a script


def make_images(n: int, classes: int = 10) -> list[tuple[int, bytes]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        small = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((320, 256), Image.BILINEAR).save(buf, format="JPEG", quality=90)
        out.append((i % classes, buf.getvalue()))
    return sorted(out, key=lambda r: r[0])  # the order an image folder enumerates (by class)


def build_all(root: Path, images: list[tuple[int, bytes]], classes: int = 10) -> dict[str, str]:
    """Every packaging of the same images; returns name -> source spec."""
    import datasets
    import lmdb
    import webdataset

    names = [f"c{c}" for c in range(classes)]
    for k, (label, data) in enumerate(images):
        (root / "folder" / names[label]).mkdir(parents=True, exist_ok=True)
        (root / "folder" / names[label] / f"{k:06d}.jpg").write_bytes(data)
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": d, "path": None} for _, d in images],
                                     "label": [lab for lab, _ in images]}, features=feats)
    ds.save_to_disk(str(root / "hf"))
    (root / "pq" / "data").mkdir(parents=True)
    ds.to_parquet(str(root / "pq" / "data" / "train-00000.parquet"))
    (root / "wds").mkdir()
    half = len(images) // 2
    for s, part in enumerate((images[:half], images[half:])):
        with webdataset.TarWriter(str(root / "wds" / f"part-{s:06d}.tar")) as w:
            for k, (label, data) in enumerate(part):
                w.write({"__key__": f"s{s}_{k:06d}", "jpg": data, "cls": label})
    (root / "wds" / "classes.txt").write_text("\n".join(names) + "\n")
    env = lmdb.open(str(root / "lmdb"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.put(b"__len__", str(len(images)).encode())
        txn.put(b"__classes__", json.dumps(names).encode())
        for i, (label, data) in enumerate(images):
            txn.put(f"{i:08d}".encode(), data)
            txn.put(f"{i:08d}.cls".encode(), str(label).encode())
    env.close()
    return {"imagefolder": f"imagefolder:{root / 'folder'}", "hf": f"hf:{root / 'hf'}", "wds": f"wds:{root / 'wds'}",
            "lmdb": f"lmdb:{root / 'lmdb'}", "hf-stream": f"hf-stream:{root / 'pq'}"}


def read_rate(spec: str, order: np.ndarray) -> float:
    """Images/s of ``load_uint8`` over ``order`` on a freshly opened source (opening not timed)."""
    from drkit.sources import load_source

    src = load_source(spec)
    t = time.perf_counter()
    for i in order.tolist():
        src.load_uint8(i)
    return len(order) / (time.perf_counter() - t)


def reference_files(root: Path, n: int, views: int) -> None:
    """Reference-format files: NS views of RRC + flip + RandAugment + erasing, top-10 of 10 classes."""
    import torch

    aug = {"uint8": {}, "random_resized_crop": {"size": 224}, "random_horizontal_flip": {"p": 0.5},
           "rand_augment": {"p": 1.0}, "to_tensor": {}, "random_erase": {"p": 0.25}}
    root.mkdir(parents=True)
    torch.save({"reinforce": {"num_samples": views, "topk": 10, "compress": True, "image_augmentation": aug}},
               root / "config.pth.tar", pickle_protocol=4)
    rng = np.random.default_rng(0)
    for i in range(n):
        samples = [{"params": [(0, 0, 200, 240), bool(rng.random() < 0.5), [(6, 0.27), (0, 0.0)],
                               None if rng.random() < 0.75 else (10, 20, 30, 40)],
                    "prob": (rng.dirichlet(np.ones(10)).tolist(), rng.permutation(10).tolist())} for _ in range(views)]
        torch.save((i, samples), root / f"{i}.pth.tar", pickle_protocol=4)


def import_rate(ref: Path, spec: str, out: Path) -> float:
    """Files/s of ``import_mldr`` (the store written too)."""
    import shutil

    from drkit.importers import import_mldr

    shutil.rmtree(out, ignore_errors=True)
    n = len([p for p in ref.glob("*.pth.tar")]) - 1 if ref.is_dir() else None
    t = time.perf_counter()
    store = import_mldr(ref, spec, out, progress=False)
    seconds = time.perf_counter() - t
    count = n if n is not None else json.loads((store / "manifest.json").read_text())["num_samples"]
    return count / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--views", type=int, default=10, help="NS of the reference files")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out-file", default=None)
    args = ap.parse_args()
    commit = commit_id()
    lines = [f"# command: {' '.join(sys.argv)}", f"# commit: {commit}  device cpu x{os.cpu_count()}, one process",
             f"# seeds: images 0, shuffled order 0; {args.images} JPEGs 320x256 q90; median of {args.repeats}"]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        specs = build_all(root, make_images(args.images))
        order = {"in order": np.arange(args.images), "shuffled": np.random.default_rng(0).permutation(args.images)}
        runs: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):  # rounds interleave the sources: the machine's drift hits them all
            for name, spec in specs.items():
                for how, idx in order.items():
                    if name == "hf-stream" and how == "shuffled":
                        continue  # a stream is read in order
                    runs.setdefault((name, how), []).append(read_rate(spec, idx))
        rates = {k: statistics.median(v) for k, v in runs.items()}
        lines.append(f"{'source':12s} {'order':9s} {'images/s':>9s} {'(runs min-max)':>16s}  vs imagefolder "
                     "(median of the rounds' ratios, each to the folder in the same round; their range)")
        for (name, how), r in rates.items():
            lo, hi = min(runs[name, how]), max(runs[name, how])
            ratios = [x / f for x, f in zip(runs[name, how], runs["imagefolder", how])]
            lines.append(f"{name:12s} {how:9s} {r:9.1f} {f'({lo:.0f}-{hi:.0f})':>16s}  {statistics.median(ratios):.2f}"
                         f"  ({min(ratios):.2f}-{max(ratios):.2f})")
        reference_files(root / "ref", args.images, args.views)
        import tarfile

        with tarfile.open(root / "ref.tar.gz", "w:gz") as tar:
            tar.add(root / "ref", arcname="ref")
        for what, ref in (("directory", root / "ref"), (".tar.gz", root / "ref.tar.gz")):
            r = statistics.median(import_rate(ref, specs["imagefolder"], root / "imported") for _ in range(args.repeats))
            lines.append(f"import-mldr from a {what}: {r:.1f} files/s ({args.views} views each)")
    print("\n".join(lines))
    if args.out_file:
        Path(args.out_file).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
