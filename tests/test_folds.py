"""Out-of-fold teachers: ``train --folds``, routing in reinforce/KD, refusal on other data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from drkit.cli import main
from drkit.folds import fold_of, split_for
from drkit.reinforce import ReinforceConfig, reinforce
from drkit.sources import load_source
from drkit.store import open_store
from drkit.teachers import load_teacher

DATA = "digits:train?n=120"


def test_fold_of_is_fixed_balanced_and_prefix_stable():
    ids = np.arange(6000)
    f = fold_of(ids, 3)
    assert np.array_equal(f, fold_of(ids, 3))  # no RNG, no seed
    assert np.array_equal(f[:100], fold_of(np.arange(100), 3))  # a prefix keeps its folds
    counts = np.bincount(f, minlength=3)
    assert counts.min() > 1800 and counts.max() < 2200
    assert not np.array_equal(f, np.arange(6000) % 3)  # a hash, not a stripe


def test_folds_refuse_a_non_prefix_subset():
    src = load_source("digits:train").subset([5, 3, 1])
    with pytest.raises(Exception, match="prefix"):
        split_for(src, 2)


@pytest.fixture(scope="module")
def fold_teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("folds") / "t"
    rc = main(["train", "--data", DATA, "--model", "drkit_cnn_tiny", "--epochs", "1", "--batch-size", "32",
               "--workers", "0", "--device", "cpu", "--folds", "2", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def test_train_folds_writes_members_and_split(fold_teacher):
    doc = json.loads((fold_teacher / "folds.json").read_text())
    assert doc["split"]["folds"] == 2 and doc["split"]["trained_prefix"] == 120
    assert doc["split"]["root_spec"] == "digits:train"
    f = fold_of(np.arange(120), 2)
    assert [m["trained_samples"] for m in doc["members"]] == [int((f != 0).sum()), int((f != 1).sum())]
    for k in range(2):
        cfg = json.loads((fold_teacher / f"fold{k}" / "config.json").read_text())
        assert cfg["extra"]["final_metrics"]["train_samples"] <= int((f != k).sum())


def test_reinforce_labels_each_image_only_with_members_that_never_saw_it(tmp_path, fold_teacher):
    src = load_source(DATA)
    root = reinforce(ReinforceConfig(data=src, teacher=[f"ckpt:{fold_teacher}"], out=tmp_path / "s", recipe="resize",
                                     views=1, topk=10, workers=0, batch_size=64, progress=False, device="cpu",
                                     command=["test"]))
    store = open_store(root)
    m = json.loads((root / "manifest.json").read_text())
    assert m["diagnostics"]["out_of_fold"] is True
    assert [t["out_of_fold"]["fold"] for t in m["teachers"]] == [0, 1]
    members = [load_teacher(f"ckpt:{fold_teacher / f'fold{k}'}") for k in range(2)]
    folds = fold_of(np.arange(len(src)), 2)
    x = torch.stack([store.replay(src, i, 0) for i in range(len(src))])
    per_member = [mem(x).numpy() for mem in members]
    for i in range(len(src)):
        rec = store.record(i, 0)
        dense = np.zeros(10)
        dense[rec["topk_ids"]] = rec["topk_probs"]
        own, other = per_member[folds[i]][i], per_member[1 - folds[i]][i]
        assert np.abs(dense - own).max() < 5e-4, i  # the member that held image i out (fp16 rounding)
        assert np.abs(dense - other).max() > 2e-3, i  # never the one that trained on it


def test_samples_outside_the_trained_prefix_use_every_member(tmp_path, fold_teacher):
    src = load_source("digits:train?n=130")
    ens = load_teacher([f"ckpt:{fold_teacher}"])
    ens.bind(src)
    mask, fallback = ens.eligible(np.arange(130))
    assert mask[120:].all() and mask[:120].sum(1).tolist() == [1] * 120
    f = fold_of(np.arange(120), 2)
    assert np.array_equal(mask[np.arange(120), f], np.ones(120, bool))
    # a mixing partner one member trained on: the member that saw neither is used where it exists
    mask, fallback = ens.eligible([0], partner_ids=[125])
    assert mask[0].tolist() == [f[0] == 0, f[0] == 1] and not fallback[0]
    j = int(np.flatnonzero(f != f[0])[0])
    mask, fallback = ens.eligible([0], partner_ids=[j])
    assert fallback[0] and mask[0, f[0]] and not mask[0, 1 - f[0]]


def test_other_data_is_refused_unless_folds_all(tmp_path, fold_teacher, capsys):
    rc = main(["reinforce", "--data", "digits:test?n=40", "--teacher", f"ckpt:{fold_teacher}", "--samples", "1",
               "--topk", "3", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot be routed" in err and "folds=all" in err and len(err.strip().splitlines()) == 1
    rc = main(["reinforce", "--data", "digits:test?n=40", "--teacher", f"ckpt:{fold_teacher}?folds=all",
               "--samples", "1", "--topk", "3", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "y"),
               "--quiet"])
    assert rc == 0
    m = json.loads((tmp_path / "y" / "manifest.json").read_text())
    assert m["diagnostics"]["out_of_fold"] is False and m["teachers"][0]["out_of_fold"]["use_all"] is True


def test_online_kd_routes_fold_members(tmp_path, fold_teacher):
    rc = main(["train", "--data", DATA, "--kd-teacher", f"ckpt:{fold_teacher}", "--model", "drkit_cnn_tiny",
               "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
               "--out", str(tmp_path / "kd"), "--quiet"])
    assert rc == 0 and (tmp_path / "kd" / "model.safetensors").exists()


def test_mixed_views_count_partners_seen_by_the_labelling_member(tmp_path, fold_teacher):
    src = load_source(DATA)
    root = reinforce(ReinforceConfig(data=src, teacher=[f"ckpt:{fold_teacher}"], out=tmp_path / "m",
                                     recipe="resize+mix", views=2, topk=3, workers=0, batch_size=64, progress=False,
                                     device="cpu", command=["test"]))
    m = json.loads((root / "manifest.json").read_text())
    store = open_store(root)
    f = fold_of(np.arange(len(src)), 2)
    want = 0
    for i in range(len(src)):
        for v in range(2):
            rec = store.record(i, v)
            want += int(bool(rec["mix_mode"]) and f[rec["partner"]] != f[i])
    assert m["diagnostics"]["partner_seen_views"] == want > 0


def test_tampered_folds_file_is_refused_in_one_line(tmp_path, fold_teacher, capsys):
    import shutil

    bad = tmp_path / "t"
    shutil.copytree(fold_teacher, bad)
    doc = json.loads((bad / "folds.json").read_text())
    del doc["split"]["trained_prefix"]
    (bad / "folds.json").write_text(json.dumps(doc))
    rc = main(["reinforce", "--data", DATA, "--teacher", f"ckpt:{bad}", "--samples", "1", "--workers", "0",
               "--device", "cpu", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("drkit: error:") and "trained_prefix" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------
# issue 20: the guarantee itself, not the routing rule restated
# ----------------------------------------------------------------------------------------------
def test_member_k_never_decodes_an_image_of_fold_k(tmp_path, monkeypatch):
    """Every image a member's training decodes (root index) lies outside its fold."""
    from drkit.sources import base
    from drkit.train import TrainConfig
    from drkit.train.folds import train_folds
    from drkit.train.loop import train

    decoded: dict[str, set[int]] = {}
    current: list[str] = []
    root = load_source("digits:train")
    original = type(root)._uint8

    def spy(self, i):
        if current and self.fingerprint == root.fingerprint:
            decoded.setdefault(current[0], set()).add(int(i))
        return original(self, i)

    monkeypatch.setattr(type(root), "_uint8", spy)
    assert base  # the root source class is the one patched: subsets decode through it

    def train_one(cfg):
        current[:] = [Path(cfg.out).name]
        return train(cfg)

    cfg = TrainConfig.build(data=DATA, out=tmp_path / "t", model="drkit_cnn_tiny", epochs=1, batch_size=32, workers=0,
                      device="cpu", folds=2, quiet=True)
    train_folds(cfg.validate(), train_one)
    folds = fold_of(np.arange(120), 2)
    for k in range(2):
        ids = np.array(sorted(decoded[f"fold{k}"]))
        assert ids.size > 30 and (ids < 120).all()
        assert not (folds[ids] == k).any(), f"member {k} decoded images of its own fold"


