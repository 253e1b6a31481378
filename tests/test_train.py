"""drkit train: ERM / DR / KD learn, student families, resume, one-hot store == ERM, loss math,
view permutation, DDP under torchrun, refusals. Digits (8x8) rendered at 16 px, tiny models."""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_manifest
from PIL import Image

from drkit.augment import eval_transform
from drkit.errors import DrkitError
from drkit.reinforce import ReinforceConfig, reinforce
from drkit.store import densify, open_store
from drkit.train import (
    AugmentedDataset,
    ReinforcedDataset,
    SoftTargetLoss,
    TrainConfig,
    collate_raw,
    read_metrics,
    train,
)
from drkit.train import loop as train_loop
from drkit.train.losses import LabelSmoothingCrossEntropy
from drkit.train.order import epoch_batches, epoch_views

S = 16  # render size of the 8x8 digits
FAST = dict(image_size=S, workers=0, device="cpu", quiet=True)
TIMING = ("epoch_seconds", "img_per_s", "val_seconds")


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def _assert_learned(summary: dict, out: Path, min_top1: float = 0.5) -> None:
    rows = read_metrics(out)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    assert summary["final_val"]["top1"] > min_top1, rows


# ----------------------------------------------------------------------------------------------
# session fixtures: a teacher trained with ERM, a store reinforced by it
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def erm_run(tmp_path_factory):
    """ERM on all 1,500 training digits: the 'ERM learns' run and the DR/KD teacher."""
    out = tmp_path_factory.mktemp("erm") / "run"
    torch.set_num_threads(2)
    summary = train(TrainConfig.build(data="digits:train", out=out, val="digits:test", model="drkit_cnn_tiny",
                                recipe="padcrop", epochs=6, batch_size=64, opt="adamw", lr=4e-3, seed=0, **FAST))
    return summary, out


@pytest.fixture(scope="session")
def dr_store(tmp_path_factory, erm_run):
    out = tmp_path_factory.mktemp("store") / "digits+"
    torch.set_num_threads(2)
    return reinforce(ReinforceConfig(data="digits:train", teacher=[f"ckpt:{erm_run[1]}"], out=out,
                                     recipe="padcrop+ra+re", views=4, topk=3, image_size=S, workers=0, batch_size=256,
                                     images_per_shard=512, device="cpu", progress=False, command=["test"]))


