"""Pins drkit.evaluate.metrics (top-k, NLL, ECE, streaming) and drkit.evaluate.plots (PNGs)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from drkit.evaluate import (
    MetricAccumulator,
    compute_metrics,
    plot_curves,
    reliability_bins,
    reliability_diagram,
)

# Hand-computed case: 6 samples, 3 classes, 15 bins of width 1/15 = 0.0667, bin m = ((m-1)/15, m/15].
#   row  probs               label  conf  pred  correct  p(label)  bin (0-based)
#   0    [.95, .03, .02]     0      .95   0     yes      .95       14  (0.9333, 1.0]
#   1    [.95, .03, .02]     1      .95   0     no       .03       14
#   2    [.02, .95, .03]     1      .95   1     yes      .95       14
#   3    [.55, .40, .05]     0      .55   0     yes      .55        8  (0.5333, 0.6]
#   4    [.40, .55, .05]     0      .55   1     no       .40        8
#   5    [.38, .31, .31]     0      .38   0     yes      .38        5  (0.3333, 0.4]
# Bins:  14: n=3, acc=2/3, conf=.95 -> |.6667-.95| = .28333, weight 3/6
#         8: n=2, acc=1/2, conf=.55 -> |.5-.55|    = .05,    weight 2/6
#         5: n=1, acc=1,   conf=.38 -> |1-.38|     = .62,    weight 1/6
# ECE = .5 * .28333 + .33333 * .05 + .16667 * .62 = .141667 + .016667 + .103333 = 0.261667
# NLL = -(2 ln .95 + ln .03 + ln .55 + ln .40 + ln .38) / 6
#     = -(-0.102587 - 3.506558 - 0.597837 - 0.916291 - 0.967584) / 6 = 6.090857 / 6 = 1.015143
# top1 = 4/6; top5 = top-min(5, 3) = top-3 = 1.
HAND_PROBS = torch.tensor(
    [
        [0.95, 0.03, 0.02],
        [0.95, 0.03, 0.02],
        [0.02, 0.95, 0.03],
        [0.55, 0.40, 0.05],
        [0.40, 0.55, 0.05],
        [0.38, 0.31, 0.31],
    ],
    dtype=torch.float64,
)
HAND_LABELS = torch.tensor([0, 1, 1, 0, 0, 0])


def _random_case(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2.5
    labels = torch.randint(0, c, (n,), generator=g)
    return torch.softmax(logits, dim=1), labels


def test_hand_computed_ece_nll_topk() -> None:
    m = compute_metrics(HAND_PROBS, HAND_LABELS)
    assert set(m) == {"top1", "top5", "nll", "ece"}
    assert all(isinstance(v, float) for v in m.values())
    assert m["ece"] == pytest.approx(0.261667, abs=1e-6)
    assert m["nll"] == pytest.approx(1.015143, abs=1e-6)
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["top5"] == 1.0


def test_hand_computed_reliability_bins() -> None:
    b = reliability_bins(HAND_PROBS, HAND_LABELS)
    assert len(b["edges"]) == 16 and b["edges"][0] == 0.0 and b["edges"][-1] == 1.0
    expected_count = [0] * 15
    expected_count[5], expected_count[8], expected_count[14] = 1, 2, 3
    assert b["count"] == expected_count
    assert b["accuracy"][14] == pytest.approx(2 / 3)
    assert b["confidence"][14] == pytest.approx(0.95)
    assert b["accuracy"][8] == pytest.approx(0.5)
    assert b["confidence"][8] == pytest.approx(0.55)
    assert b["accuracy"][5] == 1.0 and b["confidence"][5] == pytest.approx(0.38)
    assert b["ece"] == pytest.approx(0.261667, abs=1e-6)


def test_bins_are_right_closed() -> None:
    # Guo et al.: bin m is ((m-1)/M, m/M]; a confidence of exactly 1.0 lands in the last bin.
    probs = torch.tensor([[1.0, 0.0], [0.75, 0.25]], dtype=torch.float64)
    b = reliability_bins(probs, torch.tensor([0, 0]), n_bins=4)
    assert b["count"] == [0, 0, 1, 1]  # 0.75 in (0.5, 0.75], 1.0 in (0.75, 1.0]


def test_topk_with_fewer_than_five_classes_is_top_c() -> None:
    probs, labels = _random_case(50, 4, seed=1)
    m = compute_metrics(probs, labels)
    assert m["top5"] == 1.0
    assert m["top1"] < 1.0


def test_top5_counts_rank_five_not_six() -> None:
    c = 8
    probs = torch.arange(c, 0, -1, dtype=torch.float64).repeat(2, 1)  # class 0 ranked first
    probs = probs / probs.sum(dim=1, keepdim=True)
    m = compute_metrics(probs, torch.tensor([4, 5]))  # ranks 5 and 6
    assert m["top5"] == 0.5
    assert m["top1"] == 0.0


def test_perfect_confidence_has_zero_ece_and_nll() -> None:
    labels = torch.tensor([0, 2, 1, 2, 0])
    probs = torch.nn.functional.one_hot(labels, 3).to(torch.float32)
    m = compute_metrics(probs, labels)
    assert m == {"top1": 1.0, "top5": 1.0, "nll": 0.0, "ece": 0.0}


def test_nll_is_finite_when_label_has_zero_probability() -> None:
    probs = torch.tensor([[1.0, 0.0]])
    m = compute_metrics(probs, torch.tensor([1]))
    assert math.isfinite(m["nll"]) and m["nll"] == pytest.approx(-math.log(1e-12))
    assert m["ece"] == 1.0


def test_accumulator_over_batches_equals_one_shot() -> None:
    probs, labels = _random_case(1000, 10, seed=0)
    one_shot = compute_metrics(probs, labels)
    one_shot_bins = reliability_bins(probs, labels)
    acc = MetricAccumulator()
    start = 0
    for size in (1, 0, 7, 128, 300, 64, 500):  # uneven, includes an empty batch
        acc.update(probs[start : start + size], labels[start : start + size])
        start += size
    assert start == 1000 and acc.count == 1000
    streamed = acc.compute()
    for k in one_shot:
        assert streamed[k] == pytest.approx(one_shot[k], rel=1e-12, abs=1e-12)
    bins = acc.bins()
    assert bins["count"] == one_shot_bins["count"]
    assert bins["accuracy"] == pytest.approx(one_shot_bins["accuracy"])
    assert bins["confidence"] == pytest.approx(one_shot_bins["confidence"])


def test_accumulator_merge_equals_single_pass() -> None:
    probs, labels = _random_case(300, 7, seed=3)
    a, b = MetricAccumulator(), MetricAccumulator()
    a.update(probs[:120], labels[:120])
    b.update(probs[120:], labels[120:])
    a.skipped, b.skipped, empty = [7], [150], MetricAccumulator()
    empty.skipped = [299]  # a rank whose every image was undecodable still reports them
    a.merge(b)
    a.merge(empty)
    assert a.compute() == pytest.approx(compute_metrics(probs, labels))
    assert a.skipped == [7, 150, 299]


def test_empty_accumulator_and_input_validation() -> None:
    acc = MetricAccumulator()
    assert all(math.isnan(v) for v in acc.compute().values())
    with pytest.raises(ValueError):
        acc.update(torch.rand(4, 3), torch.tensor([0, 1, 2]))  # N mismatch
    with pytest.raises(ValueError):
        acc.update(torch.rand(2, 3), torch.tensor([0, 3]))  # label out of range
    with pytest.raises(ValueError):
        acc.update(torch.rand(2, 3), torch.tensor([0.0, 1.0]))  # float labels
    acc.update(torch.rand(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        acc.update(torch.rand(2, 4), torch.tensor([0, 1]))  # class count changed


def test_agrees_with_torchmetrics() -> None:
    tm = pytest.importorskip("torchmetrics.functional.classification")
    for n, c, seed in ((2000, 10, 0), (777, 100, 1), (300, 3, 2)):
        probs, labels = _random_case(n, c, seed)
        m = compute_metrics(probs, labels)
        ece = tm.multiclass_calibration_error(probs, labels, num_classes=c, n_bins=15, norm="l1")
        top1 = tm.multiclass_accuracy(probs, labels, num_classes=c, average="micro", top_k=1)
        top5 = tm.multiclass_accuracy(probs, labels, num_classes=c, average="micro", top_k=min(5, c))
        assert m["ece"] == pytest.approx(float(ece), abs=1e-5)
        assert m["top1"] == pytest.approx(float(top1), abs=1e-6)
        assert m["top5"] == pytest.approx(float(top5), abs=1e-6)
        nll = torch.nn.functional.nll_loss(torch.log(probs.double()), labels)
        assert m["nll"] == pytest.approx(float(nll), rel=1e-9)


def _png_pixels(path) -> np.ndarray:
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def test_reliability_diagram_writes_a_nonblank_png(tmp_path) -> None:
    probs, labels = _random_case(500, 10, seed=4)
    out = reliability_diagram(reliability_bins(probs, labels), tmp_path / "sub" / "rel.png", "test")
    assert out.exists() and out.stat().st_size > 0
    px = _png_pixels(out)
    assert px.shape[0] > 100 and px.shape[1] > 100
    assert px.std() > 0


def test_plot_curves_writes_png(tmp_path) -> None:
    rows = [
        {"epoch": e, "train_loss": 2.0 / (e + 1), "val_top1": 0.1 * e, "lr": 0.1 * 0.9**e}
        for e in range(5)
    ]
    rows.append({"epoch": 5, "train_loss": 0.3})  # partial row: no validation yet
    px = _png_pixels(plot_curves(rows, tmp_path / "curves.png"))
    assert px.std() > 0
    assert _png_pixels(plot_curves([{"epoch": 0, "lr": 0.1}], tmp_path / "lr.png")).std() > 0
    assert _png_pixels(plot_curves([], tmp_path / "empty.png")).std() > 0


def test_plotting_leaves_global_backend_alone(tmp_path) -> None:
    import matplotlib

    before = matplotlib.get_backend()
    probs, labels = _random_case(20, 3, seed=5)
    reliability_diagram(reliability_bins(probs, labels), tmp_path / "r.png", "x")
    assert matplotlib.get_backend() == before
