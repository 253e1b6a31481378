"""The store's front door: one pack/unpack pair, a writer that owns buffering, shards and the
manifest, and one replay path that every consumer shares."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from drkit.augment import ViewSampler, get_recipe, render_view
from drkit.reinforce import ReinforceConfig, reinforce
from drkit.store import StoreWriter, array_schema, open_store, pack, partner_ids, unpack
from drkit.train import AugmentedDataset, ReinforcedDataset, collate_raw

MIX = "rrc+ra+re+mix"


def test_pack_unpack_round_trip_every_field():
    rec = get_recipe(MIX)
    params = [rec.sample(5, i, v, (8, 8), 40, 3) for i in range(20) for v in range(3)]
    arrays = pack(rec, params)
    assert set(arrays) == set(array_schema(rec.code_bytes, 3, 10, True)) - {"topk_ids", "topk_probs"}
    assert all(unpack(rec, {k: a[r] for k, a in arrays.items()}) == p for r, p in enumerate(params))
    mixed = [r for r, p in enumerate(params) if p["mix"]["mode"]]
    assert mixed and (partner_ids(arrays)[mixed] == [params[r]["mix"]["partner"] for r in mixed]).all()
    plain = get_recipe("padcrop")
    assert partner_ids(pack(plain, [plain.sample(0, 0, 0, (8, 8), 4, 1)])) is None


def _config(num_views: int = 2) -> dict:
    rec = get_recipe("padcrop")
    return {"source": {"spec": "test", "fingerprint": "0" * 64, "classes": [str(c) for c in range(10)]},
            "teachers": [{"spec": "test"}], "image_size": 8, "seed": 0,
            "recipe": rec.describe(), "num_samples": 10, "num_views": num_views, "samples_per_shard": 4,
            "num_classes": 10, "topk": 2, "arrays": array_schema(rec.code_bytes, 2, 10, False),
            "renderer": {"name": "drkit", "version": 2, "device": "cpu"}, "sampler": 2, "recipe_side": 8,
            "content_digest": None, "replay": "exact", "partner_window": 0}  # what format 2 spells out


def _write(out, order, config):
    w = StoreWriter(out, config)
    for k, start, stop in w.todo():
        flat = [(i, v) for i in range(start, stop) for v in range(config["num_views"])]
        flat = flat[::-1] if order == "reversed" else flat
        for a in range(0, len(flat), 3):  # any batching, any order
            ids = np.array([i for i, _ in flat[a:a + 3]])
            views = np.array([v for _, v in flat[a:a + 3]])
            w.add(k, ids, views, _one(ids, views))
        w.seal(k)
    assert w.close({"command": "test"})
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").iterdir())}


def _one(ids, views):
    code = np.zeros((len(ids), get_recipe("padcrop").code_bytes), np.uint8)
    code[:, 0] = (ids * 7 + views) % 251  # the low byte of a valid code
    return {"params": code,
            "topk_ids": ((ids[:, None] + np.arange(2)) % 10).astype(np.uint16),
            "topk_probs": np.full((len(ids), 2), 0.5, np.float16)}


def test_writer_output_does_not_depend_on_order_or_batching(tmp_path):
    config = _config()
    assert _write(tmp_path / "a", "forward", config) == _write(tmp_path / "b", "reversed", config)
    store = open_store(tmp_path / "a")
    assert store.verify()["ok"] and store.num_samples == 10
    assert int(store.raw(7)["params"][1, 0]) == (7 * 7 + 1) % 251


def test_writer_writes_no_manifest_until_every_shard_exists(tmp_path):
    w = StoreWriter(tmp_path / "s", _config())
    k, start, stop = w.todo()[0]
    ids = np.repeat(np.arange(start, stop), 2)
    w.add(k, ids, np.tile([0, 1], stop - start), _one(ids, np.tile([0, 1], stop - start)))
    w.seal(k)
    assert not w.close({"command": "test"}) and not (tmp_path / "s" / "manifest.json").exists()
    assert [t[0] for t in StoreWriter(tmp_path / "s", _config(), resume=True).todo()] == [1, 2]
    with pytest.raises(Exception, match="different reinforce run"):
        StoreWriter(tmp_path / "s", _config(num_views=3), resume=True)


def test_every_consumer_replays_through_the_same_path(tmp_path, digits_train, teacher_pair):
    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "s", recipe=MIX, views=3,
                                     topk=3, workers=0, images_per_shard=16, batch_size=16, device="cpu",
                                     progress=False, command=["t"]))
    store = open_store(root)
    ds = ReinforcedDataset(digits_train, store, as_uint8=True)
    aug = AugmentedDataset(digits_train, store.recipe, store.image_size, seed=store.seed, as_uint8=True)
    sampler = ViewSampler(store.recipe, store.seed, len(digits_train), store.num_views, digits_train.image_size)
    checked_mixed = 0
    for i in range(0, store.num_samples, 5):
        (v,) = ds.views(i)
        params = store.view_params(i, v)
        via_store = store.render_uint8(digits_train, i, v)
        via_dataset = ds[i][0]
        via_function = render_view(store.recipe, store.view_params, digits_train.load_uint8, i, v, store.image_size)
        assert torch.equal(via_store, via_dataset) and torch.equal(via_store, via_function)
        # the store's parameters are the recipe's: the sampler re-derives them, and ERM renders the same pixels
        assert sampler(i, v) == params
        if params["mix"]["mode"]:
            checked_mixed += 1
            partner = params["mix"]["partner"], params["mix"]["partner_view"]
            assert store.view_params(*partner) == sampler(*partner)
        erm = aug.render(collate_raw(aug.raw_batch([i], view=v, params=[params])))[0][0]
        assert torch.equal(erm, via_store) or params["mix"]["mode"]  # ERM's partner pool is ERM_VIEWS wide
    assert checked_mixed > 0


def test_record_size_is_pinned_exactly():
    """README: at K = 10 a ``rrc+ra+re`` record is 57 bytes (17-byte code + 10 uint16 ids + 10 float16)."""
    from drkit.store import bytes_per_record

    rec = get_recipe("rrc+ra+re")
    assert rec.code_bytes == 17
    assert bytes_per_record(array_schema(rec.code_bytes, 10, 1000, rec.mixes)) == 57
    mix = get_recipe("rrc+ra+re+mix")
    assert bytes_per_record(array_schema(mix.code_bytes, 10, 1000, mix.mixes)) == 57 + 4 + 2 + 2 + 4 + 1


def test_batch_and_single_record_reads_agree(tmp_path, digits_train, teacher_pair):
    """``Store.records`` (one gather, ``BitCodec.decode_many``, ``unpack_many``) gives what
    ``Store.record`` gives view by view (plain integers), for a mixing recipe across shards."""
    root = reinforce(ReinforceConfig(data=digits_train, teacher=teacher_pair, out=tmp_path / "s",
                                     recipe="rrc+ra+re+mix", views=3, topk=3, workers=0, images_per_shard=16,
                                     device="cpu", progress=False, command=["t"]))
    store = open_store(root)
    ids = np.array([40, 2, 17, 33, 0, 16, 47, 5, 5, 31])
    views = np.array([2, 0, 1, 2, 1, 0, 2, 1, 2, 0])
    batch = store.records(ids, views)
    assert len(batch) == ids.size > 8  # above the one-by-one threshold: the batch path ran
    for rec, i, v in zip(batch, ids, views):
        one = store.record(int(i), int(v))
        assert rec.keys() == one.keys() and rec["params"] == one["params"]
        assert all(np.array_equal(rec[k], one[k]) if isinstance(rec[k], np.ndarray) else rec[k] == one[k] for k in rec)
    codes = store.gather(ids, views)["params"]
    assert store.recipe.codec.decode_many(codes) == [store.recipe.codec.decode(c) for c in codes]
    with pytest.raises(IndexError, match="view 3 outside"):
        store.gather([1], [3])
