"""Distillation defaults and the weak-teacher warnings (issue 19): what a user who types no flag
gets, and the three places drkit says that teachers are too weak to help."""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from drkit.cli import main
from drkit.defaults import DISTILL_TEMPERATURE, FOLDS_MIN_STEPS, LABEL_SMOOTHING
from drkit.train import TrainConfig
from drkit.train.folds import short_schedule_warning
from drkit.train.outputs import UNDERFIT_GAP, warn_if_underfit, warn_once_past_teachers
from drkit.train.setup import distill_loss

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
DATA = "digits:train?n=120"


def _run(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, err.getvalue()


def test_default_distillation_is_the_documented_one():
    assert DISTILL_TEMPERATURE == 2.0 and LABEL_SMOOTHING == 0.1
    dr = TrainConfig.build(data="digits", reinforced="store")
    assert dr.distill.resolved == {"temperature": 2.0, "soften_targets": True,
                                   "distill_defaults": ["temperature", "soften_targets"]}
    loss = distill_loss(dr)
    assert loss.temperature == 2.0 and loss.soften_targets
    # T = 1 asked for: plain cross-entropy on the stored probabilities, nothing softened
    assert TrainConfig.build(data="d", reinforced="s", temperature=1.0).distill.resolved["soften_targets"] is False
    assert TrainConfig.build(data="d", kd_teacher="t", soften_targets=False).distill.resolved == {
        "temperature": 2.0, "soften_targets": False, "distill_defaults": ["temperature"]}
    assert TrainConfig.build(data="d").smoothing == 0.1 and TrainConfig.build(data="d", folds=2).smoothing == 0.0
    assert TrainConfig.build(data="d", folds=2, label_smoothing=0.2).smoothing == 0.2


def test_cli_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default 2, the measured best" in text and "--no-soften-targets" in text and "0 with --folds" in text


def test_short_folds_schedule_warns_and_a_long_one_does_not(capsys):
    # 933 images at batch 128: 7 full batches an epoch (the short last one is dropped, as epoch_batches does)
    assert short_schedule_warning(TrainConfig.build(data="d", folds=3, epochs=20, batch_size=128), 933) == 140
    assert f"give them at least {FOLDS_MIN_STEPS} steps" in capsys.readouterr().err
    # the shipped Fashion-MNIST members: 30 epochs at batch 256 over ~30k images
    assert short_schedule_warning(TrainConfig.build(data="d", folds=2, epochs=30, batch_size=256), 29983) == 3510
    assert capsys.readouterr().err == ""


def test_student_passing_its_teachers_is_told_once(capsys):
    config = {"store_teacher_top1": 0.66}
    rows = [{"epoch": 1, "val_top1": 0.60}]
    warn_once_past_teachers(rows, {"epoch": 2, "val_top1": 0.70}, config, rank=0)
    err = capsys.readouterr().err
    assert "epoch 2" in err and "passed the store's teacher accuracy 66.00 %" in err
    rows.append({"epoch": 2, "val_top1": 0.70})
    warn_once_past_teachers(rows, {"epoch": 3, "val_top1": 0.75}, config, rank=0)  # told already: silent
    warn_once_past_teachers(rows[:1], {"epoch": 2, "val_top1": 0.60}, config, rank=0)  # below: silent
    warn_once_past_teachers([], {"epoch": 2, "val_top1": 0.90}, {}, rank=0)  # no recorded accuracy: silent
    warn_once_past_teachers([], {"epoch": 2}, config, rank=0)  # no validation: silent
    assert capsys.readouterr().err == ""


def test_a_student_far_below_its_teachers_on_the_views_is_called_underfit(capsys):
    config = {"store_views_top1": 0.932}
    warn_if_underfit([{"train_top1": 0.70}, {"train_top1": 0.80}], config, rank=0)  # the 30-epoch ViT
    err = capsys.readouterr().err
    assert "ends at 80.00 % top-1 on its training views, 13.2 points below" in err and "--epochs" in err
    warn_if_underfit([{"train_top1": 0.932 - UNDERFIT_GAP + 0.005}], config, rank=0)  # close enough: silent
    warn_if_underfit([{"train_top1": 0.5}], {}, rank=0)  # ERM/KD, or a store without diagnostics: silent
    warn_if_underfit([], config, rank=0)
    assert capsys.readouterr().err == ""


def test_undertrained_folds_group_is_called_weak_end_to_end(tmp_path):
    teachers = tmp_path / "t"
    rc, err = _run(["train", "--data", DATA, "--model", "drkit_cnn_tiny", "--epochs", "1", "--batch-size", "32",
                    "--workers", "0", "--device", "cpu", "--folds", "2", "--out", str(teachers), "--quiet"])
    assert rc == 0 and re.search(r"drkit: warning: --folds members train only 1 optimizer steps", err), err
    member = json.loads((teachers / "fold0" / "config.json").read_text())["extra"]["train"]
    assert member["label_smoothing"] == 0.0  # --folds teachers: no smoothing by default
    store = tmp_path / "s"
    rc, err = _run(["reinforce", "--data", DATA, "--teacher", f"ckpt:{teachers}", "--samples", "1", "--topk", "3",
                    "--workers", "0", "--device", "cpu", "--out", str(store), "--quiet"])
    assert rc == 0 and "drkit: warning: the teachers are weak: held-out (out-of-fold) top-1" in err
    m = json.loads((store / "manifest.json").read_text())
    assert any("teachers are weak" in w for w in m["diagnostics"]["warnings"])
    student = tmp_path / "dr"
    rc, _ = _run(["train", "--data", DATA, "--reinforced", str(store), "--model", "drkit_cnn_tiny", "--epochs", "1",
                  "--batch-size", "32", "--workers", "0", "--device", "cpu", "--out", str(student), "--quiet"])
    extra = json.loads((student / "config.json").read_text())["extra"]["train"]
    assert rc == 0 and extra["temperature"] == 2.0 and extra["soften_targets"] is True
    assert extra["distill_defaults"] == ["temperature", "soften_targets"]
    assert extra["label_smoothing"] is None  # ERM's smoothing does not apply to DR, so none is recorded
    assert extra["store_teacher_top1"] == m["diagnostics"]["plain"]["top1"]
    assert extra["store_views_top1"] == m["diagnostics"]["views"]["top1"]


@pytest.mark.skipif(not FMNIST.exists(), reason="apt-get install dataset-fashion-mnist (make install)")
def test_shipped_teachers_are_not_called_weak(tmp_path):
    from drkit.demo import teacher_dirs

    rc, err = _run(["reinforce", "--data", "fashion-mnist:train?n=300", "--teacher", f"ckpt:{teacher_dirs()[0]}",
                    "--recipe", "padcrop", "--samples", "1", "--topk", "3", "--workers", "0", "--device", "cpu",
                    "--out", str(tmp_path / "s"), "--quiet"])
    assert rc == 0 and "weak" not in err
    plain = json.loads((tmp_path / "s" / "manifest.json").read_text())["diagnostics"]["plain"]
    assert plain["top1"] > 0.85
