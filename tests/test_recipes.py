"""The reference recipes (issue 13): each prints its cost estimate and its commands, and runs the
same command sequence end to end on a tiny synthetic folder with --smoke."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _run(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPES / f"{name}.py"), *args], capture_output=True, text=True)


@pytest.mark.parametrize("name, samples", [("imagenet_plus", 50), ("cifar100_plus", 100), ("flowers102_plus", 1000),
                                           ("food101_plus", 100)])
def test_recipe_smoke_runs_its_commands(tmp_path, name, samples):
    r = _run(name, "--dry-run", "--root", "/data/x")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cost estimate" in r.stdout and "H100" in r.stdout and f"--samples {samples}" in r.stdout
    r = _run(name, "--smoke", "--no-estimate", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["images"] == 12 and 0.0 <= report["top1"] <= 1.0
    manifest = json.loads((tmp_path / "run" / "store" / "manifest.json").read_text())
    assert manifest["num_views"] == 2 and (tmp_path / "run" / "student" / "model.safetensors").exists()
