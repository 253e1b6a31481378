"""The public API: names from design.md import from ``drkit``; importing does no work; verbs are callable."""
from __future__ import annotations

import subprocess
import sys

import pytest


def test_public_names_resolve():
    import drkit

    for name in drkit.__all__:
        assert getattr(drkit, name) is not None, name


def test_a_verb_is_its_callable_package_whatever_was_imported_first():
    """``drkit.train.Optim`` after a bare ``import drkit`` (docs/loops.md spells names so), the package's
    submodules still importable, and ``drkit.train(...)`` still the verb."""
    code = ("import drkit; assert callable(drkit.train) and drkit.train.Optim and drkit.reinforce.ReinforceConfig;"
            "import drkit.train.loop as loop; from drkit import train, evaluate; import drkit.evaluate.metrics;"
            "assert train is drkit.train and train.train is loop.train and callable(evaluate); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_import_is_cheap_and_verbs_stay_callable():
    code = ("import sys, drkit; assert 'torch' not in sys.modules, 'import drkit pulled in torch';"
            "import drkit.train, drkit.reinforce, drkit.evaluate;"
            "assert callable(drkit.train) and callable(drkit.reinforce) and callable(drkit.evaluate); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_cli_help_has_examples_for_every_verb():
    for verb in ["reinforce", "train", "eval", "inspect", "verify", "merge", "demo"]:
        r = subprocess.run([sys.executable, "-m", "drkit.cli", verb, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "example" in r.stdout, verb
    r = subprocess.run([sys.executable, "-m", "drkit.cli", "inspect", "/nonexistent/store"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.startswith("drkit: error:") and len(r.stderr.strip().splitlines()) == 1


def test_host_allocator_is_tuned_unless_the_user_chose_one():
    """glibc keeps freed memory for reuse (``drkit`` does this at start), but never overrides a
    user's ``MALLOC_*`` settings or preloaded allocator."""
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    code = "from drkit.device import tune_host_allocator; print(tune_host_allocator())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}

    def run(extra: dict[str, str]) -> str:
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run({}) == "True"
    assert run({"MALLOC_ARENA_MAX": "2"}) == "False"

