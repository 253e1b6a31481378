"""What every results file's header names: the commit that ran and the device it ran on.

Imported by the benchmark scripts (this folder is on ``sys.path`` when one runs as a script)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def commit_id() -> str:
    """``$DRKIT_COMMIT`` (a device machine may receive the working tree with older git metadata),
    else the checkout's short HEAD (``-dirty`` appended on uncommitted changes), else ``unknown``."""
    named = os.environ.get("DRKIT_COMMIT")
    if named:
        return named
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    sha = head.stdout.strip()
    return sha + _dirty() if sha else "unknown"


def _dirty() -> str:
    """``-dirty`` when a file outside ``benchmarks/results/`` differs from HEAD or is new and not ignored (a
    script not yet committed included): a row measured on uncommitted code says so (the results folder is
    left out: a long run archives its own rows there)."""
    st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", ".",
                         ":(exclude)benchmarks/results"], cwd=ROOT, capture_output=True, text=True)
    return "-dirty" if st.stdout.strip() else ""


def device_name(device: Any) -> str:
    """The GPU's name, or ``cpu xN`` with the host's core count."""
    import torch

    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{os.cpu_count()}"
