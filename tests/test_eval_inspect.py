"""drkit eval (JSON layout, corruption table, shift mapping) and drkit inspect (stats, grid PNG)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from drkit.errors import DrkitError
from drkit.evaluate import EvalConfig, evaluate
from drkit.inspect import format_stats, inspect_store
from drkit.reinforce import ReinforceConfig, reinforce


def test_eval_report_layout_and_corruptions(tmp_path):
    from drkit.train import TrainConfig, train

    ckpt = tmp_path / "m"  # a briefly trained model: a random one predicts one class whatever the input
    train(TrainConfig.build(data="digits:train", out=ckpt, model="drkit_cnn_tiny", epochs=2, batch_size=64, opt="adamw",
                            lr=4e-3, image_size=16, workers=0, device="cpu", quiet=True))
    out = tmp_path / "r.json"
    r = evaluate(EvalConfig(checkpoint=ckpt, data="digits:test", corruptions=True,
                            families=["gaussian_noise", "contrast"], severities=[1, 5], json_path=out,
                            plot=tmp_path / "rel.png", limit=64, workers=0, progress=False))
    saved = json.loads(out.read_text())
    assert set(saved) >= {"top1", "top5", "nll", "ece", "corruptions", "mean_corruption_top1"}
    assert 0 <= saved["top1"] <= saved["top5"] <= 1 and saved["nll"] > 0 and 0 <= saved["ece"] <= 1
    assert set(saved["corruptions"]) == {"gaussian_noise", "contrast"}
    assert set(saved["corruptions"]["contrast"]) == {"1", "5"}
    vals = [v for row in saved["corruptions"].values() for v in row.values()]
    assert abs(saved["mean_corruption_top1"] - float(np.mean(vals))) < 1e-9
    png = np.asarray(Image.open(tmp_path / "rel.png").convert("L"), dtype=np.float32)
    assert png.std() > 1.0
    assert r["images"] == 64
    # one clean and two corrupted cells recomputed image by image: the table is the model on those views
    import torch

    from drkit.augment import eval_transform
    from drkit.checkpoint import load_checkpoint
    from drkit.evaluate.corruptions import corrupt, corruption_seed
    from drkit.sources import load_source

    model, mcfg = load_checkpoint(ckpt)
    src, preds = load_source("digits:test"), []
    for f, s, got in ((None, 0, saved["top1"]), ("contrast", 5, saved["corruptions"]["contrast"]["5"]),
                      ("gaussian_noise", 1, saved["corruptions"]["gaussian_noise"]["1"])):
        xs = [eval_transform(src.load_uint8(i), mcfg.image_size) for i in range(64)]
        xs = [x if f is None else corrupt(x, f, s, corruption_seed(0, f, s, i)) for i, x in enumerate(xs)]
        with torch.inference_mode():
            pred = model.eval()(torch.stack(xs).float() / 255).argmax(-1).numpy()
        assert got == float(np.mean(pred == np.asarray(src.labels[:64]))), (f, s)
        preds.append(pred)
    assert (preds[0] != preds[1]).any()  # the model tells the corrupted views apart, so the check means something


def test_eval_refuses_wrong_classes_and_maps_a_shift_by_name(tmp_path, teacher_pair, monkeypatch):
    ckpt = teacher_pair[0].split(":", 1)[1]
    with pytest.raises(DrkitError, match="class names differ from the checkpoint's; use --shift"):
        evaluate(EvalConfig(checkpoint=ckpt, data="fashion-mnist:test?n=10", workers=0, progress=False))
    # an imagefolder with a subset of the digit classes, named like the checkpoint's classes
    from drkit.sources import load_source

    src = load_source("digits:test")
    root = tmp_path / "shift"
    for i in range(40):
        y = int(src.labels[i])
        if y in (1, 3):
            d = root / src.classes[y]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(src.load_uint8(i)[0].numpy(), "L").save(d / f"{i}.png")
    (root / "unknown-class").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(root / "unknown-class" / "x.png")
    import drkit.evaluate.run as eval_run

    with monkeypatch.context() as m:  # an RGB shift set for a 1-channel model: refused before any evaluation runs
        m.setattr(eval_run, "_run", lambda *a, **k: pytest.fail("evaluated before refusing the shift set"))
        with pytest.raises(DrkitError, match=r"shift:train has 3 channel\(s\), the checkpoint takes 1: read it as"):
            evaluate(EvalConfig(checkpoint=ckpt, data="digits:test", shift=f"imagefolder:{root}", workers=0,
                                progress=False))
    r = evaluate(EvalConfig(checkpoint=ckpt, data="digits:test", shift=f"imagefolder:{root}?mode=L", limit=16,
                            workers=0, progress=False))
    assert r["shift"]["classes"] == 2 and r["shift"]["images"] == sum(1 for _ in root.rglob("[0-9]*.png"))


def test_inspect_stats_grid_and_cli(tmp_path, digits_train, teacher_pair):
    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "s", recipe="rrc+mix",
                                     views=3, topk=5, workers=0, images_per_shard=16, progress=False, device="cpu",
                                     command=["t"]))
    stats = inspect_store(root, grid=tmp_path / "grid.png", json_path=tmp_path / "s.json", samples=3)
    assert stats["samples"] == 48 and stats["views"] == 3 and stats["topk"] == 5
    assert stats["records_read"] == 48 * 3
    # the label statistics behind reinforce's warnings, recomputed record by record: a mixed view's label
    # is its partner's when the partner dominates (lambda < 0.5); entropy counts the residual mass
    from drkit.store import densify, open_store

    store, agree, top1, ent, mixed = open_store(root), 0, 0.0, 0.0, 0
    for i in range(48):
        for v in range(3):
            rec = store.record(i, v)
            partner = rec.get("mix_mode", 0) > 0 and rec["lam"] < 0.5
            mixed += partner
            agree += int(rec["topk_ids"][0] == digits_train.labels[rec["partner"] if partner else i])
            top1 += float(rec["topk_probs"][0])
            p = densify(rec["topk_ids"], rec["topk_probs"], 10).double()
            ent += float(-(p * p.clamp_min(1e-300).log()).sum())
    assert mixed > 0 and stats["teacher_top1"] == agree / 144
    assert abs(stats["mean_top1_prob"] - top1 / 144) < 1e-9 and abs(stats["mean_entropy"] - ent / 144) < 1e-5
    assert stats["bytes_per_record"] == 9 + 2 * 5 + 2 * 5 + 13
    img = np.asarray(Image.open(tmp_path / "grid.png").convert("L"), dtype=np.float32)
    assert img.shape[0] > 200 and img.std() > 5.0
    assert json.loads((tmp_path / "s.json").read_text())["views"] == 3
    assert "teacher top-1" in format_stats(stats)
    r = subprocess.run([sys.executable, "-m", "drkit.cli", "inspect", str(root)], capture_output=True, text=True)
    assert r.returncode == 0 and "bytes / record" in r.stdout
