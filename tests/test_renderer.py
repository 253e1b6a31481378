"""The batched renderer: the same pixels as the per-view reference, whatever the batch, on every
device kind it claims; counter-based noise; the renderer recorded and honoured on replay."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import bench_module, op_recipes, write_manifest

from drkit.augment import ViewSampler, get_recipe
from drkit.augment.batch import RENDERER_VERSION, render_batch
from drkit.errors import StoreError
from drkit.hashing import noise_at
from drkit.reinforce import ReinforceConfig, reinforce
from drkit.store import open_store
from drkit.teachers import load_teacher

#: every op that draws (from the registry), then recipes with settings
RECIPES = list(dict.fromkeys(op_recipes(drawing=True) + [
    "rrc+ra+re+mix", "padcrop+ra+re", "rrc+ta+re", "padcrop+ta+mix",
    "rrc+ra@m=15,n=3,mstd=2+re@p=0.9+mix@mixup=1.0,switch=0.5", "padcrop@resize=0,pad=3+re@fill=zero"]))


def noise_bytes(seeds: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """The whole noise image ``[len(seeds), C, H, W]`` of :func:`noise_at`, the oracle these tests pin."""
    dev, n = seeds.device, seeds.shape[0]
    c, y, x = torch.meshgrid(torch.arange(channels, device=dev), torch.arange(height, device=dev),
                             torch.arange(width, device=dev), indexing="ij")
    flat = [t.reshape(1, -1).expand(n, -1) for t in (c, y, x)]
    return noise_at(seeds.reshape(-1, 1).expand_as(flat[0]), *flat, height, width).reshape(n, channels, height, width)


def _images(channels: int = 3) -> list[torch.Tensor]:
    """Sources of different sizes (a box may fall outside them: pad-crop)."""
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (channels, 20 + (i % 3) * 7, 24 + (i % 2) * 5), generator=g, dtype=torch.uint8)
            for i in range(12)]


def _views(recipe, images, num_views=5, seed=3):
    sampler = ViewSampler(recipe, seed, len(images), num_views, lambda i: tuple(images[i].shape[-2:]))
    views = [(i, v) for i in range(len(images)) for v in range(num_views)]
    params = [sampler(i, v) for i, v in views]
    mixes = [p.get("mix") if p.get("mix") and p["mix"]["mode"] else None for p in params]
    partner_index = [m["partner"] if m else -1 for m in mixes]
    partner_params = [sampler(m["partner"], m["partner_view"]) if m else None for m in mixes]
    return views, params, partner_index, partner_params


def _reference(recipe, images, views, params, partner_index, partner_params, size):
    return torch.stack([recipe.render(images[i], p, size, images[j] if q is not None else None, q)
                        for (i, _), p, j, q in zip(views, params, partner_index, partner_params)])


@pytest.mark.parametrize("spec", RECIPES)
@pytest.mark.parametrize("size", [16, 33])
def test_batched_equals_the_reference_bit_for_bit_on_cpu(spec, size):
    recipe, images = get_recipe(spec), _images()
    views, params, pidx, pparams = _views(recipe, images)
    got = render_batch(recipe, images, [i for i, _ in views], params, size, pidx, pparams)
    want = _reference(recipe, images, views, params, pidx, pparams, size)
    assert got.dtype == torch.uint8 and got.shape == want.shape
    assert torch.equal(got, want)


def test_imported_views_batched_equal_the_reference_bit_for_bit():
    """What only imported views use (``drkit import-mldr``): a crop in resized pixels, a zero-filled
    pixel box, and ``refmix``: MixUp then CutMix (pixel box) with the partner's own parameters."""
    recipe, images = get_recipe("padcrop@resize=0,pad=4+re@units=px,fill=zero+refmix"), _images()
    rng = np.random.default_rng(0)

    def base() -> dict:
        top, left, h, w = (int(v) for v in rng.integers(0, 18, 4))
        return {"padcrop": {"top": top, "left": left, "flip": int(rng.integers(0, 2))},
                "re": {"on": int(rng.integers(0, 2)), "top": top, "left": left, "h": h, "w": w}}

    params, partners = [base() for _ in range(48)], [base() for _ in range(48)]
    for r, p in enumerate(params):
        top, left, h, w = (int(v) for v in rng.integers(-2, 18, 4))
        lam = int(np.float16(rng.random()).view(np.uint16))
        p["mix"] = {"mode": r % 4, "partner": (r + 1) % 12, "partner_view": 0, "lam": lam, "top": max(top, 0),
                    "left": max(left, 0), "h": h, "w": w, "partner_params": partners[r]}
    index, pidx = [r % 12 for r in range(48)], [(r + 1) % 12 for r in range(48)]
    for size in (16, 21):
        got = render_batch(recipe, images, index, params, size, pidx, partners)
        want = torch.stack([recipe.render(images[i], p, size, images[j], q) for i, p, j, q in
                            zip(index, params, pidx, partners)])
        assert torch.equal(got, want)
        assert {recipe.mix_weight(p, size) < 1 for p in params} == {True, False}


