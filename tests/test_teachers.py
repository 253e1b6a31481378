"""drkit.teachers: spec schemes, class count from the weights, ensembles, refusals, describe()."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from drkit.checkpoint import save_checkpoint
from drkit.errors import TeacherError
from drkit.models import ImageModel, ModelConfig
from drkit.teachers import TEACHER_SCHEMES, TeacherEnsemble, load_teacher, parse_teacher_spec, predict


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Path]:
    """A timm resnet18 with a 10-class head, saved as safetensors and as a wrapped .pth."""
    import timm
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("resnet18", num_classes=10).eval()
    root = tmp_path_factory.mktemp("weights")
    st = root / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    pth = root / "w.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, pth)
    return model, st, pth


def _reference_probs(model: torch.nn.Module, teacher: TeacherEnsemble, x: torch.Tensor) -> torch.Tensor:
    info = teacher.infos[0]
    ref = ImageModel(model, info.mean, info.std).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        return ref(x.contiguous(memory_format=torch.channels_last)).float().softmax(-1)


@pytest.mark.parametrize("which", ["safetensors", "pth"])
def test_timm_file_teacher_uses_the_file_weights(resnet_files, which: str) -> None:
    model, st, pth = resnet_files
    path = st if which == "safetensors" else pth
    teacher = load_teacher(f"timm:resnet18?file={path}&size=32")
    assert teacher.num_classes == 10 and teacher.image_size == 32 and teacher.in_chans == 3
    x = torch.rand(4, 3, 32, 32, generator=_gen())
    probs = teacher(x)
    assert probs.dtype == torch.float32 and probs.shape == (4, 10)
    # Bit-exact: a re-initialised (random) head or stem could not reproduce these.
    assert torch.equal(probs, _reference_probs(model, teacher, x))
    (desc,) = teacher.describe()
    assert desc["weights_sha256"] == _sha(path)
    assert desc["num_classes"] == 10 and desc["image_size"] == 32
    assert len(desc["mean"]) == 3 and desc["interpolation"]


def test_file_teacher_with_other_class_count_refused(resnet_files) -> None:
    _, st, _ = resnet_files
    with pytest.raises(TeacherError, match="predicts 10 classes but the source has 7") as info:
        load_teacher(f"timm:resnet18?file={st}", num_classes=7)
    assert "\n" not in str(info.value)


def _ckpt(root: Path, name: str, seed: int, image_size: int = 16, num_classes: int = 3,
          classes: list[str] | None = None) -> Path:
    cfg = ModelConfig(
        model="drkit_cnn_tiny", num_classes=num_classes, in_chans=1, image_size=image_size,
        mean=[0.25 + 0.1 * seed], std=[0.3], classes=classes or [f"k{i}" for i in range(num_classes)],
    )
    model = ImageModel.from_config(cfg, seed=seed)
    save_checkpoint(root / name, model, cfg)
    return root / name


def test_ckpt_ensemble_averages_member_probabilities(tmp_path: Path) -> None:
    a, b = _ckpt(tmp_path, "a", 1), _ckpt(tmp_path, "b", 2)
    teacher = load_teacher([f"ckpt:{a}", f"ckpt:{b}"], num_classes=3, classes=["k0", "k1", "k2"])
    assert teacher.specs == [f"ckpt:{a}", f"ckpt:{b}"]
    assert teacher.classes == ["k0", "k1", "k2"] and teacher.image_size == 16 and teacher.in_chans == 1
    x = torch.rand(5, 1, 16, 16, generator=_gen())
    probs = predict(teacher, x)
    with torch.no_grad():
        manual = sum(m(x.contiguous(memory_format=torch.channels_last)).softmax(-1) for m in teacher.members) / 2
    assert torch.equal(probs, manual)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    # uint8 input is the same as uint8 / 255
    x8 = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8, generator=_gen())
    assert torch.equal(teacher(x8), teacher(x8.float() / 255))
    desc = teacher.describe()
    assert [d["weights_sha256"] for d in desc] == [_sha(a / "model.safetensors"), _sha(b / "model.safetensors")]
    assert desc[0]["mean"] != desc[1]["mean"]  # each member normalises itself


def test_teacher_stays_frozen_and_in_eval(tmp_path: Path) -> None:
    teacher = load_teacher(f"ckpt:{_ckpt(tmp_path, 'a', 1)}")
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_ensemble_refuses_mismatched_members(tmp_path: Path) -> None:
    a = _ckpt(tmp_path, "a", 1, image_size=16)
    b = _ckpt(tmp_path, "b", 2, image_size=24)
    c = _ckpt(tmp_path, "c", 3, num_classes=4)
    with pytest.raises(TeacherError, match="input size"):
        load_teacher([f"ckpt:{a}", f"ckpt:{b}"])
    with pytest.raises(TeacherError, match="classes"):
        load_teacher([f"ckpt:{a}", f"ckpt:{c}"])


def test_ckpt_teacher_with_other_class_names_refused(tmp_path: Path) -> None:
    a = _ckpt(tmp_path, "a", 1, classes=["cat", "dog", "fox"])
    with pytest.raises(TeacherError, match="other classes"):
        load_teacher(f"ckpt:{a}", classes=["cat", "fox", "dog"])


def test_wrong_input_shape_refused(tmp_path: Path) -> None:
    teacher = load_teacher(f"ckpt:{_ckpt(tmp_path, 'a', 1)}")
    with pytest.raises(TeacherError, match="N x 1 x H x W"):
        teacher(torch.rand(1, 3, 16, 16))
    with pytest.raises(TeacherError):
        teacher(torch.rand(1, 16, 16))
    assert teacher(torch.rand(1, 1, 20, 20)).shape == (1, 3)  # another size is the caller's choice


@pytest.mark.parametrize("spec", ["nope:thing", "resnet18", "hub:resnet18"])
def test_unknown_scheme_refused(spec: str) -> None:
    with pytest.raises(TeacherError) as info:
        load_teacher(spec)
    for scheme in TEACHER_SCHEMES:
        assert f"{scheme}:" in str(info.value)


def test_bad_specs_refused(tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="unknown timm model"):
        load_teacher("timm:definitely_not_a_model")
    with pytest.raises(TeacherError, match="does not exist"):
        load_teacher(f"timm:resnet18?file={tmp_path / 'missing.safetensors'}")
    with pytest.raises(TeacherError, match="unknown option"):
        load_teacher(f"ckpt:{tmp_path}?size=3")
    with pytest.raises(TeacherError, match="checkpoint"):
        load_teacher(f"ckpt:{tmp_path / 'none'}")


def test_parse_teacher_spec_options() -> None:
    spec = parse_teacher_spec("timm:resnet18?file=/w/a%26b.safetensors&size=64")
    assert (spec.scheme, spec.target) == ("timm", "resnet18")
    assert spec.options == {"file": "/w/a&b.safetensors", "size": "64"}
    assert parse_teacher_spec("ckpt:runs/data+/t1").target == "runs/data+/t1"


def test_torchvision_file_teacher_one_channel(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from drkit.models import create_model

    model = create_model("torchvision:resnet18", num_classes=6, in_chans=1, seed=0).eval()
    path = tmp_path / "tv.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    teacher = load_teacher(f"torchvision:resnet18?file={path}&size=32", num_classes=6)
    assert (teacher.num_classes, teacher.in_chans, teacher.image_size) == (6, 1, 32)
    x = torch.rand(2, 1, 32, 32, generator=_gen())
    assert torch.equal(teacher(x), _reference_probs(model, teacher, x))
    assert teacher.describe()[0]["weights_sha256"] == _sha(path)


def test_torchvision_hub_teacher_from_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub weights already in torch.hub's cache: no network, class count from the weights' meta,
    sha256 of the cached file; a source with another class count is refused."""
    import torchvision

    weights = torchvision.models.ResNet18_Weights.DEFAULT
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    cached = tmp_path / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    teacher = load_teacher("torchvision:resnet18")
    assert (teacher.num_classes, teacher.image_size, teacher.in_chans) == (1000, 224, 3)
    (desc,) = teacher.describe()
    assert desc["weights_sha256"] == _sha(cached) and desc["interpolation"] == "bilinear"
    with pytest.raises(TeacherError, match="predicts 1000 classes but the source has 10"):
        load_teacher("torchvision:resnet18", num_classes=10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ensemble_autocast_returns_float32(tmp_path: Path) -> None:
    specs = [f"ckpt:{_ckpt(tmp_path, 'a', 1)}", f"ckpt:{_ckpt(tmp_path, 'b', 2)}"]
    x = torch.rand(8, 1, 16, 16, generator=_gen())
    cpu = predict(load_teacher(specs), x)
    gpu = load_teacher(specs, device="cuda")
    conv = gpu.members[0].backbone.stem[0].weight
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
    probs = predict(gpu, x)
    assert probs.dtype == torch.float32 and probs.device.type == "cpu"
    torch.testing.assert_close(probs.sum(-1), torch.ones(8))
    torch.testing.assert_close(probs, cpu, rtol=0, atol=3e-2)  # bf16/fp16 autocast
    full = load_teacher(specs, device="cuda", amp=False)
    torch.testing.assert_close(predict(full, x), cpu, rtol=0, atol=2e-3)  # TF32 at most
    assert torch.equal(predict(gpu, x), probs)  # same setting, same bytes