# ----------------------------------------------------------------------------------------------
# the three modes learn
# ----------------------------------------------------------------------------------------------
def test_erm_learns_and_writes_layout(erm_run):
    summary, out = erm_run
    _assert_learned(summary, out, 0.7)
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "curves.png", "state/state.json"):
        assert (out / name).exists(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["extra"]["mode"] == "erm" and cfg["image_size"] == S and cfg["in_chans"] == 1
    assert set(read_metrics(out)[0]) >= {"epoch", "train_loss", "lr", "train_top1", "val_top1", "val_nll", "img_per_s",
                                  "epoch_seconds"}
    json.dumps(summary)


def test_dr_learns(tmp_path, dr_store):
    out = tmp_path / "dr"
    summary = train(TrainConfig.build(data="digits:train", out=out, val="digits:test", reinforced=dr_store,
                                model="drkit_cnn_tiny", epochs=5, batch_size=64, opt="adamw", lr=4e-3, **FAST))
    assert summary["mode"] == "dr"
    _assert_learned(summary, out)
    from drkit.teachers import load_teacher

    ens = load_teacher(f"ckpt:{out}")  # a DR student is itself a usable teacher
    assert ens.image_size == S and ens.num_classes == 10


def test_dr_with_no_distillation_flag_trains_exactly_as_t2_softened(tmp_path, dr_store):
    """The documented default is what the loop trains with, not only what the config reports."""
    base = dict(data="digits:train", reinforced=dr_store, model="drkit_cnn_tiny", epochs=1, limit_batches=2,
                batch_size=32, seed=3, **FAST)
    runs = {name: train(TrainConfig.build(out=tmp_path / name, **base, **kw)) and _weights(tmp_path / name)
            for name, kw in (("default", {}), ("t2", dict(temperature=2.0, soften_targets=True)),
                             ("t1", dict(temperature=1.0)), ("t2-unsoftened", dict(temperature=2.0, soften_targets=False)))}
    assert all(torch.equal(runs["default"][k], runs["t2"][k]) for k in runs["t2"])
    for other in ("t1", "t2-unsoftened"):
        assert not all(torch.equal(runs["default"][k], runs[other][k]) for k in runs[other]), other


def test_kd_learns_with_student_smaller_than_teacher(tmp_path, erm_run):
    out = tmp_path / "kd"
    summary = train(TrainConfig.build(data="digits:train", out=out, val="digits:test",
                                      kd_teacher=[f"ckpt:{erm_run[1]}"],
                                      model="drkit_cnn_tiny", recipe="padcrop", epochs=5, batch_size=64, opt="adamw",
                                      lr=4e-3, **{**FAST, "image_size": 12}))
    assert summary["mode"] == "kd" and summary["image_size"] == 12
    _assert_learned(summary, out)


# ----------------------------------------------------------------------------------------------
# student families of the reference work
# ----------------------------------------------------------------------------------------------
FAMILIES = {
    "resnet18": ({}, S),
    "mobilenetv3_small_050": ({}, S),
    "vit_tiny_patch16_224": ({"img_size": S, "patch_size": 4, "depth": 1}, S),
    "swin_tiny_patch4_window7_224": ({"img_size": 32, "patch_size": 4, "window_size": 4, "embed_dim": 24,
                                      "depths": [1, 1], "num_heads": [1, 1]}, 32),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_student_families_train_on_store(tmp_path, dr_store, name):
    from drkit.models import create_model

    kwargs, size = FAMILIES[name]
    out = tmp_path / name
    if name.startswith("vit"):  # through the CLI: --model-kwargs JSON
        from drkit.cli import main

        rc = main(["train", "--data", "digits:train", "--reinforced", str(dr_store), "--model", name,
                   "--model-kwargs", json.dumps(kwargs), "--image-size", str(size), "--epochs", "1",
                   "--batch-size", "16", "--opt", "adamw", "--limit-batches", "2", "--workers", "0",
                   "--device", "cpu", "--quiet", "--out", str(out)])
        assert rc == 0
    else:
        train(TrainConfig.build(data="digits:train", out=out, reinforced=dr_store, model=name, model_kwargs=kwargs,
                                epochs=1, batch_size=16, limit_batches=2, opt="sgd", **{**FAST, "image_size": size}))
    row = read_metrics(out)[-1]
    assert math.isfinite(row["train_loss"]) and row["train_samples"] == 32
    fresh = create_model(name, num_classes=10, in_chans=1, seed=0, **kwargs).state_dict()
    trained = _weights(out)
    assert trained.keys() == fresh.keys()
    changed = [k for k, v in fresh.items() if v.is_floating_point() and not torch.equal(v, trained[k])]
    assert len(changed) > len(fresh) // 3
    from drkit.checkpoint import load_checkpoint

    model, cfg = load_checkpoint(out)  # ckpt:DIR round trip at the student's own size
    assert cfg.image_size == size and model(torch.rand(2, 1, size, size)).shape == (2, 10)


# ----------------------------------------------------------------------------------------------
# resume = uninterrupted
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["dr-sgd-ema", "erm-mix-adamw"])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, dr_store, monkeypatch, case):
    if case == "dr-sgd-ema":
        kw = dict(reinforced=dr_store, opt="sgd", ema=0.9)
    else:
        kw = dict(recipe="rrc+ra+re+mix", opt="adamw")
    kw.update(model="drkit_cnn_tiny", val="digits:test?n=64", epochs=3, batch_size=32, limit_batches=3, seed=3,
              **FAST)
    train(TrainConfig.build(data="digits:train", out=tmp_path / "a", **kw))

    real = train_loop.save_state
    calls = {"n": 0}

    def interrupted(*a, **k):
        real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # killed right after epoch 1 was committed

    monkeypatch.setattr(train_loop, "save_state", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "b", **kw))
    assert not (tmp_path / "b" / "model.safetensors").exists()
    with pytest.raises(DrkitError, match="already holds"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "b", **kw))
    with pytest.raises(DrkitError, match="other settings"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "b", resume=True, **{**kw, "seed": 4}))
    train(TrainConfig.build(data="digits:train", out=tmp_path / "b", resume=True, **kw))
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "a")) == strip(read_metrics(tmp_path / "b"))
    assert len(read_metrics(tmp_path / "b")) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_resume_puts_the_optimizer_state_where_torch_does(tmp_path, monkeypatch):
    """A resumed AdamW's state lies where a fresh one's does: moments on the GPU, ``step`` on the CPU
    (on the GPU, a plain AdamW syncs once per parameter a step); and the run ends where one not interrupted does."""
    kw = dict(model="drkit_cnn_tiny", opt="adamw", epochs=2, batch_size=32, limit_batches=3, seed=3, workers=0,
              device="cuda", amp="off", quiet=True)
    placed: dict[str, dict[str, str]] = {}
    real_epoch, real_save, real_restore = train_loop._train_epoch, train_loop.save_state, train_loop._restore

    def where(fit) -> dict[str, str]:
        return {name: v.device.type for st in fit.optimizer.state.values() for name, v in st.items()}

    def after_epoch(run, model, fit, *a, **k):
        out = real_epoch(run, model, fit, *a, **k)
        placed.setdefault(Path(run.cfg.out).name, where(fit))
        return out

    def killed(*a, **k):
        real_save(*a, **k)
        raise KeyboardInterrupt  # killed right after epoch 1 was committed

    def restore(run, fit):
        doc = real_restore(run, fit)
        placed["resumed"] = where(fit)
        return doc

    monkeypatch.setattr(train_loop, "_train_epoch", after_epoch)
    train(TrainConfig.build(data="digits:train", out=tmp_path / "a", **kw))
    monkeypatch.setattr(train_loop, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "b", **kw))
    monkeypatch.setattr(train_loop, "save_state", real_save)
    monkeypatch.setattr(train_loop, "_restore", restore)
    train(TrainConfig.build(data="digits:train", out=tmp_path / "b", resume=True, **kw))
    assert placed["resumed"] == placed["a"] == {"step": "cpu", "exp_avg": "cuda", "exp_avg_sq": "cuda"}
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)  # cuDNN may reorder sums


