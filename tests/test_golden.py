"""Golden outputs: refactors must not change a single byte of what drkit writes.

Pinned before the config-first refactor (issue 10): the sha256 of every shard of a small store
(digits, ``rrc+ra+re+mix``, NS 4, a seeded tiny teacher) and of a short DR run's final weights.
If one of these changes, the store format or the replay/training arithmetic changed: that is a
format break and needs a ``FORMAT_VERSION`` bump and a note, never a silent re-pin.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import make_teacher
from drkit.reinforce import reinforce
from drkit.train import train

GOLDEN_SHARDS = {
    "00000.safetensors": "07f10be40a56b512aa2de21171939e11678a9af3c5de086ef45c167f588805b6",
    "00001.safetensors": "91fe137aadb6ff6ef1e6915b4ed6c0afb306134a6328c6f5d292226fd538b60e",
}
GOLDEN_DR_WEIGHTS = "a0c336e987539e3350cd431adab1048dd75cc31965f80315fcae8034fb5fbc59"


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


@pytest.fixture(scope="module")
def golden_store(tmp_path_factory, digits_train) -> Path:
    base = tmp_path_factory.mktemp("golden")
    teacher = make_teacher(base / "teacher", digits_train.classes, seed=7)
    return reinforce(digits_train, [teacher], base / "store", recipe="rrc+ra+re+mix", samples=4, topk=3,
                     seed=11, batch_size=24, workers=0, samples_per_shard=32, progress=False, device="cpu",
                     command=["golden"])


def test_golden_store_shards(golden_store):
    got = {p.name: _sha(p) for p in sorted((golden_store / "shards").glob("*.safetensors"))}
    assert got == GOLDEN_SHARDS


def test_golden_dr_weights(tmp_path, digits_train, golden_store):
    out = tmp_path / "dr"
    train(digits_train, out, reinforced=golden_store, model="drkit_cnn_tiny", epochs=2, batch_size=16, lr=0.05,
          workers=0, device="cpu", seed=3, quiet=True, temperature=2.0, soften_targets=True)
    assert _weights_sha(out / "model.safetensors") == GOLDEN_DR_WEIGHTS
