"""A long benchmark's finished runs, kept in the repository: sweeps take hours, sessions end and
machines change, so each finished run's result row is archived (``--archive``) and a later call,
anywhere, skips it. Imported by the benchmark scripts (this folder is on ``sys.path`` when one
runs as a script)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def archive(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Keep one finished run's result row in ``args.archive``."""
    path = Path(args.archive) / f"{result['key']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def finished(out: Path, args: argparse.Namespace, runs: str = "runs") -> dict[str, dict[str, Any]]:
    """Every finished run's result: the archive, and this machine's ``out/runs/*/result.json``
    (archived as they are read)."""
    results = {p.stem: json.loads(p.read_text()) for p in Path(args.archive).glob("*.json")}
    for p in (out / runs).glob("*/result.json"):
        if p.parent.name not in results:
            results[p.parent.name] = json.loads(p.read_text())
            archive(args, results[p.parent.name])
    return results