def test_stored_mixed_labels_come_from_the_member_that_never_saw_the_image(tmp_path, fold_teacher):
    """Plain and mixed views: each stored label is the output of the member that held the image out
    (with 2 folds no member saw neither image nor a partner of the other fold: those views are the
    counted fallbacks)."""
    src = load_source(DATA)
    root = reinforce(ReinforceConfig(data=src, teacher=[f"ckpt:{fold_teacher}"], out=tmp_path / "m",
                                     recipe="resize+mix", views=2, topk=10, workers=0, batch_size=64, progress=False,
                                     device="cpu", command=["test"]))
    store = open_store(root)
    members = [load_teacher(f"ckpt:{fold_teacher / f'fold{k}'}") for k in range(2)]
    f = fold_of(np.arange(len(src)), 2)
    fallbacks = mixed = 0
    for i in range(len(src)):
        for v in range(2):
            rec = store.record(i, v)
            x = store.replay(src, i, v)[None]
            dense = np.zeros(10)
            dense[rec["topk_ids"]] = rec["topk_probs"]
            own = members[f[i]](x)[0].numpy()
            assert np.abs(dense - own).max() < 5e-4, (i, v)
            if rec["mix_mode"]:
                mixed += 1
                fallbacks += int(f[rec["partner"]] != f[i])
    m = json.loads((root / "manifest.json").read_text())
    assert mixed > 0 and m["diagnostics"]["partner_seen_views"] == fallbacks


