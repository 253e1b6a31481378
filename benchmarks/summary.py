"""Write the README's benchmark table from the committed results files, so that no figure in it is
copied by hand:

    .venv/bin/python benchmarks/summary.py README.md        # rewrites the `benchmarks` block
    .venv/bin/python benchmarks/summary.py -                # prints the table

Each row names the benchmark script, what it measures, the results file, the command, commit,
seeds and device read from that file's header, and the file's headline lines (selected by a pattern, quoted with
their whitespace compacted). Goals are the issues' targets; "met" / "not met" is decided here from
the quoted ratio, never typed in.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Entry:
    script: str
    measures: str
    file: str
    headline: str  # regex selecting the lines quoted in the table
    #: (line regex, "<=" or ">=", target), checked on the first ratio of the line the regex picks
    goals: tuple[tuple[str, str, float], ...] = ()
    #: the code the figures depend on: a commit after the results' commit that touches it makes them stale
    code: tuple[str, ...] = ("src/drkit",)


TRAIN = ("src/drkit/train", "src/drkit/augment", "src/drkit/store")
REINFORCE = ("src/drkit/reinforce", "src/drkit/augment", "src/drkit/teachers", "src/drkit/store")

ENTRIES = [
    Entry("train_cost.py", "epoch wall time, DR ÷ ERM and online KD ÷ DR, same student, recipe, loader, device",
          "train_cost.txt", r"^(DR / ERM|KD / DR)", ((r"^DR / ERM", "<=", 1.02),), code=TRAIN),
    Entry("train_cost.py", "the same in the demo's setting (padcrop store and recipe)",
          "train_cost_padcrop.txt", r"^(DR / ERM|KD / DR)", ((r"^DR / ERM", "<=", 1.02),), code=TRAIN),
    Entry("reinforce_throughput.py", "reinforce views/s ÷ teacher-only forward img/s, same teacher, batch, device",
          "reinforce_throughput.txt", r"ratio",
          ((r"resnet50", ">=", 0.95), (r"drkit_cnn_small @28", ">=", 0.85)), code=REINFORCE),
    Entry("reinforce_throughput.py", "the same on a GPU (command in the script's docstring)",
          "reinforce_throughput_gpu.txt", r"ratio", ((r"resnet50 @224", ">=", 0.85), (r"resnet18 @32", ">=", 0.5)),
          code=REINFORCE),
    Entry("replay_loader.py", "DR training img/s ÷ ERM with a torchvision v2 loader of the same ops",
          "replay_loader.txt", r"^DR", ((r"rendered in the loop", ">=", 1.0),), code=TRAIN),
    Entry("replay_loader.py", "the same on a GPU, the CPU loader made the bottleneck (64-px JPEGs, 4 workers)",
          "replay_loader_gpu.txt", r"^DR", ((r"rendered in the loop", ">=", 1.0),), code=TRAIN),
    Entry("render_speed.py", "batched renderer views/s vs the per-view reference; kernels a batch dispatches (and "
          "the accelerator's crop-resize stage); host work per view",
          "render_speed_cpu.txt", r"ratio", code=("src/drkit/augment",)),
    Entry("render_speed.py", "the same on a GPU", "render_speed_gpu.txt", r"ratio", code=("src/drkit/augment",)),
    Entry("cuda_paths.py", "CUDA paths: AMP, channels_last, store and replay across devices", "cuda_paths.txt",
          r"^(ok|FAIL|BAD)"),
    Entry("fingerprint_cost.py", "opening a 200k-file image folder: cached vs uncached listing + fingerprint",
          "fingerprint_cost.txt", r"^(no cache|later commands|cached / no cache)", code=("src/drkit/sources",)),
    Entry("verify_cost.py", "epoch time with every per-use check vs without; the checks timed directly",
          "verify_cost.txt", r"^(checked / unchecked|the checks' own work)", ((r"^checked / unchecked", "<=", 1.02),),
          code=("src/drkit/store", "src/drkit/train", "src/drkit/sources")),
    Entry("loader_start.py", "drkit train's epoch seconds under each start method (fork, forkserver, spawn)",
          "loader_start.txt", r"ratio", ((r"^spawn", "<=", 1.2),), code=TRAIN),
    Entry("source_throughput.py", "hf:, wds:, lmdb:, hf-stream: read rate vs the image folder; import-mldr files/s",
          "source_throughput.txt", r"(in order|shuffled|import-mldr)",
          code=("src/drkit/sources", "src/drkit/importers")),
]


def _header(text: str) -> dict[str, str]:
    """command, commit, seeds and device from a results file's header lines (``?`` when absent)."""
    head = text.splitlines()[:8]
    rest = "\n".join(ln for ln in head if "command:" not in ln)  # the command names --device
    found = {
        "command": next((ln.split("command:", 1)[1].strip() for ln in head if "command:" in ln), None),
        "commit": (m.group(1)[:7] if (m := re.search(r"commit:?\s+([0-9a-f]{7,40})", rest)) else None),
        "seeds": (m.group(1).strip() if (m := re.search(r"(seeds?:?\s[^;\n]*(?:\([^)]*\))?)", rest)) else None),
        "device": (m.group(1).strip() if (m := re.search(r"device:?\s+([^;,\n]+?(?:\([^)]*\))?)(?:\s{2,}|;|,|$)",
                                                          rest, re.M)) else None),
    }
    return {k: v or "not recorded" for k, v in found.items()}