def test_one_loader_a_run_serves_every_epoch_and_workers_change_nothing(tmp_path, dr_store, monkeypatch):
    """The train and the val loader are made once a run, their workers persistent (no worker start an epoch,
    which costs seconds where workers spawn), and 0 or 2 workers give the same run, dropout included: the
    loader draws nothing from the torch RNG that dropout uses, and persistent workers follow the epoch."""
    made: list[dict] = []
    real = train_loop.DataLoader
    monkeypatch.setattr(train_loop, "DataLoader", lambda *a, **k: made.append(k) or real(*a, **k))
    kw = dict(data="digits:train", reinforced=dr_store, val="digits:test?n=64", model="drkit_cnn_tiny",
              model_kwargs={"drop_rate": 0.5}, epochs=3, batch_size=32, limit_batches=3, seed=1, image_size=S,
              device="cpu", quiet=True)
    train(TrainConfig.build(out=tmp_path / "w0", workers=0, **kw))
    assert len(made) == 2  # 3 epochs, one train and one val loader
    kept: list = []  # the run's frame kept alive, as a reference cycle through it does until collected
    monkeypatch.setattr(train_loop, "write_curves", lambda *a, **k: kept.append(sys._getframe(1)))
    train(TrainConfig.build(out=tmp_path / "w2", workers=2, **kw))
    assert len(made) == 4 and made[2]["persistent_workers"] and made[3]["persistent_workers"]
    assert kept and not multiprocessing.active_children()  # the persistent workers ended with the run
    wa, wb = _weights(tmp_path / "w0"), _weights(tmp_path / "w2")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    rows = strip(read_metrics(tmp_path / "w0"))
    assert rows == strip(read_metrics(tmp_path / "w2")) and len({r["train_loss"] for r in rows}) == 3


