"""The demo's shipped teachers hold their stated accuracy; the demo path runs end to end (smoke)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from drkit.demo import teacher_dirs

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install dataset-fashion-mnist (make install)")


@needs_fmnist
@pytest.mark.parametrize("index", [0, 1])
def test_shipped_teacher_has_its_stated_accuracy(index):
    from drkit.evaluate import evaluate

    ckpt = teacher_dirs()[index]
    cfg = json.loads((ckpt / "config.json").read_text())
    stated = cfg["extra"]["final_metrics"]["val_top1"]  # measured by `drkit train --val` when it was made
    r = evaluate(ckpt, "fashion-mnist:test", workers=0, progress=False)
    assert r["images"] == 10_000
    assert abs(r["top1"] - stated) < 0.003, (r["top1"], stated)
    assert r["top1"] > 0.93
    assert cfg["model"] == "drkit_cnn_small" and cfg["extra"]["command"][:2] == ["drkit", "train"]


@needs_fmnist
def test_demo_smoke_runs_the_real_path(tmp_path):
    from drkit.demo import run_demo

    result = run_demo(tmp_path / "demo", smoke=True, device="cpu")
    names = [r["run"] for r in result["rows"]]
    assert names == ["ERM (padcrop, label smoothing 0.1)", "ERM (padcrop, no label smoothing)", "DR (reinforced store)"]
    for row in result["rows"]:
        assert 0 <= row["top1"] <= 1 and row["nll"] > 0 and 0 <= row["corruption_top1"] <= 1
        assert Path(row["curves"]).exists() and Path(row["reliability"]).exists()
    assert (tmp_path / "demo" / "inspect_grid.png").exists()
    assert "| DR (reinforced store) |" in (tmp_path / "demo" / "table.md").read_text()