def test_a_view_renders_the_same_alone_and_in_any_batch():
    recipe, images = get_recipe("rrc+ra+re+mix"), _images()
    views, params, pidx, pparams = _views(recipe, images)
    index = [i for i, _ in views]
    full = render_batch(recipe, images, index, params, 24, pidx, pparams)
    rng = np.random.default_rng(0)
    for batch in (1, 3, 7, 19):
        rows = rng.permutation(len(views))[:batch].tolist()
        part = render_batch(recipe, images, [index[r] for r in rows], [params[r] for r in rows], 24,
                            [pidx[r] for r in rows], [pparams[r] for r in rows])
        assert torch.equal(part, full[rows])


def test_hash_noise_is_counter_based_and_fixed():
    a = noise_bytes(torch.tensor([7, 7, 8]), 3, 10, 12)
    assert torch.equal(a[0], a[1]) and not torch.equal(a[0], a[2])
    # pinned: the noise is part of the renderer; changing it needs a RENDERER_VERSION bump
    assert a[0, 0, 0, :6].tolist() == noise_bytes(torch.tensor([7]), 3, 10, 12)[0, 0, 0, :6].tolist()
    assert noise_bytes(torch.tensor([0]), 1, 2, 4).flatten().tolist() == PINNED_NOISE
    counts = torch.bincount(noise_bytes(torch.arange(64), 3, 32, 32).flatten().long(), minlength=256).float()
    assert counts.std() / counts.mean() < 0.1  # roughly uniform bytes


PINNED_NOISE = [231, 216, 164, 15, 135, 165, 211, 234]