# ----------------------------------------------------------------------------------------------
# DR targets, loss math, view choice
# ----------------------------------------------------------------------------------------------
def _one_hot_store(src, teachers, out: Path) -> Path:
    """A real store whose 'teacher' put probability 1.0 on the true label of every view."""
    from safetensors.numpy import load_file

    from drkit.fileio import sha256_file
    from drkit.store.shards import shard_metadata, write_shard

    root = reinforce(ReinforceConfig(data=src, teacher=teachers, out=out, recipe="padcrop+ra+re", views=3, topk=3,
                                     image_size=S, workers=0, images_per_shard=16, device="cpu", progress=False,
                                     command=["test"]))
    manifest = json.loads((root / "manifest.json").read_text())
    labels = src.labels
    for info in manifest["shards"]:
        path = root / info["file"]
        arrays = dict(load_file(str(path)))
        y = labels[info["start"]:info["stop"]]
        ids = np.stack([y, (y + 1) % 10, (y + 2) % 10], -1)[:, None, :].repeat(3, 1)
        arrays["topk_ids"] = ids.astype(arrays["topk_ids"].dtype)
        probs = np.zeros_like(arrays["topk_probs"])
        probs[..., 0] = 1.0
        arrays["topk_probs"] = probs
        write_shard(path, arrays, shard_metadata(info["start"], info["stop"]))
        info.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    write_manifest(root, manifest)
    return root


def test_one_hot_store_gives_erm_targets(tmp_path, digits_train, teacher_pair):
    store = open_store(_one_hot_store(digits_train, teacher_pair, tmp_path / "onehot"))
    assert store.verify(digits_train)["ok"]
    dr = ReinforcedDataset(digits_train, store, S, seed=0, as_uint8=True)
    erm = AugmentedDataset(digits_train, store.recipe, S, seed=0, as_uint8=True)
    logits = torch.randn(len(dr), 10, generator=torch.Generator().manual_seed(0))
    every = list(range(len(dr)))
    for epoch in range(store.num_views):
        dr.set_epoch(epoch)
        views = [dr.views(pos)[0] for pos in every]
        raw = collate_raw(dr.raw_batch(every))
        a_images, dr_t = dr.render(raw)
        erm_t = torch.full_like(dr_t, -1.0)
        for v in set(views):  # ERM renders a view index for every sample at once: group DR's by view
            rows = [pos for pos in every if views[pos] == v]
            params = [store.record(pos, v)["params"] for pos in rows]
            b_images, erm_t[rows] = erm.render(collate_raw(erm.raw_batch(rows, view=v, params=params)))
            assert torch.equal(a_images[rows], b_images)
        assert torch.equal(dr_t, erm_t) and raw["label"].tolist() == np.asarray(digits_train.labels)[:len(dr)].tolist()
        assert all(torch.equal(a_images[pos], store.render_uint8(digits_train, pos, views[pos], S)) for pos in every)
        assert torch.equal(SoftTargetLoss()(logits, dr_t), LabelSmoothingCrossEntropy(0.0)(logits, erm_t))


def test_reinforced_dataset_library_use(tmp_path, digits_train, teacher_pair):
    import drkit
    from drkit.errors import StoreError
    from drkit.sources import load_source

    assert drkit.ReinforcedDataset is ReinforcedDataset and drkit.SoftTargetLoss is SoftTargetLoss
    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "mix", recipe="rrc+mix",
                                     views=2, topk=4, image_size=S, workers=0, images_per_shard=16, device="cpu",
                                     progress=False, command=["test"]))
    store = open_store(root)
    ds = ReinforcedDataset(digits_train, store)  # library defaults: float images, store's size and seed
    mixed = 0
    for pos in range(len(ds)):
        (v,) = ds.views(pos)
        x, y = ds[pos]
        assert x.dtype == torch.float32 and x.shape == (1, S, S) and 0 <= x.min() and x.max() <= 1
        assert torch.equal(x, store.replay(digits_train, pos, v))  # mixing partners included
        assert torch.allclose(y, store.soft_target(pos, v)) and abs(float(y.sum()) - 1) < 1e-3
        mixed += store.record(pos, v).get("mix_mode", 0) > 0
    assert mixed > 0
    loss = SoftTargetLoss()(torch.zeros(4, 10), torch.stack([ds[i][1] for i in range(4)]))
    assert torch.allclose(loss, torch.tensor(math.log(10)), atol=1e-5)
    # skipped samples (listed in the manifest) are left out
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["skipped"] = [2, 5]
    write_manifest(root, manifest)
    ds = ReinforcedDataset(digits_train, open_store(root))
    assert len(ds) == len(digits_train) - 2 and not {2, 5} & set(ds.sample_ids.tolist())
    with pytest.raises(StoreError, match="fingerprint"):
        ReinforcedDataset(load_source("digits:train?n=40"), open_store(root))


