"""The transfer benchmark's pieces: ``digits:S`` (the fine-tuning target at the student's
resolution), the spread rule and table of ``benchmarks/transfer.py``, and the deterministic
segmentation canvases of ``benchmarks/downstream_seg.py``. The scripts' full paths take minutes
(``--smoke``), so they are checked here piece by piece."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import bench_module

from drkit import load_source
from drkit.errors import SourceError


# ------------------------------------------------------------------ digits:S
def test_digits_at_28_px_round_trips_and_differs_from_8_px() -> None:
    src = load_source("digits:28:train")
    assert src.spec == "digits:28:train" and len(src) == 1500
    img, label = src[0]
    assert img.size == (28, 28) and img.mode == "L" and label == load_source("digits")[0][1]
    again = load_source(src.spec)
    assert again.fingerprint == src.fingerprint
    assert np.array_equal(np.asarray(again[7][0]), np.asarray(src[7][0]))
    assert src.fingerprint != load_source("digits:train").fingerprint
    test = load_source("digits:28:test?n=5")
    assert test.spec == "digits:28:test?n=5" and len(test) == 5 and test[0][0].size == (28, 28)
    assert load_source("digits:8:train").spec == "digits:train"  # the native size is the plain spec


def test_digits_upsampling_keeps_the_picture() -> None:
    """Bilinear upsampling then area-averaging back to 8x8 is close to the original pixels."""
    small = np.stack([np.asarray(load_source("digits:test")[i][0], np.float64) for i in range(20)])
    big = np.stack([np.asarray(load_source("digits:32:test")[i][0], np.float64) for i in range(20)])
    back = big.reshape(20, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.abs(back - small).mean() < 20.0
    assert big.max() <= 255 and big.dtype == np.float64


@pytest.mark.parametrize("bad", ["digits:foo", "digits:4", "digits:28.0", "digits:300", "digits:-28"])
def test_digits_refuses_a_bad_size_in_one_line(bad: str) -> None:
    with pytest.raises(SourceError) as err:
        load_source(bad)
    msg = str(err.value)
    assert "\n" not in msg and "image size" in msg and bad in msg


# ------------------------------------------------------------------ transfer.py pieces
def test_spread_rule() -> None:
    transfer = bench_module("transfer")
    assert transfer.verdict([0.02, 0.03, 0.025]) == "ahead"
    assert transfer.verdict([-0.02, -0.03, -0.025]) == "behind"
    assert transfer.verdict([0.02, -0.01, 0.0]) == "no difference"
    assert transfer.verdict([0.02]).startswith("one seed")


def test_table_names_chains_differences_and_commits() -> None:
    transfer = bench_module("transfer")
    plan = transfer.Plan()
    results = {}
    for fam in transfer.FAMILIES.values():
        for s in (0, 1, 2):
            for pre, ft in transfer.CHAINS:
                top1 = 0.95 + (0.02 if (pre, ft) == ("dr", "dr") else 0.0) + 0.001 * s
                key = transfer.ft_key(fam, pre, ft, plan, s)
                results[key] = {"key": key, "commit": "abc1234", "top1": top1, "nll": 0.2, "ece": 0.01}
            for m in transfer.METHOD:
                key = transfer.pre_key(fam, m, plan, s)
                results[key] = {"key": key, "commit": "abc1234", "top1": 0.9, "nll": 0.3, "ece": 0.02}
    rows = transfer.summarise(results, plan, [0, 1, 2])
    assert [r["family"] for r in rows] == list(transfer.FAMILIES)
    text = transfer.table(rows, ["header"], [])
    assert text.count("| DR→DR |") == 2 and "abc1234" in text
    assert "DR→DR − ERM→ERM = 2.00 ± 0.00 pp" in text and "**ahead**" in text
    # a family with a missing chain for a seed uses only the complete seeds
    del results[transfer.ft_key(transfer.FAMILIES["ResNet"], "dr", "erm", plan, 2)]
    rows = transfer.summarise(results, plan, [0, 1, 2])
    assert rows[1]["seeds"] == [0, 1] and rows[0]["seeds"] == [0, 1, 2]


def test_run_keys_name_what_changes_results() -> None:
    transfer = bench_module("transfer")
    fam = transfer.FAMILIES["ResNet"]
    plan = transfer.Plan()
    keys = {transfer.ft_key(fam, pre, ft, plan, s) for pre, ft in transfer.CHAINS for s in (0, 1, 2)}
    assert len(keys) == 12
    assert transfer.pre_key(fam, "dr", plan, 0) != transfer.pre_key(fam, "dr", transfer.Plan(pre_epochs=1), 0)
    assert transfer.ft_key(fam, "dr", "dr", plan, 0) != transfer.ft_key(fam, "dr", "dr", transfer.Plan(ft_epochs=1), 0)
    elsewhere = transfer.Plan(data_dir="/data/fmnist")  # the same images from another folder (a GPU box)
    assert transfer.pre_key(fam, "dr", elsewhere, 0) == transfer.pre_key(fam, "dr", plan, 0)
    assert transfer.specs(elsewhere)["source"] == "fashion-mnist:/data/fmnist:train?n=10000"
    assert transfer.specs(elsewhere)["source_test"] == "fashion-mnist:/data/fmnist:test"
    assert transfer.specs(plan)["source"] == "fashion-mnist:train?n=10000"


# ------------------------------------------------------------------ downstream_seg.py pieces
def test_segmentation_canvases_are_deterministic_and_masks_match_pixels() -> None:
    seg = bench_module("downstream_seg")
    rng = np.random.Generator(np.random.PCG64(5))
    items = rng.integers(0, 256, size=(30, seg.ITEM, seg.ITEM)).astype(np.uint8)
    labels = rng.integers(0, 10, size=30)
    a, ma = seg.make_canvases(items, labels, 12, seed=3)
    b, mb = seg.make_canvases(items, labels, 12, seed=3)
    c, _ = seg.make_canvases(items, labels, 12, seed=4)
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and not np.array_equal(a, c)
    assert a.shape == (12, seg.CANVAS, seg.CANVAS) and a.dtype == np.uint8
    assert ma.min() >= 0 and ma.max() <= 10
    assert np.array_equal(ma > 0, a > seg.THRESHOLD)  # a pixel is labelled exactly when an item covers it
    assert all(0 < (m > 0).sum() for m in ma)  # every canvas holds at least one item
