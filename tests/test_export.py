"""``drkit export``: a student's backbone loads in timm's ``features_only`` and under a torchvision
detector; models that cannot give multi-scale features are refused in one line."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import make_teacher
from drkit.cli import main
from drkit.export import detection_backbone, export_backbone, load_features

CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt") / "r"
    make_teacher(root, CLASSES, seed=4, image_size=32, model="resnet10t", in_chans=1)
    return root


def test_export_loads_in_timm_features_only_with_the_trained_weights(tmp_path, resnet_ckpt):
    import timm

    from drkit.checkpoint import load_checkpoint

    assert main(["export", str(resnet_ckpt), "--out", str(tmp_path / "e")]) == 0
    doc = json.loads((tmp_path / "e" / "config.json").read_text())
    assert doc["format"] == "drkit.backbone" and doc["classifier_removed"] == ["fc.bias", "fc.weight"]
    assert [f["reduction"] for f in doc["feature_info"]] == [2, 4, 8, 16, 32]
    # the documented timm call, by hand: timm's own loader, strict
    feats = timm.create_model("resnet10t", features_only=True, num_classes=0, in_chans=1, pretrained=True,
                              pretrained_cfg_overlay={"file": str(tmp_path / "e" / "backbone.safetensors"),
                                                      "num_classes": 0, "input_size": (1, 32, 32)})
    trained, _ = load_checkpoint(resnet_ckpt)
    want = trained.backbone.state_dict()
    got = feats.state_dict()
    assert len(got) == len(want) - 2
    for k, v in got.items():  # FeatureListNet keeps the module names
        assert torch.equal(v, want[k]), k
    maps = load_features(tmp_path / "e")(torch.rand(2, 1, 32, 32))
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in doc["feature_info"]]
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2, 1]


def test_export_builds_a_torchvision_detector_that_runs(tmp_path, resnet_ckpt):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    doc = export_backbone(resnet_ckpt, tmp_path / "e")
    backbone = detection_backbone(tmp_path / "e", out_channels=32, out_indices=(2, 3, 4))
    names = ["0", "1", "2", "pool"]
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    det = FasterRCNN(backbone, num_classes=3, min_size=64, max_size=64, image_mean=doc["mean"],
                     image_std=doc["std"], rpn_anchor_generator=anchors,
                     box_roi_pool=MultiScaleRoIAlign(names[:3], output_size=7, sampling_ratio=2)).eval()
    with torch.no_grad():
        out = det([torch.rand(1, 64, 64)])
    assert set(out[0]) == {"boxes", "labels", "scores"}
    det.train()
    losses = det([torch.rand(1, 64, 64)], [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]),
                                           "labels": torch.tensor([1])}])
    assert all(torch.isfinite(v) for v in losses.values()) and "loss_box_reg" in losses


def test_export_refuses_a_model_without_multiscale_features(tmp_path, capsys):
    ckpt = tmp_path / "cnn"
    make_teacher(ckpt, CLASSES, seed=1)  # drkit_cnn_tiny
    rc = main(["export", str(ckpt), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("drkit: error:") and "cannot give multi-scale features" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e").exists()
    rc = main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("drkit: error:") and not (tmp_path / "e").exists()


@pytest.mark.parametrize("fail", ["atomic_write_bytes", "atomic_write_json"])
def test_a_full_disk_during_export_leaves_nothing(tmp_path, resnet_ckpt, monkeypatch, fail):
    import drkit.export as export

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, fail, full)
    with pytest.raises(OSError):
        export_backbone(resnet_ckpt, tmp_path / "out" / "x")
    assert not (tmp_path / "out" / "x").exists()
    (tmp_path / "kept").mkdir()  # a folder that existed before stays, emptied of what export wrote
    with pytest.raises(OSError):
        export_backbone(resnet_ckpt, tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())