def _ratio(line: str) -> float | None:
    found = re.search(r"(?:ratio|=|/ ERM)\s+([0-9]+\.[0-9]+)", line)  # the first: a line may quote its goal after it
    return float(found.group(1)) if found else None


def _goal_notes(entry: Entry, lines: list[str]) -> list[str]:
    notes = []
    for pattern, op, target in entry.goals:
        line = next((ln for ln in lines if re.search(pattern, ln)), None)
        value = _ratio(line) if line else None
        if value is None:
            notes.append(f"goal {op} {target}: no figure")
            continue
        met = value <= target if op == "<=" else value >= target
        notes.append(f"{pattern.strip('^')}: {value} (goal {op} {target}: {'met' if met else '**not met**'})")
    return notes


def staleness(commit: str, code: tuple[str, ...]) -> str:
    """``current``, or how many later commits changed the code the figures measure (read from git,
    up to HEAD: a results file older than the code it measures says so instead of passing for new)."""
    import subprocess

    root = RESULTS.parents[1]
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root, capture_output=True)
    if commit == "not recorded" or known.returncode != 0:
        return "unknown (commit not in this history)"
    out = subprocess.run(["git", "rev-list", "--count", f"{commit}..HEAD", "--", *code], cwd=root,
                         capture_output=True, text=True)
    n = int(out.stdout.strip() or 0)
    if n == 0:
        return "current"
    return f"**stale**: {n} later commit{'s' * (n > 1)} change{'s' * (n == 1)} {', '.join(code)}"


def row(entry: Entry, status: bool = True) -> str:
    path = RESULTS / entry.file
    if not path.exists():
        return f"| `{entry.script}` | {entry.measures} | `{entry.file}` missing | | | | | | | |"
    text = path.read_text()
    h = {k: v.replace("|", "\\|") for k, v in _header(text).items()}
    lines = [" ".join(ln.split()) for ln in text.splitlines()
             if ln.strip() and not ln.startswith("#") and not ln.startswith("[") and re.search(entry.headline, ln)]
    quoted = "<br>".join(ln.replace("|", "\\|") for ln in lines)
    goals = "<br>".join(_goal_notes(entry, lines))
    cells = [f"`{entry.script}`", entry.measures, f"`{entry.file}`", f"`{h['command']}`", h["commit"], h["seeds"],
             h["device"], quoted, goals, staleness(h["commit"], entry.code) if status else ""]
    return "| " + " | ".join(cells) + " |"


def table(status: bool = True) -> str:
    """The table; ``status=False`` leaves the status cells empty (they depend on git's HEAD, which
    moves with the very commit that writes the table)."""
    names = ["benchmark", "what it measures", "results file", "command", "commit", "seeds", "device",
             "headline lines (quoted)", "goals", "status at writing"]
    head = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    return "\n".join(head + [row(e, status) for e in ENTRIES])


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    if sys.argv[1] == "-":
        print(table())
        return
    from readme_block import replace_block  # this folder is on sys.path when run as a script

    replace_block(Path(sys.argv[1]), "benchmarks", "written by `benchmarks/summary.py` from `benchmarks/results/`\n\n"
                  + table())


if __name__ == "__main__":
    main()
