"""drkit.models + drkit.checkpoint: factory families, ImageModel, checkpoint round trip and refusals."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch

from drkit.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from drkit.errors import CheckpointError
from drkit.models import MODELS, ImageModel, ModelConfig, _adapt_first_conv, create_model


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- factory


def test_drkit_registry_sizes_and_forward() -> None:
    assert {"drkit_cnn_tiny", "drkit_cnn_small"} <= set(MODELS)
    tiny = create_model("drkit_cnn_tiny", num_classes=10, in_chans=1, seed=0)
    small = create_model("drkit_cnn_small", num_classes=10, in_chans=3, seed=0)
    assert 50_000 <= _n_params(tiny) <= 120_000
    assert 300_000 <= _n_params(small) <= 500_000
    assert tiny(torch.rand(2, 1, 28, 28, generator=_gen())).shape == (2, 10)
    assert small(torch.rand(2, 3, 32, 32, generator=_gen())).shape == (2, 10)
    assert tiny.get_classifier() is tiny.head


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = create_model("drkit_cnn_tiny", 10, 3, seed=123)
    b = create_model("drkit_cnn_tiny", 10, 3, seed=123)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("timm:resnet18", {}),
        ("resnet18", {}),  # bare name -> timm
        ("timm:vit_tiny_patch16_224", dict(img_size=32, patch_size=4, depth=2)),
        (
            "timm:swin_tiny_patch4_window7_224",
            dict(img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2)),
        ),
        ("torchvision:resnet18", {}),
    ],
)
def test_create_external_models_one_channel(name: str, kwargs: dict) -> None:
    model = create_model(name, num_classes=7, in_chans=1, seed=0, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 32, generator=_gen()))
    assert out.shape == (2, 7)


def test_torchvision_first_conv_adaptation_folds_rgb() -> None:
    """A 1-channel adapted conv on a gray image answers like the RGB conv on the replicated image."""
    rgb = create_model("torchvision:resnet18", 5, 3, seed=0).eval()
    gray = copy.deepcopy(rgb)
    _adapt_first_conv(gray, 1)
    assert gray.conv1.in_channels == 1
    x = torch.rand(2, 1, 32, 32, generator=_gen())
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["no_such_model_xyz", "timm:no_such_model_xyz", "torchvision:nope", "foo:bar", "drkit_nope"])
def test_unknown_model_refused(name: str) -> None:
    with pytest.raises(CheckpointError) as info:
        create_model(name, num_classes=10, in_chans=3)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- ImageModel / config


def test_image_model_normalises_inside_and_keeps_channels_last() -> None:
    model = ImageModel(torch.nn.Identity(), mean=[0.5, 0.25, 0.125], std=[0.5, 0.5, 0.25])
    x = torch.rand(2, 3, 8, 8, generator=_gen()).contiguous(memory_format=torch.channels_last)
    out = model(x)
    mean = torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.5, 0.25]).view(1, 3, 1, 1)
    assert torch.equal(out, (x - mean) / std)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == []  # mean/std travel in the config, not the weights
    with pytest.raises(ValueError):
        ImageModel(torch.nn.Identity(), mean=[0.5, 0.5], std=[0.5], in_chans=3)


def test_model_config_json_round_trip() -> None:
    cfg = ModelConfig(
        model="timm:vit_tiny_patch16_224",
        model_kwargs={"img_size": 32, "patch_size": 4},
        num_classes=3,
        in_chans=1,
        image_size=32,
        mean=[0.5],
        std=[0.25],
        classes=["a", "b", "c"],
        source_fingerprint="abc",
        extra={"epochs": 2},
    )
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.interpolation == "bilinear"
    with pytest.raises(CheckpointError):
        ModelConfig.from_dict({"num_classes": 3})


# ----------------------------------------------------------------------------- checkpoints


def _trained_tiny(seed: int, in_chans: int = 1, num_classes: int = 4) -> ImageModel:
    cfg = ModelConfig(
        model="drkit_cnn_tiny", num_classes=num_classes, in_chans=in_chans, image_size=16,
        mean=[0.3], std=[0.2], classes=[f"c{i}" for i in range(num_classes)],
    )
    model = ImageModel.from_config(cfg, seed=seed)
    model.train()
    with torch.no_grad():  # move BN running stats away from their init so they are checked too
        for _ in range(2):
            model(torch.rand(4, in_chans, 16, 16, generator=_gen(seed)))
    return model.eval()


def test_checkpoint_round_trip_identical_outputs(tmp_path: Path) -> None:
    model = _trained_tiny(0)
    assert model.config is not None
    save_checkpoint(tmp_path / "ck", model, model.config, extra={"epoch": 3})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    loaded, cfg = load_checkpoint(tmp_path / "ck")
    assert not loaded.training
    assert cfg.classes == model.config.classes and cfg.extra["epoch"] == 3
    x = torch.rand(3, 1, 16, 16, generator=_gen(5))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    doc = json.loads((tmp_path / "ck" / "config.json").read_text())
    digest = hashlib.sha256((tmp_path / "ck" / "model.safetensors").read_bytes()).hexdigest()
    assert doc["weights_sha256"] == digest == sha256_file(tmp_path / "ck" / "model.safetensors")


def test_checkpoint_round_trip_timm_with_model_kwargs_channels_last(tmp_path: Path) -> None:
    cfg = ModelConfig(
        model="timm:vit_tiny_patch16_224", model_kwargs=dict(img_size=32, patch_size=4, depth=2),
        num_classes=3, in_chans=1, image_size=32, mean=[0.5], std=[0.5],
    )
    model = ImageModel.from_config(cfg, seed=1).eval().to(memory_format=torch.channels_last)
    save_checkpoint(tmp_path, model, cfg)
    loaded, _ = load_checkpoint(tmp_path)
    x = torch.rand(2, 1, 32, 32, generator=_gen())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-6)


def test_missing_checkpoint_files_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(tmp_path)
    model = _trained_tiny(0)
    save_checkpoint(tmp_path, model, model.config)  # type: ignore[arg-type]
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path)


def test_mismatched_checkpoint_refused(tmp_path: Path) -> None:
    model = _trained_tiny(0, num_classes=4)
    save_checkpoint(tmp_path, model, model.config)  # type: ignore[arg-type]
    cfg_path = tmp_path / "config.json"
    doc = json.loads(cfg_path.read_text())
    doc["num_classes"] = 7
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*head\.weight") as info:
        load_checkpoint(tmp_path)
    assert "\n" not in str(info.value)


def test_corrupt_weights_refused_by_checksum(tmp_path: Path) -> None:
    model = _trained_tiny(0)
    save_checkpoint(tmp_path, model, model.config)  # type: ignore[arg-type]
    other = _trained_tiny(1)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in other.backbone.state_dict().items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path)


def test_sha256_file_chunked(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk=4096) == hashlib.sha256(data).hexdigest()


def test_checkpoint_files_are_byte_identical_for_identical_weights(tmp_path):
    """The same weights written twice give the same file (and so the same ``weights_sha256``):
    safetensors orders metadata keys from a hash map, so drkit writes a single key."""
    import hashlib

    from conftest import make_teacher

    digests = set()
    for k in range(4):
        make_teacher(tmp_path / f"c{k}", [str(i) for i in range(10)], seed=7)
        digests.add(hashlib.sha256((tmp_path / f"c{k}" / "model.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1


@pytest.mark.parametrize("kwargs", [{"nope": 1}, {"drop_rate": "x"}, {"drop_rate": 2}])
def test_bad_model_kwargs_of_a_drkit_model_are_one_line_like_timms(kwargs: dict) -> None:
    """``--model-kwargs`` reach every family's constructor through one refusal, not a traceback."""
    with pytest.raises(CheckpointError, match="cannot build drkit:drkit_cnn_tiny"):
        create_model("drkit_cnn_tiny", num_classes=10, in_chans=1, **kwargs)
    if "nope" in kwargs:  # timm's models take a bad value without complaint until they run
        with pytest.raises(CheckpointError, match="cannot build timm:resnet10t"):
            create_model("resnet10t", num_classes=10, in_chans=1, **kwargs)


def test_a_checkpoint_config_that_is_no_json_object_is_one_line(tmp_path: Path) -> None:
    model = _trained_tiny(0)
    save_checkpoint(tmp_path, model, model.config)  # type: ignore[arg-type]
    for text, words in (("[]", "is not a JSON object"), ("{x", "is not valid JSON"), (b"\xff", "is not valid JSON")):
        path = tmp_path / "config.json"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        with pytest.raises(CheckpointError, match=f"checkpoint .*config.json {words}"):
            load_checkpoint(tmp_path)


@pytest.mark.parametrize("key, value", [("model_kwargs", "x"), ("mean", [0.1, 0.2, 0.3]), ("std", [0.0]),
                                        ("image_size", -3)])
def test_a_checkpoint_config_drkit_never_writes_is_refused_in_one_line(tmp_path: Path, key: str, value) -> None:
    model = _trained_tiny(0)
    save_checkpoint(tmp_path, model, model.config)  # type: ignore[arg-type]
    doc = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**doc, key: value}))
    with pytest.raises(CheckpointError, match="invalid model config") as info:
        load_checkpoint(tmp_path)
    assert "\n" not in str(info.value)
