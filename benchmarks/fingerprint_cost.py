"""Opening an image folder of many files: listing + fingerprint without the cache, on the first
command (which writes the cache) and on every later command (cached), measured in one run.

    .venv/bin/python benchmarks/fingerprint_cost.py --out-file benchmarks/results/fingerprint_cost.txt

Builds a synthetic ImageNet-layout folder (``--classes`` x ``--per-class`` empty ``.jpg`` files,
200k by default; listing never opens a file) and times ``load_source("imagefolder:...")`` followed
by ``.fingerprint``, ``--repeats`` times each, reporting the median. The files were just created,
so the operating system's directory cache is warm in every case: the figures are the cost of
the walk and the per-file ``stat`` calls, not of a cold disk (which only widens the gap).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from provenance import commit_id  # benchmarks/ is on sys.path when run as a script


def make_folder(root: Path, classes: int, per_class: int) -> None:
    past = time.time() - 3600  # folder times in the past: a just-changed folder is never cached
    for c in range(classes):
        d = root / f"n{c:08d}"
        d.mkdir(parents=True)
        for k in range(per_class):
            (d / f"n{c:08d}_{k}.jpg").touch()
        os.utime(d, (past, past))
    os.utime(root, (past, past))


def open_folder(root: Path, cache: str) -> tuple[float, str]:
    """Seconds to load the source and compute its fingerprint with ``DRKIT_CACHE_DIR=cache``."""
    from drkit.sources import load_source

    os.environ["DRKIT_CACHE_DIR"] = cache
    t = time.perf_counter()
    fp = load_source(f"imagefolder:{root}").fingerprint
    return time.perf_counter() - t, fp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out-file", default=None)
    args = ap.parse_args()
    commit = commit_id()
    lines = [f"# command: {' '.join(sys.argv)}", f"# commit: {commit}  device cpu x{os.cpu_count()}",
             "# seeds: none (no randomness)"]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "folder"
        t = time.perf_counter()
        make_folder(root, args.classes, args.per_class)
        files = args.classes * args.per_class
        lines.append(f"# folder: {files:,} files in {args.classes} class folders, made in {time.perf_counter() - t:.1f} s")
        off, cold, cached, fps = [], [], [], set()
        for r in range(args.repeats):
            s, fp = open_folder(root, "off")
            off.append(s)
            fps.add(fp)
            s, fp = open_folder(root, str(Path(d) / f"cache{r}"))  # a fresh cache: list, stat, write
            cold.append(s)
            fps.add(fp)
            s, fp = open_folder(root, str(Path(d) / f"cache{r}"))  # the next command
            cached.append(s)
            fps.add(fp)
        assert len(fps) == 1, "the cache changed the fingerprint"
    m_off, m_cold, m_cached = (statistics.median(x) for x in (off, cold, cached))
    lines += [f"no cache (DRKIT_CACHE_DIR=off)   {m_off:8.3f} s   (runs: {', '.join(f'{x:.3f}' for x in off)})",
              f"first command (writes cache)    {m_cold:8.3f} s   (runs: {', '.join(f'{x:.3f}' for x in cold)})",
              f"later commands (cached)         {m_cached:8.3f} s   (runs: {', '.join(f'{x:.3f}' for x in cached)})",
              f"cached / no cache               {m_cached / m_off:8.3f}"]
    print("\n".join(lines))
    if args.out_file:
        Path(args.out_file).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
