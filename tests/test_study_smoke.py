"""``benchmarks/when_dr_helps.py --smoke``: the family sweep's real path (store, ERM, DR, KD,
evaluation, table, figures) on tiny data, so the study script cannot rot between its long runs."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install dataset-fashion-mnist (make install)")
def test_family_sweep_smoke_writes_its_table_and_figures(tmp_path):
    script = str(ROOT / "benchmarks" / "when_dr_helps.py")
    r = subprocess.run([sys.executable, script, "--smoke", "--out", str(tmp_path),
                        "--sweeps", "family", "--families", "drkit CNN", "--workers", "0"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    md = (tmp_path / "results" / "when_dr_helps.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| family | drkit CNN |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "1" and cells[11] != "–"  # one seed; online KD ran for this family
    assert re.fullmatch(r"\d+\.\d / \d+\.\d", cells[10])  # DR's and the best ERM's last-epoch train top-1
    assert "teachers' top-1 on the padcrop store's views: " in md and "not recorded" not in md
    assert "padcrop ls" in cells[5] and "padcrop ls" in cells[8]  # best and best-calibrated ERM named
    for png in ("when_dr_helps.png", "when_dr_helps_family.png"):
        assert (tmp_path / "results" / png).stat().st_size > 10_000
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["drkit_cnn_tiny-e1-v-dr-oof-padcrop-T2-s0", "drkit_cnn_tiny-e1-v-erm-padcrop-ls0-s0",
                    "drkit_cnn_tiny-e1-v-erm-padcrop-ls0.1-s0", "drkit_cnn_tiny-e1-v-kd-oof-padcrop-T2-s0"]
