"""Golden outputs: refactors must not change a single byte of what drkit writes.

The sha256 of every shard of a small store (digits, ``rrc+ra+re+mix``, NS 4, a seeded tiny
teacher) and of a short DR run's final weights. If one of these changes, the store format or the
replay/training arithmetic changed: that needs a version bump (``FORMAT_VERSION`` or the
renderer's ``RENDERER_VERSION``) and a note, never a silent re-pin.

The pins are renderer 2 (counter-based hash noise in erased boxes) with sampler 2 (counter-based
batch draws, recorded in the store as ``"sampler": 2``), with the DR weights trained on the store.
The renderer-1 / sampler-1 pins (issue 10) went with sampler 1 (issue 21): no drkit can write
such a store any more; stores written that way still replay (their parameters are stored), and
renderer 1's noise is pinned by ``test_renderer.py``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import make_teacher

from drkit.reinforce import ReinforceConfig, reinforce
from drkit.train import TrainConfig, train

GOLDEN_SHARDS = {
    "00000.safetensors": "545594b4f34ec443cbe70895cf2a07027667a50694abb7717a5bd87f4fbbc2ed",
    "00001.safetensors": "bdab722406d905f8ad210b4eaa36b586e04fc6e391cf5e5086f2bf338944cc7b",
}
GOLDEN_DR_WEIGHTS = "5a818c214f5c1f4c6473f9edb9108ed7e3fcd00406aec56ef8c283323ebbe39a"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_sha(path: Path) -> str:
    """sha256 over the tensors (name, dtype, shape, bytes in name order): the weights themselves,
    independent of how the safetensors header orders its metadata."""
    from safetensors.numpy import load_file

    h = hashlib.sha256()
    for name, arr in sorted(load_file(str(path)).items()):
        h.update(f"{name}|{arr.dtype.str}|{list(arr.shape)}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _golden(base: Path, src) -> Path:
    teacher = make_teacher(base / "teacher", src.classes, seed=7)
    return reinforce(ReinforceConfig(data=src, teacher=[teacher], out=base / "store", recipe="rrc+ra+re+mix", views=4,
                                     topk=3, seed=11, batch_size=24, workers=0, images_per_shard=32, progress=False,
                                     device="cpu", command=["golden"]))


@pytest.fixture(scope="module")
def golden_store(tmp_path_factory, digits_train) -> Path:
    return _golden(tmp_path_factory.mktemp("golden"), digits_train)


def _shards(root: Path) -> dict[str, str]:
    """The record shards (the content-digest files beside them are checked in test_trust)."""
    return {p.name: _sha(p) for p in sorted((root / "shards").glob("*.safetensors")) if ".content." not in p.name}


def test_golden_store_shards(golden_store):
    assert _shards(golden_store) == GOLDEN_SHARDS


def test_golden_dr_weights(tmp_path, digits_train, golden_store):
    out = tmp_path / "dr"
    train(TrainConfig.build(data=digits_train, out=out, reinforced=golden_store, model="drkit_cnn_tiny", epochs=2,
                      batch_size=16, lr=0.05, workers=0, device="cpu", seed=3, quiet=True, temperature=2.0,
                      soften_targets=True))
    assert _weights_sha(out / "model.safetensors") == GOLDEN_DR_WEIGHTS
