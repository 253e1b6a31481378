"""The demo's shipped teachers hold their stated accuracy; the demo path runs end to end (smoke)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from drkit.demo import teacher_dirs, teacher_members

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install dataset-fashion-mnist (make install)")


def test_shipped_teachers_are_out_of_fold_over_all_training_images():
    doc = json.loads((teacher_dirs()[0] / "folds.json").read_text())
    assert doc["split"]["folds"] == 2 and doc["split"]["trained_prefix"] == 60_000
    assert doc["split"]["root_spec"].startswith("fashion-mnist") and doc["split"]["root_spec"].endswith(":train")
    assert [m["dir"] for m in doc["members"]] == ["fold0", "fold1"]
    assert doc["command"][:2] == ["drkit", "train"] and "--folds" in doc["command"]


@needs_fmnist
@pytest.mark.parametrize("index", [0, 1])
def test_shipped_teacher_has_its_stated_accuracy(index):
    from drkit.evaluate import EvalConfig, evaluate

    ckpt = teacher_members(teacher_dirs()[0])[index]
    cfg = json.loads((ckpt / "config.json").read_text())
    stated = cfg["extra"]["final_metrics"]["val_top1"]  # `drkit train --val fashion-mnist:test?n=2000`
    r = evaluate(EvalConfig(checkpoint=ckpt, data="fashion-mnist:test?n=2000", workers=0, progress=False))
    assert r["images"] == 2000 and abs(r["top1"] - stated) < 0.002, (r["top1"], stated)
    full = evaluate(EvalConfig(checkpoint=ckpt, data="fashion-mnist:test", workers=0, progress=False))
    assert full["images"] == 10_000 and full["top1"] > 0.92
    assert cfg["model"] == "drkit_cnn_small" and cfg["extra"]["command"][:2] == ["drkit", "train"]


@needs_fmnist
def test_demo_smoke_runs_the_real_path(tmp_path):
    from drkit.demo import run_demo

    result = run_demo(tmp_path / "demo", smoke=True, device="cpu")
    names = [r["run"] for r in result["rows"]]
    assert names == ["ERM (padcrop, label smoothing 0.1)", "ERM (padcrop, no label smoothing)",
                     "DR (reinforced store, defaults: T = 2)"]
    for row in result["rows"]:
        assert 0 <= row["top1"] <= 1 and row["nll"] > 0 and 0 <= row["corruption_top1"] <= 1
        assert Path(row["curves"]).exists() and Path(row["reliability"]).exists()
    assert (tmp_path / "demo" / "inspect_grid.png").exists()
    table = (tmp_path / "demo" / "table.md").read_text()
    assert "| DR (reinforced store, defaults: T = 2) |" in table and "commit " in table and "seeds 0" in table
    assert "DR − best ERM" in table
    assert "best-calibrated ERM" in table  # ECE is compared with the best-calibrated ERM too
    manifest = json.loads((tmp_path / "demo" / "fmnist+" / "manifest.json").read_text())
    assert manifest["diagnostics"]["out_of_fold"] is True  # each image labelled by the member that never saw it
    dr = json.loads((tmp_path / "demo" / "dr" / "seed0" / "config.json").read_text())["extra"]["train"]
    assert (dr["temperature"], dr["soften_targets"]) == (2.0, True)  # the demo passes no distillation flag
    assert dr["distill_defaults"] == ["temperature", "soften_targets"]


def test_demo_runs_again_over_its_own_output(tmp_path, capsys):
    """`make demo` twice: the second run replaces what the first left (its store and students)."""
    from drkit.demo import run_demo

    first = run_demo(tmp_path / "demo", smoke=True, device="cpu")
    (tmp_path / "demo" / "fmnist+" / "run.json").write_text('{"made by": "another drkit"}')  # a stale store
    second = run_demo(tmp_path / "demo", smoke=True, device="cpu")
    assert "replacing" in capsys.readouterr().err
    assert [r["top1"] for r in second["rows"]] == [r["top1"] for r in first["rows"]]  # same seeds, same figures
