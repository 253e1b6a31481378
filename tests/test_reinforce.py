"""drkit reinforce + the store: bit-exact replay, determinism, resume, budget, refusals, merge."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from drkit.errors import DrkitError, StoreError
from drkit.reinforce import ReinforceConfig, reinforce
from drkit.store import merge_stores, open_store
from drkit.teachers import load_teacher

RECIPES = ["rrc+ra+re", "padcrop+ra+re", "rrc+ta", "rrc+mix", "rrc+ra+re+mix"]


def _run(src, teachers, out, **kw):
    kw.setdefault("views", 3)
    kw.setdefault("topk", 5)
    kw.setdefault("workers", 0)
    kw.setdefault("batch_size", 32)
    kw.setdefault("images_per_shard", 16)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return reinforce(ReinforceConfig(data=src, teacher=teachers, out=out, command=["test"], **kw))


def _shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "shards").glob("*.safetensors"))}


def _manifest_sans_provenance(root: Path) -> dict:
    m = json.loads((root / "manifest.json").read_text())
    m.pop("provenance")
    return m


def _arrays(root: Path) -> dict[str, np.ndarray]:
    store = open_store(root)
    return {k: np.concatenate([np.asarray(store.raw(i)[k])[None] for i in range(store.num_samples)])
            for k in store.schema}


@pytest.mark.parametrize("recipe", RECIPES)
def test_teacher_on_replay_reproduces_stored_topk(tmp_path, digits_train, teacher_pair, recipe):
    root = _run(digits_train, teacher_pair, tmp_path / "s", recipe=recipe, batch_size=16)
    store = open_store(root)
    assert store.verify(digits_train)["ok"]
    ens = load_teacher(teacher_pair, device="cpu")
    n, ns = store.num_samples, store.num_views
    flat = [(i, v) for i in range(n) for v in range(ns)]
    mixed = 0
    # same batch composition as generation: identical arithmetic, so identical top-k
    for a in range(0, len(flat), 16):
        chunk = flat[a:a + 16]
        x = torch.stack([store.replay(digits_train, i, v) for i, v in chunk])
        assert x.shape[-1] == store.image_size and x.dtype == torch.float32
        with torch.inference_mode():
            probs = ens(x.contiguous(memory_format=torch.channels_last)).float()
        p, ids = probs.topk(store.topk, dim=-1)
        for row, (i, v) in enumerate(chunk):
            rec = store.record(i, v)
            assert np.array_equal(rec["topk_ids"], ids[row].numpy())
            assert np.array_equal(rec["topk_probs"], p[row].numpy().astype(np.float16).astype(np.float32))
            mixed += int(rec.get("mix_mode", 0) > 0)
    if "mix" in recipe:
        assert mixed > len(flat) // 2  # the mixed image, not the plain one, was labelled
    # one record replayed alone agrees to fp16 rounding
    i, v = 5, 1
    with torch.inference_mode():
        alone = ens(store.replay(digits_train, i, v)[None]).float()[0]
    rec = store.record(i, v)
    assert np.allclose(alone[rec["topk_ids"]].numpy(), rec["topk_probs"], atol=2e-3)


def test_record_budget_and_layout(tmp_path, digits_train, teacher_pair):
    root = _run(digits_train, teacher_pair[:1], tmp_path / "s", recipe="rrc+ra+re", topk=10)
    store = open_store(root)
    assert store.bytes_per_record <= 60
    assert store.schema["topk_ids"]["dtype"] == "uint16" and store.schema["topk_probs"]["dtype"] == "float16"
    rec = store.record(3, 2)
    assert np.all(np.diff(rec["topk_probs"]) <= 0)  # sorted descending
    assert len(set(rec["topk_ids"].tolist())) == 10
    # shards are fixed-size: file size is header + samples * views * bytes_per_record
    info = store.manifest["shards"][0]
    head = (root / info["file"]).read_bytes()[:8]  # safetensors: a u64 header length, the header, the data
    records = (info["stop"] - info["start"]) * store.num_views * store.bytes_per_record
    assert info["bytes"] == 8 + int.from_bytes(head, "little") + records


def test_workers_do_not_change_a_byte(tmp_path, digits_train, teacher_pair):
    a = _run(digits_train, teacher_pair, tmp_path / "w0", recipe="rrc+ra+re+mix", workers=0)
    b = _run(digits_train, teacher_pair, tmp_path / "w2", recipe="rrc+ra+re+mix", workers=2)
    assert _shard_bytes(a) == _shard_bytes(b)
    assert _manifest_sans_provenance(a) == _manifest_sans_provenance(b)


def _assert_same_views(a: Path, b: Path) -> None:
    x, y = _arrays(a), _arrays(b)
    for name in x:
        if name in ("topk_probs", "topk_ids"):
            continue
        assert np.array_equal(x[name], y[name]), name
    # probabilities agree to fp16 rounding; ids agree except at near-ties
    assert np.allclose(x["topk_probs"].astype(np.float32), y["topk_probs"].astype(np.float32), atol=1e-3)
    same = x["topk_ids"] == y["topk_ids"]
    assert same.mean() > 0.99


def test_batch_size_and_shard_splits_give_the_same_views(tmp_path, digits_train, teacher_pair):
    ref = _run(digits_train, teacher_pair, tmp_path / "ref", recipe="rrc+ra+re+mix", batch_size=32)
    bs = _run(digits_train, teacher_pair, tmp_path / "bs", recipe="rrc+ra+re+mix", batch_size=7)
    _assert_same_views(ref, bs)
    out = tmp_path / "split"
    _run(digits_train, teacher_pair, out, recipe="rrc+ra+re+mix", shard="1/2")
    assert not (out / "manifest.json").exists()  # half the shards: not complete, not visible as a store
    with pytest.raises(StoreError, match="incomplete"):
        open_store(out)
    _run(digits_train, teacher_pair, out, recipe="rrc+ra+re+mix", shard="0/2")
    _assert_same_views(ref, out)
    assert _shard_bytes(ref) == _shard_bytes(out)  # same batches per shard here: bytes agree too


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drkit.cli", *args], capture_output=True, text=True, **kw)


def test_torchrun_two_ranks_match_single_process(tmp_path, digits_train, teacher_pair):
    ref = _run(digits_train, teacher_pair, tmp_path / "ref", recipe="rrc+mix")
    out = tmp_path / "ddp"
    args = ["--data", "digits:train?n=48", "--recipe", "rrc+mix", "--samples", "3", "--topk", "5",
            "--batch-size", "32", "--samples-per-shard", "16", "--workers", "0", "--device", "cpu",
            "--out", str(out), "--quiet"]
    for t in teacher_pair:
        args += ["--teacher", t]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "drkit.cli", "reinforce", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_views(ref, out)
    assert open_store(out).verify()["ok"]


def test_sigkill_then_resume_is_byte_identical(tmp_path, teacher_pair):
    from drkit.sources import load_source

    spec = "digits:train?n=600"
    src = load_source(spec)
    ref = _run(src, teacher_pair, tmp_path / "ref", recipe="rrc+ra+re", views=4, images_per_shard=40)
    out = tmp_path / "killed"
    args = ["reinforce", "--data", spec, "--recipe", "rrc+ra+re", "--samples", "4", "--topk", "5",
            "--batch-size", "32", "--samples-per-shard", "40", "--workers", "0", "--device", "cpu",
            "--out", str(out), "--quiet"]
    for t in teacher_pair:
        args += ["--teacher", t]
    proc = subprocess.Popen([sys.executable, "-m", "drkit.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "shards").glob("*.safetensors"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "shards").glob("*.safetensors")))
    assert 3 <= done < 15, "the kill should land mid-run"
    assert not (out / "manifest.json").exists()
    # without --resume the unfinished directory is refused
    r = _cli(*args)
    assert r.returncode == 2 and "--resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert _shard_bytes(ref) == _shard_bytes(out)
    assert _manifest_sans_provenance(ref) == _manifest_sans_provenance(out)


def test_refusals_are_one_line_and_leave_no_store(tmp_path, digits_train, teacher_pair):
    base = ["reinforce", "--data", "digits:train?n=48", "--samples", "2", "--topk", "5", "--workers", "0",
            "--device", "cpu", "--quiet", "--batch-size", "32", "--samples-per-shard", "16"]
    # unknown teacher spec
    r = _cli(*base, "--teacher", "nosuch:thing", "--out", str(tmp_path / "a"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "nosuch" in r.stderr
    assert not (tmp_path / "a" / "manifest.json").exists()
    # class-count mismatch between teacher and source
    from conftest import make_teacher

    seven = make_teacher(tmp_path / "t7", [str(c) for c in range(7)], seed=0)
    r = _cli(*base, "--teacher", seven, "--out", str(tmp_path / "b"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "7" in r.stderr
    assert not (tmp_path / "b" / "manifest.json").exists()
    # a tampered shard
    root = _run(digits_train, teacher_pair[:1], tmp_path / "c", recipe="rrc")
    shard = sorted((root / "shards").glob("*.safetensors"))[1]
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    r = _cli("verify", str(root))
    assert r.returncode == 2 and "sha256" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # a store checked against a different source
    root2 = _run(digits_train, teacher_pair[:1], tmp_path / "d", recipe="rrc")
    r = _cli("verify", str(root2), "--data", "digits:test")
    assert r.returncode == 2 and "fingerprint" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    from drkit.sources import load_source

    with pytest.raises(StoreError):
        open_store(root2).replay(load_source("digits:train?n=47"), 0, 0)
    # topk larger than the class count, and a truncated manifest
    with pytest.raises(DrkitError, match="--topk 11 must be in 1..10"):
        _run(digits_train, teacher_pair[:1], tmp_path / "e", topk=11)
    (root2 / "manifest.json").write_text("{")
    with pytest.raises(StoreError, match="JSON"):
        open_store(root2)


def test_merge_adds_views_and_refuses_mismatches(tmp_path, digits_train, teacher_pair):
    a = _run(digits_train, teacher_pair, tmp_path / "a", recipe="rrc+mix", seed=0, views=2)
    b = _run(digits_train, teacher_pair, tmp_path / "b", recipe="rrc+mix", seed=1, views=3)
    c = merge_stores([a, b], tmp_path / "c")
    sa, sb, sc = open_store(a), open_store(b), open_store(c)
    assert sc.num_views == 5 and sc.verify(digits_train)["ok"]
    for i in (0, 17, 47):
        for v in range(2):
            assert sc.record(i, v)["params"] == sa.record(i, v)["params"]
        for v in range(3):
            rb, rc = sb.record(i, v), sc.record(i, v + 2)
            assert rc["partner_view"] == rb["partner_view"] + 2
            assert np.array_equal(rc["topk_probs"], rb["topk_probs"])
            assert torch.equal(sc.replay(digits_train, i, v + 2), sb.replay(digits_train, i, v))
    with pytest.raises(StoreError, match="seed"):
        merge_stores([a, a], tmp_path / "d")
    other = _run(digits_train, teacher_pair, tmp_path / "o", recipe="rrc", seed=2, views=2)
    with pytest.raises(StoreError, match="recipe"):
        merge_stores([a, other], tmp_path / "e")


def test_render_ahead_keeps_order_and_raises_in_the_consumer():
    """The CUDA path renders in a second thread: items come back in order with their renders, an
    error in the thread is raised in the consumer, and stopping early ends the thread."""
    import threading

    from drkit.reinforce.ahead import render_ahead

    def square(i: int) -> int:
        if i == 7:
            raise StoreError("seven")
        return i * i

    assert list(render_ahead(range(5), square, threaded=True)) == [(i, i * i) for i in range(5)]
    assert list(render_ahead(range(5), square, threaded=False)) == [(i, i * i) for i in range(5)]
    got = []
    with pytest.raises(StoreError, match="seven"):
        for item, _ in render_ahead(range(10), square, threaded=True):
            got.append(item)
    assert got == list(range(7))
    it = render_ahead(iter(range(1000)), square, threaded=True)
    next(it)
    it.close()  # the consumer stops early: the thread is stopped and joined
    assert not any(t.name == "drkit-render-ahead" for t in threading.enumerate())


@pytest.mark.parametrize("workers", [0, 2])
def test_an_undecodable_image_stops_reinforce_in_one_line_and_leaves_nothing(tmp_path, workers):
    """A bad image ends reinforce in one `drkit: error:` line naming it, with no directory left
    behind (nothing was finished), so the corrected data reinforces into the same --out."""
    from conftest import make_teacher
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in "ab":
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "img" / c / f"{i}.png")
    bad = tmp_path / "img" / "a" / "bad.png"
    bad.write_bytes(b"not an image")
    teacher = make_teacher(tmp_path / "t", ["a", "b"], seed=0)
    out = tmp_path / "store"
    args = ["reinforce", "--data", f"imagefolder:{tmp_path / 'img'}?mode=L", "--teacher", teacher, "--out", str(out),
            "--samples", "2", "--topk", "2", "--device", "cpu", "--quiet", "--workers", str(workers)]
    r = _cli(*args)
    assert r.returncode == 2 and r.stderr.startswith("drkit: error:") and "bad.png" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()
    bad.unlink()
    assert _cli(*args).returncode == 0 and (out / "manifest.json").exists()


def test_a_failed_run_with_finished_shards_stays_for_resume(tmp_path, digits_train, teacher_pair, monkeypatch):
    """Only a run that finished nothing is removed: finished shards stay and --resume completes them."""
    import drkit.reinforce.run as run

    real, calls = run._hand_over, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # the first shard (2 batches) is sealed by then
            raise StoreError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(run, "_hand_over", failing)
    with pytest.raises(StoreError, match="disk full"):
        _run(digits_train, teacher_pair, tmp_path / "s", recipe="rrc", batch_size=24)
    first = tmp_path / "s" / "shards" / "00000.safetensors"
    kept = first.stat()
    monkeypatch.setattr(run, "_hand_over", real)
    root = _run(digits_train, teacher_pair, tmp_path / "s", recipe="rrc", batch_size=24, resume=True)
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == (kept.st_mtime_ns, kept.st_ino)  # kept, not redone
    ref = _run(digits_train, teacher_pair, tmp_path / "ref", recipe="rrc", batch_size=24)
    assert _shard_bytes(root) == _shard_bytes(ref)


def test_a_run_begun_with_sampler_1_is_refused_on_resume(tmp_path, digits_train, teacher_pair, monkeypatch):
    """A run started before sampler 2 (its run.json names no sampler) cannot be finished with other
    parameters: resuming it is refused in one line that says to start again; fresh runs record 2."""
    import drkit.reinforce.run as run
    from drkit.store import Store

    real, calls = run._hand_over, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # the first shard is sealed by then
            raise StoreError("killed")
        return real(*a, **k)

    monkeypatch.setattr(run, "_hand_over", failing)
    with pytest.raises(StoreError):
        _run(digits_train, teacher_pair, tmp_path / "s", recipe="rrc+ra+re", batch_size=24)
    run_json = tmp_path / "s" / "run.json"
    config = json.loads(run_json.read_text())
    assert config["sampler"] == 2
    del config["sampler"]  # as the run.json of a run begun before sampler 2
    run_json.write_text(json.dumps(config))
    monkeypatch.undo()
    with pytest.raises(StoreError, match="begun with parameter sampler 1, which this drkit no longer has; start it"):
        _run(digits_train, teacher_pair, tmp_path / "s", recipe="rrc+ra+re", batch_size=24, resume=True)
    assert not (tmp_path / "s" / "manifest.json").exists()
    for text, words in (("{bad", "not valid JSON"), ("[]", "not a JSON object")):  # an edited run.json: one line
        run_json.write_text(text)
        with pytest.raises(StoreError, match=f"an unfinished run's .*run.json is {words}"):
            _run(digits_train, teacher_pair, tmp_path / "s", recipe="rrc+ra+re", batch_size=24, resume=True)
    fresh = _run(digits_train, teacher_pair, tmp_path / "new", recipe="rrc+ra+re", batch_size=24)
    assert Store(fresh).manifest["sampler"] == 2


def test_default_batch_size_is_256_on_a_cpu_and_about_4m_pixels_on_an_accelerator(tmp_path, digits_train,
                                                                                    teacher_pair, monkeypatch):
    from drkit.device import default_batch_size
    import drkit.reinforce.run as run

    cuda = torch.device("cuda")  # only the device kind is read: no GPU needed
    assert [default_batch_size(cuda, s) for s in (8, 28, 32, 64, 90, 96, 128, 224, 1024)] == \
        [4096, 4096, 4096, 1024, 512, 256, 256, 256, 256]
    assert {default_batch_size(torch.device("cpu"), s) for s in (8, 32, 224)} == {256}
    asked = []
    real = run.batch_tasks
    monkeypatch.setattr(run, "batch_tasks", lambda shards, views, batch: asked.append(batch) or real(shards, views, batch))
    _run(digits_train, teacher_pair, tmp_path / "s", recipe="rrc", batch_size=None)
    assert asked == [256]


def test_a_teacher_module_without_image_size_asks_for_it(tmp_path, digits_train):
    """``ReinforceConfig(teacher=<nn.Module>)`` is documented: without ``image_size`` it is one line, not an
    AttributeError; with it the store is written."""
    import torch

    class Uniform(torch.nn.Module):  # probabilities for a batch in [0, 1], as a teacher module returns
        def forward(self, x):
            return torch.full((x.shape[0], 10), 0.1)

    kw = dict(data=digits_train, teacher=Uniform(), views=1, topk=3, workers=0, device="cpu", progress=False,
              command=["t"])
    with pytest.raises(DrkitError, match="no image_size: give ReinforceConfig"):
        reinforce(ReinforceConfig(out=tmp_path / "a", **kw))
    assert not (tmp_path / "a").exists()
    assert open_store(reinforce(ReinforceConfig(out=tmp_path / "b", image_size=8, **kw))).image_size == 8
