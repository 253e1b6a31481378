"""Size-aware recipe defaults and the reinforce diagnostics that warn when a store cannot teach."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from drkit.augment import get_recipe, resolve_recipe
from drkit.cli import main
from drkit.store import label_warnings

MEMO_DATA = "digits:train?n=300"


def test_auto_recipe_follows_the_image_side():
    assert resolve_recipe(None, 28, strong=True).spec.startswith("padcrop@")
    assert resolve_recipe("auto", 64, strong=True).spec.startswith("padcrop@")
    big = resolve_recipe("auto", 224, strong=True)
    assert [op.name for op in big.ops] == ["rrc", "ra", "re"]
    assert big.ops[0].settings["scale_min"] == 0.08 and big.ops[1].settings["m"] == 9
    assert resolve_recipe(None, 224).spec.startswith("rrc@")  # train's ERM default stays plain rrc


def test_size_dependent_settings_scale_down_and_explicit_ones_win():
    small = resolve_recipe("rrc+ra+re", 28)
    assert small.ops[0].settings["scale_min"] == 0.5 and small.ops[1].settings["m"] == 3
    mid = resolve_recipe("rrc+ra", 112)
    assert 0.08 < mid.ops[0].settings["scale_min"] < 0.5 and 3 < mid.ops[1].settings["m"] < 9
    assert resolve_recipe("rrc@scale_min=0.08+ra@m=9", 28).spec == get_recipe("rrc@scale_min=0.08+ra@m=9").spec
    ta = resolve_recipe("padcrop+ta", 28)
    top = ta.ops[1].settings["max_bin"]
    assert 0 < top < 30
    mags = {ta.sample(0, i, v, (28, 28), 100, 8)["ta"]["mag"] for i in range(100) for v in range(8)}
    assert max(mags) == top and min(mags) == 0
    # a resolved spec is complete: reading it back without the side gives the same recipe
    assert get_recipe(small.spec).spec == small.spec and get_recipe(ta.spec).spec == ta.spec


def test_old_trivialaugment_specs_replay_unchanged():
    old = get_recipe("padcrop+ta@bins=31")  # a store written before max_bin existed
    draws = [old.sample(3, i, 0, (28, 28), 50, 1)["ta"]["mag"] for i in range(50)]
    assert max(draws) > 20  # the whole table, as before


def test_label_warnings_rules():
    plain = {"top1": 0.90, "mean_top1_prob": 0.85}
    assert label_warnings(plain, {"top1": 0.88}) == []
    assert "destroys labels" in label_warnings(plain, {"top1": 0.60})[0]
    memo = {"top1": 0.99, "mean_top1_prob": 0.97}
    (w,) = label_warnings(memo, {"top1": 0.98})
    assert "near one-hot" in w and "--folds" in w
    assert "--folds" not in label_warnings(memo, {"top1": 0.98}, out_of_fold=True)[0]


def test_the_weak_teacher_warning_fires_below_its_threshold_and_names_what_it_measured():
    from drkit.defaults import WEAK_TEACHER_TOP1

    below, above = WEAK_TEACHER_TOP1 - 0.01, WEAK_TEACHER_TOP1 + 0.01
    (w,) = label_warnings({"top1": below, "mean_top1_prob": 0.6}, {"top1": below})
    assert "teachers are weak" in w and f"plain training-image top-1 {100 * below:.1f} %" in w
    (w,) = label_warnings({"top1": below, "mean_top1_prob": 0.6}, {"top1": below}, out_of_fold=True)
    assert f"held-out (out-of-fold) top-1 {100 * below:.1f} %" in w
    assert label_warnings({"top1": above, "mean_top1_prob": 0.6}, {"top1": above}) == []
    assert label_warnings({"top1": WEAK_TEACHER_TOP1, "mean_top1_prob": 0.6}, {"top1": WEAK_TEACHER_TOP1}) == []


@pytest.fixture(scope="module")
def memorised_teacher(tmp_path_factory) -> Path:
    """A teacher trained long on the very images it will label: near one-hot on them."""
    out = tmp_path_factory.mktemp("memo") / "t"
    rc = main(["train", "--data", MEMO_DATA, "--model", "drkit_cnn_tiny", "--recipe", "resize", "--epochs", "40",
               "--batch-size", "32", "--lr", "0.1", "--label-smoothing", "0", "--workers", "0", "--device", "cpu",
               "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def _reinforce(tmp_path: Path, teacher: Path, recipe: str | None, name: str) -> tuple[int, str, dict]:
    import contextlib
    import io

    err = io.StringIO()
    args = ["reinforce", "--data", MEMO_DATA, "--teacher", f"ckpt:{teacher}", "--samples", "2", "--topk", "3",
            "--workers", "0", "--device", "cpu", "--out", str(tmp_path / name), "--quiet"]
    with contextlib.redirect_stderr(err):
        rc = main(args + (["--recipe", recipe] if recipe else []))
    manifest = json.loads((tmp_path / name / "manifest.json").read_text()) if rc == 0 else {}
    return rc, err.getvalue(), manifest


def test_memorised_teacher_warns(tmp_path, memorised_teacher):
    rc, err, m = _reinforce(tmp_path, memorised_teacher, None, "memo")
    assert rc == 0
    assert m["recipe_request"] == "auto" and m["recipe_side"] == 8 and m["recipe"]["spec"].startswith("padcrop@")
    plain = m["diagnostics"]["plain"]
    assert plain["top1"] >= 0.95 and plain["mean_top1_prob"] >= 0.95
    assert "drkit: warning: labels are near one-hot" in err and "--folds" in err
    assert any("near one-hot" in w for w in m["diagnostics"]["warnings"])


def test_recipe_that_destroys_small_images_warns(tmp_path, memorised_teacher, capsys):
    rc, err, m = _reinforce(tmp_path, memorised_teacher, "rrc@scale_min=0.02,scale_max=0.06+ra@m=25", "destroy")
    assert rc == 0
    d = m["diagnostics"]
    assert d["plain"]["top1"] - d["views"]["top1"] > 0.10
    assert "drkit: warning: the recipe destroys labels" in err
    rc = main(["inspect", str(tmp_path / "destroy")])
    out = capsys.readouterr().out
    assert rc == 0 and "destroys labels" in out and "teachers on plain images" in out