def test_store_records_its_renderer_and_a_renderer1_store_replays_exactly(tmp_path, digits_train, teacher_pair):
    """A format-1 store from before the renderer was recorded (erasing noise from a CPU generator)
    is upgraded when read: its recipe says ``fill='generator'`` and its views replay exactly."""
    kw = dict(views=3, topk=4, batch_size=16, workers=0, images_per_shard=16, device="cpu", progress=False,
              command=["t"])
    new = open_store(reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "v2",
                                               recipe="rrc+ra+re", **kw)))
    assert new.renderer["version"] == RENDERER_VERSION and new.renderer["device"] == "cpu"
    assert {"torch", "torchvision", "name"} <= set(new.renderer) and new.manifest["format_version"] == 4
    assert new.recipe.ops[2].settings["fill"] == "hash"
    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "v1",
                                     recipe="rrc+ra+re@fill=generator", **kw))
    doc = json.loads((root / "manifest.json").read_text())
    for key in ("renderer", "sampler", "recipe_side", "content_digest", "replay", "partner_window"):
        doc.pop(key)  # what format 1 left out
    doc["format_version"] = 1
    doc["recipe"]["spec"] = doc["recipe"]["spec"].replace(",fill='generator'", "")
    (root / "manifest.json").write_text(json.dumps(doc))
    old = open_store(root)
    assert old.renderer["version"] == 1 and old.recipe.ops[2].settings["fill"] == "generator"
    assert old.manifest["replay"] == "exact" and old.digest_kind is None and old.manifest["sampler"] == 1
    doc["format_version"] = 5
    (root / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="format version 5; this drkit reads versions 1..4"):
        open_store(root)
    doc["format_version"] = 1
    (root / "manifest.json").write_text(json.dumps(doc))
    old = open_store(root)
    ens = load_teacher(teacher_pair, device="cpu")
    flat = [(i, v) for i in range(old.num_samples) for v in range(old.num_views)]
    erased = 0
    for a in range(0, len(flat), 16):
        chunk = flat[a:a + 16]
        x = torch.stack([old.replay(digits_train, i, v) for i, v in chunk])
        with torch.inference_mode():
            p, ids = ens(x.contiguous(memory_format=torch.channels_last)).float().topk(old.topk, dim=-1)
        for row, (i, v) in enumerate(chunk):
            rec = old.record(i, v)
            assert np.array_equal(rec["topk_ids"], ids[row].numpy())
            assert np.array_equal(rec["topk_probs"], p[row].numpy().astype(np.float16).astype(np.float32))
            erased += rec["params"]["re"]["on"]
    assert erased > 0


#: renderer 1's erasing noise (a CPU ``torch.Generator`` seeded with the record's seed), first bytes of a
#: 1 x 6 x 6 erase for seeds 0, 7, 65535. The replay test above writes and replays with the same code, so
#: only this pin sees a change that would stop every renderer-1 store from replaying (torch's CPU randint)
PINNED_GENERATOR_NOISE = {0: [172, 47, 117, 192, 67, 251, 195, 103, 9, 211],
                          7: [175, 196, 25, 246, 67, 211, 151, 103, 92, 185],
                          65535: [170, 181, 129, 151, 236, 149, 3, 54, 231, 243]}


def test_renderer1_erasing_noise_is_pinned():
    op = get_recipe("resize+re@p=1.0,fill=generator").ops[1]
    for seed, want in PINNED_GENERATOR_NOISE.items():
        out = op.apply(torch.zeros(1, 6, 6, dtype=torch.uint8), {"on": 1, "top": 0, "left": 0, "h": 255, "w": 255,
                                                                 "seed": seed}, 6)
        assert out.flatten()[:10].tolist() == want, seed


def test_replay_on_another_device_kind_warns_once(tmp_path, digits_train, teacher_pair, capsys):
    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "s", recipe="padcrop",
                                     views=2, topk=3, workers=0, device="cpu", progress=False, command=["t"]))
    doc = json.loads((root / "manifest.json").read_text())
    doc["renderer"]["device"] = "cuda"
    write_manifest(root, doc)
    capsys.readouterr()  # reinforce's own lines (random teachers are called weak)
    store = open_store(root)
    store.replay(digits_train, 0, 0)
    store.replay(digits_train, 1, 1)
    err = capsys.readouterr().err
    assert err.count("drkit: warning:") == 1 and "rendered on cuda" in err


def _smooth(count: int = 8, h: int = 64, w: int = 80) -> list[torch.Tensor]:
    """Photo-like sources (upsampled noise): resampling differences show as they would on real data."""
    from PIL import Image

    rng = np.random.default_rng(0)
    return [torch.from_numpy(np.array(Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
                                      .resize((w, h), Image.BILINEAR))).permute(2, 0, 1).contiguous()
            for _ in range(count)]


#: documented bound of the accelerator resize against the CPU reference on photo-like images
#: (README "Renderers"): mean |difference| in 0..255 levels over a group of crops, and the largest
#: single difference. Worst seen over seeds 0-7 x sizes 16/24/48/96: 1.55 / 11 (sampler 1 boxes),
#: 1.59 / 13 (sampler 2 boxes)
RESIZE_MEAN, RESIZE_MAX = 1.75, 16