def test_soft_target_loss_matches_dense_reference():
    g = torch.Generator().manual_seed(0)
    n, c, k = 6, 12, 4
    logits = torch.randn(n, c, generator=g, dtype=torch.float64)
    p_full = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64) * 2, -1)
    top_p, top_i = p_full.topk(k, -1)
    dense = densify(top_i, top_p.float(), c, smooth=True).double()
    # reference: top-k kept, the missing mass spread evenly over the other C-K classes
    ref = torch.full((n, c), 0.0, dtype=torch.float64)
    for r in range(n):
        rest = (1 - top_p[r].sum()) / (c - k)
        ref[r] = rest
        ref[r, top_i[r]] = top_p[r]
    assert torch.allclose(dense, ref, atol=1e-6) and torch.allclose(dense.sum(-1), torch.ones(n, dtype=torch.float64))
    want = -(ref * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(SoftTargetLoss()(logits, dense).double(), want, atol=1e-5)
    # K = C: CE = KL(p || q) + H(p)
    dense_all = densify(*reversed(p_full.topk(c, -1)), c).double()
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), p_full, reduction="batchmean")
    entropy = -(p_full * p_full.log()).sum(-1).mean()
    assert torch.allclose(SoftTargetLoss()(logits, dense_all).double(), kl + entropy, atol=1e-5)
    # temperature: T^2 * CE(p, softmax(z / T)), and T = 1 is the plain CE
    t = 3.0
    want_t = t * t * -(ref * torch.log_softmax(logits / t, -1)).sum(-1).mean()
    assert torch.allclose(SoftTargetLoss(t)(logits, dense).double(), want_t, atol=1e-5)
    # gradient of the loss w.r.t. logits at T=1 is softmax(z) - p (per sample, / n)
    z = logits.clone().float().requires_grad_(True)
    SoftTargetLoss()(z, dense.float()).backward()
    assert torch.allclose(z.grad.double(), (torch.softmax(logits, -1) - dense) / n, atol=1e-6)


