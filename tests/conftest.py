"""Shared fixtures: a tiny real dataset (scikit-learn digits) and tiny teacher checkpoints."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def digits_train():
    from drkit.sources import load_source

    return load_source("digits:train?n=48")


def make_teacher(root: Path, classes: list[str], seed: int, image_size: int = 16, model: str = "drkit_cnn_tiny",
                 in_chans: int = 1) -> str:
    """A randomly initialised (seeded) drkit checkpoint: enough to test labelling and replay."""
    from drkit.checkpoint import save_checkpoint
    from drkit.models import ImageModel, ModelConfig

    cfg = ModelConfig(model=model, num_classes=len(classes), in_chans=in_chans, image_size=image_size,
                      mean=[0.5], std=[0.25], classes=list(classes))
    net = ImageModel.from_config(cfg, seed=seed)
    save_checkpoint(root, net, cfg)
    return f"ckpt:{root}"


def write_manifest(root: Path, doc: dict) -> None:
    """Write an edited store manifest re-signed (its ``manifest_sha256`` recomputed), as an editor who knows
    the format would: the edit then reaches the checks behind the manifest's own digest."""
    import json

    from drkit.store.format import manifest_digest

    (Path(root) / "manifest.json").write_text(json.dumps({**doc, "manifest_sha256": manifest_digest(doc)}))


def bench_module(name: str):
    """``benchmarks/NAME.py`` as a module (its sibling imports resolve while it loads; sys.path is left as found)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location(f"drkit_bench_{name}", bench / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(bench))


def op_recipes(drawing: bool = False) -> list[str]:
    """One valid recipe per registered op (``drkit.augment.OPS``), so an op added in its own file is
    tested without editing a list: a geometric source op alone, any other after ``rrc``; ``drawing``:
    only ops that draw new views (an imported view's op keeps ``Op.draw``, which refuses)."""
    from drkit.augment import OPS, Op

    return [name if cls.geometric_source else f"rrc+{name}" for name, cls in sorted(OPS.items())
            if not (drawing and cls.draw is Op.draw)]


@pytest.fixture(scope="session")
def teacher_pair(tmp_path_factory, digits_train) -> list[str]:
    base = tmp_path_factory.mktemp("teachers")
    return [make_teacher(base / f"t{i}", digits_train.classes, seed=i) for i in range(2)]


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(autouse=True, scope="session")
def _own_listing_cache(tmp_path_factory):
    """Folder listings are cached under the test session's own folder, never the user's ~/.cache
    (subprocesses inherit the variable)."""
    import os

    old = os.environ.get("DRKIT_CACHE_DIR")
    os.environ["DRKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("drkit-cache"))
    yield
    if old is None:
        os.environ.pop("DRKIT_CACHE_DIR", None)
    else:
        os.environ["DRKIT_CACHE_DIR"] = old