def test_accelerator_resize_is_within_the_documented_bound():
    """The accelerator's resize (run here on CPU tensors: same arithmetic) against the reference."""
    from drkit.augment.batch import _crop, _resize, _sample_resize, _samples_per_pixel

    images = _smooth()
    for size in (16, 24, 48, 96):
        recipe = get_recipe("rrc")
        views, params, _, _ = _views(recipe, images, num_views=6)
        rows = [r for r, p in enumerate(params) if (p["rrc"]["height"], p["rrc"]["width"]) != (size, size)]
        for n in {_samples_per_pixel(params[r]["rrc"], size) for r in rows}:
            group = [r for r in rows if _samples_per_pixel(params[r]["rrc"], size) == n]
            got = _sample_resize(images, [views[r][0] for r in group], [params[r]["rrc"] for r in group], size, n)
            want = torch.stack([_resize(_crop(images[views[r][0]], params[r]["rrc"])[None], size)[0] for r in group])
            d = (got.int() - want.int()).abs().float()
            assert d.mean() < RESIZE_MEAN and d.max() <= RESIZE_MAX, (size, n, float(d.mean()), float(d.max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batched_render_agrees_with_cpu():
    """Indexing ops (pad-crop at the native side, flip, RA/TA, erase, MixUp, CutMix) agree exactly
    across devices; resized crops within the documented bound."""
    g = torch.Generator().manual_seed(1)
    square = [torch.randint(0, 256, (3, 24, 24), generator=g, dtype=torch.uint8) for _ in range(12)]
    cases = (("padcrop@pad=4+ra+re@p=0.9+mix", square, 24, True), ("padcrop+ta+mix", square, 24, True),
             ("rrc+ra+re+mix", _smooth(12), 24, False), ("rrc+ra+re", _smooth(12), 56, False))
    for spec, images, size, exact in cases:
        recipe = get_recipe(spec)
        views, params, pidx, pparams = _views(recipe, images)
        index = [i for i, _ in views]
        cpu = render_batch(recipe, images, index, params, size, pidx, pparams)
        gpu = render_batch(recipe, [x.cuda() for x in images], index, params, size, pidx, pparams).cpu()
        diff = (cpu.int() - gpu.int()).abs().float()
        print(f"{spec} @{size}: max |d| {diff.max():.0f}, mean |d| {diff.mean():.3f}, share of pixels differing "
              f"{(diff > 0).float().mean():.4f}")
        if exact:
            assert torch.equal(cpu, gpu), spec
        else:
            assert diff.mean() < RESIZE_MEAN, spec


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_reinforce_is_deterministic_and_replays_exactly(tmp_path, digits_train, teacher_pair):
    """The CUDA pipeline (render on a side stream, top-k copied back while the next batch renders)
    writes the same bytes at any worker count, and replaying on CUDA reproduces the stored top-k."""
    from drkit.store.replay_check import replay_check

    kw = dict(recipe="rrc+ra+re+mix", views=3, topk=4, batch_size=16, images_per_shard=16, device="cuda",
              progress=False, command=["t"])
    a = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "a", workers=0, **kw))
    b = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "b", workers=2, **kw))
    shards = sorted((a / "shards").glob("*.safetensors"))
    assert shards and all(p.read_bytes() == (b / "shards" / p.name).read_bytes() for p in shards)
    store = open_store(a)
    assert store.renderer["device"] == "cuda"
    report = replay_check(store, digits_train, store.num_samples * store.num_views, device="cuda", batch_size=16)
    assert report["exact"] and report["reproduced"] == 1.0, report


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_labels_equal_eager_labels(teacher_pair):
    """reinforce replays the teacher as a CUDA graph: same top-k ids and probabilities as the eager
    forward, batch after batch (new content in the captured input), and eager for another size."""
    from drkit.reinforce.labeller import Labeller

    ens = load_teacher(teacher_pair, device="cuda")
    g = torch.Generator().manual_seed(0)
    graph, eager = Labeller(ens, torch.device("cuda"), 4), Labeller(ens, torch.device("cuda"), 4, graphs=False)
    graph.prepare((32, 1, 16, 16))
    for n in (32, 32, 32, 7):
        x = torch.randint(0, 256, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
        (a_ids, a_p), (b_ids, b_p) = graph(x).result(), eager(x).result()
        assert np.array_equal(a_ids, b_ids) and np.array_equal(a_p, b_p)
    assert list(graph.captured) == [(32, 1, 16, 16)]


def test_device_replay_path_matches_the_dataset(tmp_path, digits_train, teacher_pair):
    """ReinforcedDataset.raw() + collate_raw + ds.render(batch, device) gives, mixed views
    included, the per-view oracle's bytes (``Recipe.render`` of each stored view) and the
    store's targets, and ``ds[j]`` the same."""
    from torch.utils.data import DataLoader

    from drkit.augment import render_view
    from drkit.train import ReinforcedDataset, collate_raw

    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "s",
                                     recipe="rrc+ra+re+mix", views=3, topk=4, workers=0, batch_size=16,
                                     images_per_shard=16, device="cpu", progress=False, command=["t"]))
    store = open_store(root)
    for k in (1, 2):
        ds = ReinforcedDataset(digits_train, store, views_per_image=k, as_uint8=True)
        ds.set_epoch(1)
        loader = DataLoader(ds.raw(), batch_size=7, shuffle=False, num_workers=0, collate_fn=collate_raw)
        pos, mixed = 0, 0
        for batch in loader:
            images, targets = ds.render(batch, "cpu")
            views = [(int(ds.sample_ids[p]), v) for p in range(pos, pos + len(batch["label"]) // k) for v in ds.views(p)]
            oracle = torch.stack([render_view(store.recipe, store.view_params, digits_train.load_uint8, i, v,
                                              store.image_size) for i, v in views])
            want = [ds[p] for p in range(pos, pos + len(batch["label"]) // k)]
            assert torch.equal(images, oracle)
            assert torch.equal(images, torch.cat([w[0].reshape(-1, *w[0].shape[-3:]) for w in want]))
            assert torch.equal(targets, torch.stack([store.soft_target(i, v) for i, v in views]))
            mixed += sum(bool(store.view_params(i, v)["mix"]["mode"]) for i, v in views)
            pos += len(batch["label"]) // k
        assert pos == len(ds) and mixed > 0

def test_dr_weights_do_not_depend_on_where_batches_are_built(tmp_path, digits_train, teacher_pair):
    """`drkit train --reinforced` builds raw batches in a loader worker or in the loop itself and
    renders them in the loop: the same weights either way (batch composition and pixels do not
    depend on the worker count)."""
    from safetensors.numpy import load_file

    from drkit.train import TrainConfig, train

    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "s",
                                     recipe="rrc+ra+re+mix", views=3, topk=4, workers=0, batch_size=16,
                                     images_per_shard=16, device="cpu", progress=False, command=["t"]))
    kw = dict(reinforced=root, model="drkit_cnn_tiny", epochs=2, batch_size=16, views_per_image=2,
              device="cpu", seed=1, quiet=True, limit_batches=4)
    a = train(TrainConfig.build(data=digits_train, out=tmp_path / "w0", workers=0, **kw))
    b = train(TrainConfig.build(data=digits_train, out=tmp_path / "w1", workers=1, **kw))
    wa, wb = load_file(str(tmp_path / "w0" / "model.safetensors")), load_file(str(tmp_path / "w1" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert a["final_train_loss"] == b["final_train_loss"]


@pytest.mark.parametrize("mode", ["erm", "kd"])
def test_erm_and_kd_steps_see_the_per_view_oracle_s_pixels(tmp_path, digits_train, teacher_pair, mode, monkeypatch):
    """ERM (mixing recipe) and online KD (teacher at another input size): every view the student
    (and the KD teacher) is handed equals ``Recipe.render`` of that view's parameters."""
    import drkit.train.loop as loop
    from drkit.augment import render_view
    from drkit.train import TrainConfig, train

    seen = []
    real = loop.render_pixels

    def spy(raw, recipe, size, device):
        out = real(raw, recipe, size, device)
        seen.append((recipe, raw, size, out))
        return out

    monkeypatch.setattr(loop, "render_pixels", spy)
    kw = dict(model="drkit_cnn_tiny", epochs=1, batch_size=16, workers=0, device="cpu", seed=2, quiet=True,
              limit_batches=2, recipe="rrc+ra+re+mix")
    if mode == "kd":
        kw.update(kd_teacher=teacher_pair, image_size=12)  # the teachers take 16 px: two renders per view
    train(TrainConfig.build(data=digits_train, out=tmp_path / "run", **kw))
    assert len(seen) == (2 if mode == "erm" else 4)  # KD: the student's and the teacher's size
    mixed = 0
    for recipe, raw, size, out in seen:
        view = 0  # epoch 0: ERM draws view 0 of every sample
        for r, (i, p) in enumerate(zip(raw["sample"].tolist(), raw["params"].own)):
            want = render_view(recipe, lambda s, v: recipe.sample(2, s, v, (8, 8), len(digits_train), 1 << 16),
                               digits_train.load_uint8, i, view, size, params=p)
            assert torch.equal(out[r], want), (size, r)
            mixed += bool(p["mix"]["mode"])
    assert mixed > 0 and (mode == "erm" or {s[2] for s in seen} == {12, 16})


def _twin_cases(device: str):
    """Every (op, bin, sign) of RandAugment's and TrivialAugment's tables whose op has a twin, on a
    batch and a single image, square and not."""
    from drkit.augment.autoaugment import AA_OPS, magnitudes
    from drkit.augment.device_ops import TWINS

    g = torch.Generator().manual_seed(5)
    shapes = [(4, 3, 24, 24), (3, 3, 20, 28), (1, 17, 17)]
    images = [torch.randint(0, 256, s, generator=g, dtype=torch.uint8).to(device) for s in shapes]
    for k, (name, fn, _, _, signed) in enumerate(AA_OPS):
        if name not in TWINS:
            continue
        for wide in (False, True):
            for m in magnitudes(k, 31, wide)[::3] + (90.0, 180.0, 270.0) * (name == "Rotate"):
                for value in (m, -m) if signed else (m,):
                    for img in images:
                        yield name, value, img, fn(img, value), TWINS[name](img, value)


def test_device_twins_give_torchvisions_pixels_on_cpu():
    """The synchronisation-free twins (affine, rotate, sharpness) do torchvision's arithmetic."""
    count = 0
    for name, value, _, want, got in _twin_cases("cpu"):
        assert torch.equal(want, got), (name, value)
        count += 1
    assert count > 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_twins_give_torchvisions_pixels_on_cuda():
    for name, value, _, want, got in _twin_cases("cuda"):
        assert torch.equal(want, got), (name, value)


def test_grouped_resize_gives_the_bytes_of_one_call_per_crop():
    """The CPU renderer resizes crops grouped by width (along x) and then by height (along y), or
    grouped by size: byte-identical to resizing each crop on its own, for any crop sizes, channels
    and output side."""
    from drkit.augment.batch import _resize, _resize_into

    g = torch.Generator().manual_seed(0)
    for channels in (1, 3):
        for size, pool in ((7, None), (16, None), (28, (10, 13, 21)), (40, (9, 45))):
            # random sides: nearly every crop size new (one call per size); a few sides: two grouped passes
            sides = (torch.randint(3, 64, (60, 2), generator=g) if pool is None else
                     torch.tensor(pool)[torch.randint(0, len(pool), (60, 2), generator=g)]).tolist()
            sides += [[size, 20], [20, size], [size, size]]  # one axis (or none) already at the output side
            crops = [torch.randint(0, 256, (channels, h, w), generator=g, dtype=torch.uint8) for h, w in sides]
            want = torch.stack([_resize(c[None], size)[0] for c in crops])
            got = torch.zeros((len(crops) + 5, channels, size, size), dtype=torch.uint8)
            rows = torch.randperm(len(crops) + 5, generator=g)[:len(crops)].tolist()
            _resize_into(got, rows, [c.numpy() for c in crops])
            assert torch.equal(got[rows], want), (channels, size)


@pytest.mark.parametrize("spec,shape", [("rrc+ra", (1, 28, 28)), ("rrc+ra", (3, 17, 23)), ("rrc+ta", (1, 28, 28)),
                                        ("rrc+ta", (3, 17, 23)), ("rrc+ta", (3, 72, 80))])
def test_one_resampling_per_stage_gives_each_views_own_bytes(spec, shape):
    """RA/TA stages warp all their shears, translations and rotations with one matrix per view and apply
    each colour op and sharpening in one call (up to 64 x 64 px; above, each group through the reference
    op): every (op, bin, sign) of the table, on square and non-square images, equals the op alone."""
    from drkit.augment.autoaugment import AA_OPS, apply_aa

    op = get_recipe(spec).ops[1]
    wide = op.name == "ta"
    keys = ("op", "mag", "sign") if wide else ("op0", "mag0", "sign0")
    combos = [(o, b, s) for o in range(len(AA_OPS)) for b in range(op.settings["bins"]) for s in (0, 1)]
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (len(combos), *shape), generator=g, dtype=torch.uint8)
    params = [dict(zip(keys, c)) | ({} if wide else {"op1": 0, "mag1": 0, "sign1": 0}) for c in combos]
    got = op.apply_batch(x, params, shape[-1])
    for k, (o, b, s) in enumerate(combos):
        assert torch.equal(got[k], apply_aa(x[k], o, b, s, op.settings["bins"], wide)), (AA_OPS[o][0], b, s)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
@pytest.mark.parametrize("spec", ["padcrop+ta+re", "padcrop+ra@m=15,n=3,mstd=2+re"])
def test_a_batch_of_512_views_dispatches_no_more_kernels_than_one_of_64(spec, device):
    """On an accelerator each kernel launch costs host time, whatever its size: per-view magnitudes go
    through one call per op and the batch's images into one stack in one copy, so a batch's kernel count
    grows neither with its views nor with its source images (issue 23)."""
    dispatch_counts = bench_module("render_speed").dispatch_counts
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 24, 24), generator=g, dtype=torch.uint8).to(device) for _ in range(512)]
    recipe, counts = get_recipe(spec), []
    for n_images, ns in ((64, 1), (64, 8), (512, 1)):
        views, params, _, _ = _views(recipe, images[:n_images], num_views=ns)

        def render() -> torch.Tensor:
            return render_batch(recipe, images, [i for i, _ in views], params, 24)

        render()  # warm: cached tables are built once per process, not per batch
        counts.append(dispatch_counts(render))
    assert all(k <= 1.1 * counts[0][0] and syncs == 0 for k, syncs in counts[1:]), counts


def test_the_accelerators_resize_dispatches_as_many_kernels_for_512_images_as_for_8():
    """The accelerator's crop-resize (device-agnostic code, counted on the CPU) stacks a group's images in
    one copy, not one launch per image (render_speed.py's "accel resize": 276 -> 66 kernels, 2,040 views of 204)."""
    from drkit.augment.batch import crop_batch

    dispatch_counts = bench_module("render_speed").dispatch_counts
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8) for _ in range(512)]
    boxes = [{"top": 2, "left": 3, "height": 20, "width": 25, "flip": 0},  # resized, and exact-size and flipped
             {"top": -1, "left": 4, "height": 16, "width": 16, "flip": 1}]
    counts = [dispatch_counts(lambda: crop_batch(images, list(range(n)), [boxes[r % 2] for r in range(n)], 16,
                                                 accelerator=True)) for n in (8, 512)]
    assert counts[0] == counts[1], counts