def test_views_are_a_permutation_per_cycle(dr_store):
    from drkit.sources import load_source

    src = load_source("digits:train")
    store = open_store(dr_store)
    ns = store.num_views
    ds = ReinforcedDataset(src, store, seed=5)
    ids = range(0, len(ds), 37)
    for cycle in range(2):  # every NS consecutive epochs use each view exactly once
        seen = {i: [] for i in ids}
        for epoch in range(cycle * ns, (cycle + 1) * ns):
            ds.set_epoch(epoch)
            for i in ids:
                seen[i] += ds.views(i)
        assert all(sorted(v) == list(range(ns)) for v in seen.values())
    first = [epoch_views(5, 0, e, ns) for e in range(ns)]
    assert first != [epoch_views(6, 0, e, ns) for e in range(ns)] or ns < 3  # the seed matters
    # k views per decoded image: k distinct views per epoch, all NS within NS/k epochs
    ds2 = ReinforcedDataset(src, store, seed=5, views_per_image=2)
    got = []
    for e in range(ns // 2):
        ds2.set_epoch(e)
        got += ds2.views(3)
    assert sorted(got) == list(range(ns))
    x, y = ds2[3]
    assert x.shape == (2, 1, store.image_size, store.image_size) and x.dtype == torch.float32 and y.shape == (2, 10)
    # plain fraction: a deterministic share of hard-labelled plain images
    ds3 = ReinforcedDataset(src, store, seed=5, plain_fraction=0.25, as_uint8=True)
    plain = [ds3.views(i)[0] < 0 for i in range(len(ds3))]
    assert 0.18 < np.mean(plain) < 0.32
    ds3.set_epoch(1)  # drawn afresh each epoch and per seed, the same again for the same (seed, epoch)
    assert plain != [ds3.views(i)[0] < 0 for i in range(len(ds3))]
    ds3.set_epoch(0)
    assert plain == [ds3.views(i)[0] < 0 for i in range(len(ds3))]
    ds4 = ReinforcedDataset(src, store, seed=6, plain_fraction=0.25, as_uint8=True)
    assert plain != [ds4.views(i)[0] < 0 for i in range(len(ds4))]
    i = plain.index(True)
    x, y = ds3[i]
    assert y.max() == 1.0 and int(y.argmax()) == int(src.labels[i])
    assert torch.equal(x, eval_transform(src.load_uint8(i), store.image_size))  # the plain (eval) view
    images, _ = ds3.render(collate_raw(ds3.raw_batch(range(40))))  # plain and stored views in one batch
    assert all(torch.equal(images[p], ds3[p][0]) for p in range(40)) and 0 < sum(plain[:40]) < 40
    # batches: one order for every rank, strided, equal step counts
    b0, b1 = (epoch_batches(101, 1, 2, 8, r, 2, drop_last=False) for r in (0, 1))
    assert len(b0) == len(b1) and set(np.concatenate(b0 + b1).tolist()) == set(range(101))
    assert [len(b) for b in epoch_batches(101, 1, 2, 8)] == [8] * 12  # short last batch dropped


# ----------------------------------------------------------------------------------------------
# DDP, fine-tuning, refusals
# ----------------------------------------------------------------------------------------------
def test_ddp_torchrun_two_cpu_ranks(tmp_path, dr_store):
    """Two gloo ranks train what one process trains: each rank takes a strided half of every
    global batch and DDP averages the gradients. The student has no BatchNorm (a tiny ViT), since
    per-rank BatchNorm statistics differ by design (SyncBatchNorm needs a GPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    args = ["train", "--data", "digits:train", "--val", "digits:test?n=100", "--reinforced", str(dr_store),
            "--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps({"img_size": S, "patch_size": 4, "depth": 1}),
            "--epochs", "2", "--batch-size", "32", "--limit-batches", "4", "--workers", "0", "--device", "cpu", "--quiet"]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "drkit.cli"]
    proc = subprocess.run(ddp + args + ["--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "drkit.cli", *args, "--out", str(tmp_path / "one")], env=env,
                            capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    out = tmp_path / "ddp"
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "curves.png"):
        assert (out / name).exists(), name
    rows = read_metrics(out)
    assert len(rows) == 2 and rows[0]["train_samples"] == 4 * 32  # both ranks' views counted
    extra = json.loads((out / "config.json").read_text())["extra"]
    assert extra["mode"] == "dr" and extra["train"]["world_size"] == 2  # really two ranks, no silent fallback
    assert json.loads((tmp_path / "one" / "config.json").read_text())["extra"]["train"]["world_size"] == 1
    wa, wb = _weights(out), _weights(tmp_path / "one")
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4) for k in wa), \
        max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert abs(rows[-1]["train_loss"] - read_metrics(tmp_path / "one")[-1]["train_loss"]) < 1e-4


def test_init_reinitialises_a_head_of_another_class_count(tmp_path, capsys):
    from conftest import make_teacher

    from drkit.checkpoint import load_checkpoint

    spec = make_teacher(tmp_path / "five", [str(i) for i in range(5)], seed=1)
    out = tmp_path / "ft"
    train(TrainConfig.build(data="digits:train", out=out, model="drkit_cnn_tiny", init=spec, epochs=1, limit_batches=1,
                      batch_size=16, lr=1e-12, **{**FAST, "quiet": False}))
    assert "re-initialised the head" in capsys.readouterr().err
    src_model, _ = load_checkpoint(tmp_path / "five")
    got = _weights(out)
    init = json.loads((out / "config.json").read_text())["extra"]["train"]["init_from"]
    recorded = json.loads((tmp_path / "five" / "config.json").read_text())["weights_sha256"]
    assert init["weights_sha256"] == recorded and init["checkpoint"] == str((tmp_path / "five").resolve())
    assert torch.allclose(got["stem.0.weight"], src_model.backbone.state_dict()["stem.0.weight"])
    assert got["head.weight"].shape == (10, 64)


def test_init_from_a_checkpoint_of_other_channels_or_another_model_is_refused_in_one_line(tmp_path, capsys):
    from conftest import make_teacher

    base = dict(data="digits:train", model="drkit_cnn_tiny", epochs=1, limit_batches=1, batch_size=16, **FAST)
    rgb = make_teacher(tmp_path / "rgb", [str(i) for i in range(10)], seed=1, in_chans=3)
    with pytest.raises(DrkitError, match="takes 3-channel images but digits:train has 1.*mode=L or RGB"):
        train(TrainConfig.build(out=tmp_path / "a", init=rgb, **base))
    small = make_teacher(tmp_path / "small", [str(i) for i in range(10)], seed=1, model="drkit_cnn_small")
    with pytest.raises(DrkitError, match="does not fit drkit_cnn_tiny"):
        train(TrainConfig.build(out=tmp_path / "b", init=small, **base))
    assert "re-initialised the head" not in capsys.readouterr().err  # same class count: no such claim
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_run_that_fails_saving_its_first_epoch_can_simply_be_run_again(tmp_path, monkeypatch):
    """A full disk at the first save leaves no metrics or state that would make the rerun refuse."""
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    cfg = TrainConfig.build(data="digits:train", out=tmp_path / "r", model="drkit_cnn_tiny", epochs=1,
                            limit_batches=1, batch_size=16, **FAST)
    monkeypatch.setattr(train_loop, "save_state", full)
    with pytest.raises(OSError):
        train(cfg)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
    monkeypatch.undo()
    train(cfg)  # not "already holds a training run", not "--resume"
    assert len(read_metrics(tmp_path / "r")) == 1


def test_a_moved_run_resumes_and_its_state_never_names_a_file_outside_it(tmp_path):
    base = dict(data="digits:train", model="drkit_cnn_tiny", epochs=1, limit_batches=1, batch_size=16, **FAST)
    train(TrainConfig.build(out=tmp_path / "a", **base))
    (tmp_path / "a").rename(tmp_path / "b")
    train(TrainConfig.build(out=tmp_path / "b", resume=True, **base))  # --out is not a setting of the result
    state = tmp_path / "b" / "state" / "state.json"
    good = json.loads(state.read_text())
    state.write_text(json.dumps({**good, "tensors": "../../a/x.safetensors"}))
    with pytest.raises(DrkitError, match="resolves outside"):
        train(TrainConfig.build(out=tmp_path / "b", resume=True, **base))
    state.write_text(json.dumps({**good, "run": {**good["run"], "amp": "bfloat16"}}))  # trained at another precision
    with pytest.raises(DrkitError, match=r"other settings \(amp\)"):
        train(TrainConfig.build(out=tmp_path / "b", resume=True, **base))
    for bad in ([], "{x", {"epoch": "x"}, {"epoch": -5}, {"rows": 5}, {"step": None}, {"optimizer": 5}, {"run": 5}):
        state.write_text(bad if isinstance(bad, str) else json.dumps(bad if isinstance(bad, list) else {**good, **bad}))
        with pytest.raises(DrkitError, match="state.json is not"):
            train(TrainConfig.build(out=tmp_path / "b", resume=True, **base))


def test_refusals(tmp_path, dr_store, erm_run):
    base = dict(model="drkit_cnn_tiny", epochs=1, limit_batches=1, batch_size=16, **FAST)
    with pytest.raises(DrkitError, match="exclude each other"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", reinforced=dr_store,
                          kd_teacher=[f"ckpt:{erm_run[1]}"], **base))
    with pytest.raises(DrkitError, match="fingerprint|samples"):
        train(TrainConfig.build(data="digits:train?n=48", out=tmp_path / "x", reinforced=dr_store, **base))
    with pytest.raises(DrkitError, match="unknown model"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", **{**base, "model": "no_such_net"}))
    with pytest.raises(DrkitError, match="no training state"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", resume=True, **base))
    with pytest.raises(DrkitError, match="views_per_image"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", reinforced=dr_store, views_per_image=8,
                          **{**base, "batch_size": 16}))
    with pytest.raises(DrkitError, match="DR .*only"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", plain_fraction=0.2, **base))
    with pytest.raises(DrkitError, match="model-kwargs"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", model_kwargs="{depth: 1}", **base))
    # a model that cannot take the images (it builds, then fails on them): refused before training, not a traceback
    with pytest.raises(DrkitError, match=r"fails on 1x16x16 images \(AssertionError.*--image-size \(a timm ViT"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", **{**base, "model": "vit_tiny_patch16_224"}))
    other = tmp_path / "other-classes"  # a validation folder whose class names are not the digits'
    for name in ("cat", "dog"):
        (other / name).mkdir(parents=True)
        Image.new("L", (8, 8), 128).save(other / name / "a.png")
    with pytest.raises(DrkitError, match="other classes"):
        train(TrainConfig.build(data="digits:train", out=tmp_path / "x", val=f"imagefolder:{other}?mode=L", **base))
    with pytest.raises(DrkitError, match="already holds"):
        train(TrainConfig.build(data="digits:train", out=erm_run[1], **base))
    assert not (tmp_path / "x").exists()


def test_soften_targets_is_both_sided_hinton_softening():
    from drkit.train import soft_target_cross_entropy

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    p = torch.tensor([[0.8, 0.15, 0.05], [0.6, 0.3, 0.1]])
    t = 2.0
    q = p ** (1 / t)
    q = q / q.sum(-1, keepdim=True)
    want = -(q * torch.log_softmax(logits / t, -1)).sum(-1).mean() * t * t
    got = soft_target_cross_entropy(logits, p, t, soften_targets=True)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(soft_target_cross_entropy(logits, p, t), want, atol=1e-3)  # student side only
    assert torch.allclose(soft_target_cross_entropy(logits, p, 1.0, soften_targets=True),
                          soft_target_cross_entropy(logits, p))


@pytest.mark.parametrize("recipe,per_image", [("padcrop+ra+re", 1), ("rrc+ra+re+mix", 2)])
def test_batched_dr_items_equal_the_per_record_oracle(tmp_path, digits_train, teacher_pair, recipe, per_image):
    """A DR batch's loader work (views chosen, records read and decoded at once, across shards)
    gives exactly the items that record-by-record reading gives (issue 21: DR at ERM's cost)."""
    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "s", recipe=recipe,
                                     views=3, topk=3, image_size=S, workers=0, images_per_shard=20, device="cpu",
                                     progress=False, command=["t"]))
    store = open_store(root)
    ds = ReinforcedDataset(digits_train, store, seed=5, views_per_image=per_image, as_uint8=True)
    ds.set_epoch(4)
    positions = [47, 3, 20, 19, 0, 33, 21]  # three shards, out of order
    items = ds.raw_batch(positions)
    for pos, it in zip(positions, items):
        i = int(ds.sample_ids[pos])
        views = epoch_views(5, i, 4, store.num_views, per_image)
        recs = [store.record(i, v) for v in views]
        assert it["sample"] == i and it["params"] == [r["params"] for r in recs]
        assert np.array_equal(it["topk_ids"], np.stack([r["topk_ids"] for r in recs]))
        assert np.array_equal(it["topk_probs"], np.stack([r["topk_probs"] for r in recs]))
        assert torch.equal(it["images"][i], digits_train.load_uint8(i))
    mixed = [p for it in items for p in it["params"] if "mix" in p and p["mix"]["mode"]]
    assert ("mix" not in recipe) or mixed  # the mixing case really mixes


