"""Golden outputs: refactors must not change a single byte of what drkit writes.

The sha256 of every shard of a small store (digits, ``rrc+ra+re+mix``, NS 4, a seeded tiny
teacher) and a short DR run's final weights. If one of these changes, the store format or the
replay/training arithmetic changed: that needs a version bump (``FORMAT_VERSION`` or the
renderer's ``RENDERER_VERSION``) and a note, never a silent re-pin.

The weights are pinned to 1e-5, not byte for byte: torch's CPU float kernels differ per machine
(an AMD EPYC with AVX-512 trained other last bits than the Intel machine of the first pin; on one
machine, ``ATEN_CPU_CAPABILITY`` avx512 / avx2 / default weights differ by <= 7e-8), while a change
to the loss, the schedule or the replayed views moves them by far more. On one machine a run is
byte-identical to itself (``test_train``: resume = uninterrupted, ``torch.equal``).

The pins are renderer 2 (counter-based hash noise in erased boxes) with sampler 2 (counter-based
batch draws, recorded in the store as ``"sampler": 2``), with the DR weights trained on the store.
The renderer-1 / sampler-1 pins (issue 10) went with sampler 1 (issue 21): no drkit can write
such a store any more; stores written that way still replay (their parameters are stored), and
renderer 1's noise is pinned by ``test_renderer.py``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_teacher

from drkit.reinforce import ReinforceConfig, reinforce
from drkit.train import TrainConfig, train

GOLDEN_SHARDS = {
    "00000.safetensors": "545594b4f34ec443cbe70895cf2a07027667a50694abb7717a5bd87f4fbbc2ed",
    "00001.safetensors": "bdab722406d905f8ad210b4eaa36b586e04fc6e391cf5e5086f2bf338944cc7b",
}
#: the DR run's weights, per tensor: (L2 norm, projection on a Gaussian direction drawn with seed 0)
GOLDEN_DR_WEIGHTS = {
    "head.bias": (0.1923818589, 0.110426799),
    "head.weight": (1.827197996, -1.264664834),
    "stages.0.0.weight": (3.99218002, 2.18744555),
    "stages.0.1.bias": (0.0005546073148, -1.409566263e-05),
    "stages.0.1.num_batches_tracked": (6, 0.7543813266),
    "stages.0.1.running_mean": (0.6023915944, -0.2311012582),
    "stages.0.1.running_var": (3.990004448, 1.772568976),
    "stages.0.1.weight": (6.928203194, 3.332839963),
    "stages.1.0.weight": (4.628119515, 3.698948679),
    "stages.1.1.bias": (0.000450473052, -0.0001379606269),
    "stages.1.1.num_batches_tracked": (6, 0.7543813266),
    "stages.1.1.running_mean": (0.7488708437, -0.2308375301),
    "stages.1.1.running_var": (4.6478251, 2.580161666),
    "stages.1.1.weight": (7.999999361, 4.275108147),
    "stages.2.0.weight": (4.619948313, 6.068228287),
    "stages.2.1.bias": (0.01948577068, 0.01726340325),
    "stages.2.1.num_batches_tracked": (6, 0.7543813266),
    "stages.2.1.running_mean": (0.6594951703, 0.1431813129),
    "stages.2.1.running_var": (4.602360356, 2.409983859),
    "stages.2.1.weight": (7.994891068, 4.28824438),
    "stem.0.weight": (2.955616712, 0.7172162329),
    "stem.1.bias": (0.0005929222402, 0.0007389894298),
    "stem.1.num_batches_tracked": (6, 0.7543813266),
    "stem.1.running_mean": (0.2744484245, 0.1440949164),
    "stem.1.running_var": (3.231971016, -2.054490863),
    "stem.1.weight": (4.898979495, -2.738401568),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_probe(path: Path) -> dict[str, tuple[float, float]]:
    """Per tensor (name order): its L2 norm and its projection on a seeded Gaussian direction, which
    moves with any change to any element."""
    from safetensors.numpy import load_file

    out = {}
    for name, arr in sorted(load_file(str(path)).items()):
        a = arr.astype(np.float64).ravel()
        out[name] = (float(np.linalg.norm(a)), float(a @ np.random.default_rng(0).standard_normal(a.size)))
    return out


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
    got = _weights_probe(out / "model.safetensors")
    assert got.keys() == GOLDEN_DR_WEIGHTS.keys()
    for name, want in GOLDEN_DR_WEIGHTS.items():  # see the module docstring
        assert got[name] == pytest.approx(want, rel=1e-5, abs=1e-7), name