def test_online_kd_targets_come_from_the_member_that_never_saw_the_image(tmp_path, fold_teacher, monkeypatch):
    """The KD teacher is handed the batch's true sample ids: each image it labels is the one its
    id names (``resize`` views are the images themselves)."""
    from drkit.teachers.ensemble import TeacherEnsemble

    calls: list[tuple[torch.Tensor, np.ndarray]] = []
    original = TeacherEnsemble.forward

    def spy(self, x01, sample_ids=None, partner_ids=None):
        out = original(self, x01, sample_ids=sample_ids, partner_ids=partner_ids)
        calls.append((x01.detach().cpu().clone(), np.asarray(sample_ids.cpu() if hasattr(sample_ids, "cpu")
                                                                 else sample_ids), out.detach().float().cpu()))
        return out

    monkeypatch.setattr(TeacherEnsemble, "forward", spy)
    rc = main(["train", "--data", DATA, "--kd-teacher", f"ckpt:{fold_teacher}", "--model", "drkit_cnn_tiny",
               "--recipe", "resize", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
               "--out", str(tmp_path / "kd"), "--quiet"])
    assert rc == 0 and calls
    src = load_source(DATA)
    monkeypatch.undo()  # the members below are ensembles too: their calls are not the run's
    members = [load_teacher(f"ckpt:{fold_teacher / f'fold{k}'}") for k in range(2)]
    seen = 0
    for x, ids, out in calls:
        folds = fold_of(ids, 2)
        with torch.inference_mode():
            per_member = [mem(x).float() for mem in members]
        for b, i in enumerate(ids.tolist()):
            want = src.load_uint8(i).float() / 255
            assert torch.equal(x[b], want), (b, i)
            own, other = per_member[folds[b]][b], per_member[1 - folds[b]][b]
            assert (out[b] - own).abs().max() < 5e-4, i  # the target is the held-out member's
            assert (out[b] - other).abs().max() > 2e-3, i  # never the member that trained on image i
            seen += 1
    assert seen >= 96


def test_verify_replay_works_on_a_folds_labelled_store(tmp_path, fold_teacher, capsys):
    src = load_source(DATA)
    root = reinforce(ReinforceConfig(data=src, teacher=[f"ckpt:{fold_teacher}"], out=tmp_path / "s",
                                     recipe="resize+mix", views=2, topk=5, workers=0, batch_size=64, progress=False,
                                     device="cpu", command=["test"]))
    for extra in ([], ["--teacher", f"ckpt:{fold_teacher}"]):
        rc = main(["verify", str(root), "--data", DATA, "--replay", "40", *extra])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert "40 views labelled again: 100.0% reproduce their stored top-k" in out.out


