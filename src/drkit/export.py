"""``drkit export CKPT --out DIR``: a trained student's backbone, without its classifier, as the ecosystem's
own tools load a feature extractor (the reference work's transfer half).

``DIR`` holds ``backbone.safetensors`` (weights less the classifier, timm's names) and, written last,
``config.json`` (format ``drkit.backbone``: timm model and arguments, input config, removed classifier keys,
source checkpoint and sha256, each feature map's channels and stride). timm loads it strictly from the local
file (:func:`load_features`: ``features_only=True, pretrained=True, pretrained_cfg_overlay={"file": …}``);
:func:`detection_backbone` adds torchvision's feature pyramid. Only timm models give multi-scale features
this way; others are refused in one line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import checkpoint_dir, load_checkpoint, read_config, weights_bytes
from .errors import DrkitError
from .fileio import atomic_write_bytes, atomic_write_json, sha256_bytes
from .models import split_model_name

BACKBONE_FORMAT = "drkit.backbone"
BACKBONE_VERSION = 1
BACKBONE_WEIGHTS = "backbone.safetensors"


def export_backbone(checkpoint: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out/backbone.safetensors``, load it back through timm's ``features_only``, then write
    ``out/config.json`` (returned): a directory with a config is one that loads."""
    from .train.setup import classifier_keys

    ckpt = checkpoint_dir(checkpoint)
    model, cfg = load_checkpoint(ckpt)
    family, name = split_model_name(cfg.model)
    if family != "timm":
        raise DrkitError(f"{ckpt}: model {cfg.model} cannot give multi-scale features (drkit export writes timm "
                         "backbones, which timm's features_only and torchvision's detectors load); train a timm "
                         "model (e.g. --model resnet18) to export it")
    dropped = sorted(classifier_keys(model.backbone))
    data = weights_bytes(model.backbone, dropped)
    doc: dict[str, Any] = {
        "format": BACKBONE_FORMAT, "format_version": BACKBONE_VERSION, "weights": BACKBONE_WEIGHTS,
        "weights_sha256": sha256_bytes(data), "model": name, "model_kwargs": dict(cfg.model_kwargs or {}),
        "in_chans": cfg.in_chans, "image_size": cfg.image_size, "mean": list(cfg.mean), "std": list(cfg.std),
        "classifier_removed": dropped, "source_checkpoint": str(Path(ckpt).resolve()),
        "source_weights_sha256": read_config(ckpt)[1].get("weights_sha256"),
        "source_data": (cfg.extra or {}).get("data"),
    }
    out = Path(out)
    if (out / "config.json").exists():
        raise DrkitError(f"{out} already holds an export; choose another --out")
    created = not out.exists()
    try:  # a failed load or a full disk: nothing half-written stays behind
        atomic_write_bytes(out / BACKBONE_WEIGHTS, data)
        feats = load_features(out, doc)
        doc["feature_info"] = [{"num_chs": int(c), "reduction": int(r), "module": str(m)} for c, r, m in zip(
            feats.feature_info.channels(), feats.feature_info.reduction(), feats.feature_info.module_name())]
        atomic_write_json(out / "config.json", doc)
    except BaseException:
        (out / BACKBONE_WEIGHTS).unlink(missing_ok=True)
        if created and out.exists():
            out.rmdir()
        raise
    return doc


def read_export(directory: str | Path) -> dict[str, Any]:
    """An export's config, checked (format, version, weights present)."""
    path = Path(directory) / "config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DrkitError(f"{directory} is not a drkit backbone export ({exc})") from None
    if doc.get("format") != BACKBONE_FORMAT or doc.get("format_version") != BACKBONE_VERSION:
        raise DrkitError(f"{path} is not a {BACKBONE_FORMAT} v{BACKBONE_VERSION} config")
    return doc


def load_features(directory: str | Path, doc: dict[str, Any] | None = None, **timm_kwargs: Any) -> nn.Module:
    """The export as timm's ``features_only`` model (a list of feature maps per image), loaded
    strictly by timm from the local file. ``timm_kwargs`` (e.g. ``out_indices``) go to timm."""
    import timm

    doc = doc or read_export(directory)
    c, s = int(doc["in_chans"]), int(doc["image_size"])
    overlay = {"file": str(Path(directory) / doc.get("weights", BACKBONE_WEIGHTS)), "num_classes": 0,
               "input_size": (c, s, s)}
    try:
        return timm.create_model(doc["model"], features_only=True, num_classes=0, in_chans=c, pretrained=True,
                                 pretrained_cfg_overlay=overlay, **doc["model_kwargs"], **timm_kwargs)
    except (RuntimeError, ValueError, TypeError, AssertionError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise DrkitError(f"timm cannot build {doc['model']} with features_only from {directory}: {msg}") from None


class DetectionBackbone(nn.Module):
    """An export's feature maps through torchvision's feature pyramid: the dict of ``out_channels``-channel maps
    torchvision's detectors expect (they normalise: pass ``image_mean``/``image_std`` from the export's config)."""

    def __init__(self, features: nn.Module, out_channels: int = 64) -> None:
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__()
        self.body = features
        self.fpn = FeaturePyramidNetwork(list(features.feature_info.channels()), out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn({str(i): m for i, m in enumerate(self.body(x))})


def detection_backbone(directory: str | Path, out_channels: int = 64, **timm_kwargs: Any) -> DetectionBackbone:
    """:class:`DetectionBackbone` on an export (``timm_kwargs``, e.g. ``out_indices=(1, 2, 3)``)."""
    return DetectionBackbone(load_features(directory, **timm_kwargs), out_channels)