def test_epoch_views_many_is_epoch_views_per_sample():
    from drkit.train.order import epoch_views_many

    ids = np.arange(0, 3000, 7)
    for seed, epoch, ns, k in [(0, 0, 10, 1), (3, 5, 4, 2), (1, 17, 30, 3), (2 ** 40, 2, 15, 1), (4, 7, 3, 2),
                               (5, 3, 10, 3)]:
        want = np.array([epoch_views(seed, int(i), epoch, ns, k) for i in ids])
        assert np.array_equal(epoch_views_many(seed, ids, epoch, ns, k), want)


@pytest.mark.parametrize("ns, k", [(3, 2), (10, 3), (5, 5)])
def test_an_epochs_views_of_one_image_are_distinct_even_when_k_does_not_divide_ns(ns, k):
    from drkit.train.order import epoch_views_many

    for epoch in range(12):
        views = epoch_views_many(1, np.arange(500), epoch, ns, k)
        assert all(len(set(row)) == k for row in views.tolist()), epoch


@pytest.mark.parametrize("n, world", [(1, 4), (5, 4), (7, 3), (8, 4)])
def test_every_rank_takes_the_same_number_of_steps_on_a_tiny_set(n, world):
    """DDP ranks that step a different number of times hang in the all-reduce."""
    counts = {len(epoch_batches(n, 0, 0, 2, r, world, drop_last=False)) for r in range(world)}
    assert len(counts) == 1 and counts != {0}