def test_resume_refuses_a_finished_member_trained_on_other_data(tmp_path, fold_teacher, capsys):
    import shutil

    out = tmp_path / "t"
    (out).mkdir()
    shutil.copytree(fold_teacher / "fold0", out / "fold0")  # finished on digits:train?n=120's complement
    rc = main(["train", "--data", "digits:train?n=100", "--model", "drkit_cnn_tiny", "--epochs", "1",
               "--batch-size", "32", "--workers", "0", "--device", "cpu", "--folds", "2", "--out", str(out),
               "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "member 0" in err and "other data" in err and _one_error(err)
    assert not (out / "folds.json").exists() and not (out / "fold1").exists()


def test_resume_keeps_a_finished_member_only_with_the_same_options(tmp_path, fold_teacher, capsys):
    import shutil

    out = tmp_path / "t"
    out.mkdir()
    shutil.copytree(fold_teacher / "fold0", out / "fold0")
    args = ["train", "--data", DATA, "--model", "drkit_cnn_tiny", "--batch-size", "32", "--workers", "0",
            "--device", "cpu", "--folds", "2", "--out", str(out), "--resume", "--quiet"]
    rc = main([*args, "--epochs", "2"])  # member 0 trained 1 epoch: a mixed ensemble, refused
    err = capsys.readouterr().err
    assert rc == 2 and "member 0" in err and "other settings (epochs)" in err and _one_error(err)
    assert not (out / "fold1").exists()
    shutil.move(out / "fold0" / "state", tmp_path / "state")  # a member whose options cannot be read back
    rc = main([*args, "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "member 0" in err and "options cannot be checked" in err and _one_error(err)
    shutil.move(tmp_path / "state", out / "fold0" / "state")
    assert main([*args, "--epochs", "1"]) == 0  # the same options: member 0 is kept, member 1 trains
    kept = json.loads((out / "folds.json").read_text())["members"]
    assert kept == json.loads((fold_teacher / "folds.json").read_text())["members"]  # as if never interrupted


def test_folds_members_learn_online_from_a_kd_teacher_and_resume(tmp_path, fold_teacher, capsys):
    """``--folds --kd-teacher``: every member distils from the (out-of-fold) teacher; ERM's label smoothing
    is not passed to them, so they train, and a finished one is kept on --resume."""
    import shutil

    args = ["train", "--data", DATA, "--kd-teacher", f"ckpt:{fold_teacher}", "--model", "drkit_cnn_tiny", "--epochs",
            "1", "--batch-size", "32", "--workers", "0", "--device", "cpu", "--folds", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "kd")]) == 0, capsys.readouterr().err
    members = json.loads((tmp_path / "kd" / "folds.json").read_text())["members"]
    extra = json.loads((tmp_path / "kd" / "fold0" / "config.json").read_text())["extra"]["train"]
    assert extra["kd_teacher"] == [f"ckpt:{fold_teacher}"] and extra["label_smoothing"] is None
    (tmp_path / "again").mkdir()
    shutil.copytree(tmp_path / "kd" / "fold0", tmp_path / "again" / "fold0")
    assert main([*args, "--out", str(tmp_path / "again"), "--resume"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "again" / "folds.json").read_text())["members"] == members


def test_resume_refuses_a_finished_member_whose_weights_changed(tmp_path, fold_teacher, capsys):
    import shutil

    out = tmp_path / "t"
    out.mkdir()
    shutil.copytree(fold_teacher / "fold0", out / "fold0")
    w = out / "fold0" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"\0" * 8)
    rc = main(["train", "--data", DATA, "--model", "drkit_cnn_tiny", "--epochs", "1", "--batch-size", "32",
               "--workers", "0", "--device", "cpu", "--folds", "2", "--out", str(out), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "member 0" in err and "sha256" in err and _one_error(err)


def test_folds_json_hashes_are_checked_on_load(tmp_path, fold_teacher, capsys):
    import shutil

    bad = tmp_path / "t"
    shutil.copytree(fold_teacher, bad)
    doc = json.loads((bad / "folds.json").read_text())
    doc["members"][1]["weights_sha256"] = "0" * 64
    (bad / "folds.json").write_text(json.dumps(doc))
    rc = main(["reinforce", "--data", DATA, "--teacher", f"ckpt:{bad}", "--samples", "1", "--workers", "0",
               "--device", "cpu", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "fold1" in err and "not the ones folds.json records" in err
    assert _one_error(err) and not (tmp_path / "o").exists()


def test_folds_with_init_refuses_weights_that_saw_the_data(tmp_path, fold_teacher, capsys):
    from conftest import make_teacher

    args = ["train", "--data", DATA, "--model", "drkit_cnn_tiny", "--epochs", "1", "--batch-size", "32",
            "--workers", "0", "--device", "cpu", "--folds", "2", "--quiet"]
    rc = main(args + ["--init", f"ckpt:{fold_teacher / 'fold0'}", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and "saw its held-out fold" in err and _one_error(err)
    assert not (tmp_path / "a").exists()
    # weights that never saw this data (a randomly initialised checkpoint with no training data) work
    spec = make_teacher(tmp_path / "fresh", load_source(DATA).classes, seed=3, image_size=8)
    assert main(args + ["--init", spec, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "folds.json").exists()


def test_a_single_member_on_its_own_training_data_says_so(tmp_path, fold_teacher, capsys):
    rc = main(["reinforce", "--data", DATA, "--teacher", f"ckpt:{fold_teacher / 'fold0'}", "--samples", "1",
               "--topk", "3", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "s"), "--quiet"])
    err = capsys.readouterr().err
    trained = int((fold_of(np.arange(120), 2) != 0).sum())
    assert rc == 0 and "is member 0 of the --folds directory" in err and f"trained on {trained} of the 120" in err
    rc = main(["reinforce", "--data", "digits:test?n=20", "--teacher", f"ckpt:{fold_teacher / 'fold0'}",
               "--samples", "1", "--topk", "3", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "t"),
               "--quiet"])
    assert rc == 0 and "is member" not in capsys.readouterr().err  # other data: nothing to say


def _one_error(err: str) -> bool:
    """One ``drkit: error:`` line and nothing else but warnings."""
    lines = err.strip().splitlines()
    return sum(x.startswith("drkit: error:") for x in lines) == 1 and all(x.startswith("drkit: ") for x in lines)
