"""Replayable augmentations: lossless codec, bit-exact apply, size-independent boxes, per-view seeds."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import op_recipes
from hypothesis import given, settings
from hypothesis import strategies as st

from drkit.augment import OPS, RECIPES, BitCodec, Field, eval_transform, get_recipe
from drkit.augment.autoaugment import AA_OPS
from drkit.errors import RecipeError

#: every op that draws (from the registry), the named recipes, and settings worth a recipe of their own
ALL_RECIPES = list(dict.fromkeys(op_recipes(drawing=True) + list(RECIPES) + [
    "rrc+ta+re@p=1.0", "padcrop@pad=4+ra@n=3,mstd=2.0", "rrc+mix@p=0.5,mixup=0.0",
    "padcrop@resize=24,pad=4+re@fill=zero"]))


def _img(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_codec_round_trip_thousands_of_views(name: str) -> None:
    recipe = get_recipe(name)
    rng = np.random.default_rng(1)
    for view in range(1500):
        hw = (int(rng.integers(8, 600)), int(rng.integers(8, 600)))
        p = recipe.sample(7, int(rng.integers(0, 10**6)), view, hw, 10**6 + 1, 50)
        code = recipe.encode(p)
        assert code.dtype == np.uint8 and code.shape == (recipe.code_bytes,)
        base = {k: v for k, v in p.items() if k != "mix"}
        assert recipe.decode(code) == base
    views = [recipe.sample(7, i, 0, (40, 30), 100, 4) for i in range(300)]
    assert np.array_equal(recipe.codec.encode_many(views), np.stack([recipe.encode(p) for p in views]))
    assert recipe.codec.encode_many([]).shape == (0, recipe.code_bytes)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_codec_round_trip_any_in_range_values(data: st.DataObject) -> None:
    fields = data.draw(st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(0, 2**20)), min_size=1, max_size=12))
    spec = [Field(f"f{i}", lo, lo + span) for i, (lo, span) in enumerate(fields)]
    codec = BitCodec([("g", spec)])
    values = {f.name: data.draw(st.integers(f.lo, f.hi)) for f in spec}
    assert codec.decode(codec.encode({"g": values})) == {"g": values}


def test_codec_refuses_out_of_range_and_wrong_width() -> None:
    codec = BitCodec([("g", [Field("a", 0, 3)])])
    with pytest.raises(RecipeError):
        codec.encode({"g": {"a": 4}})
    with pytest.raises(RecipeError, match="g.a=4 outside"):
        codec.encode_many([{"g": {"a": 1}}, {"g": {"a": 4}}])
    with pytest.raises(RecipeError, match="lack g.a"):
        codec.encode_many([{"g": {"b": 1}}])
    with pytest.raises(RecipeError):
        codec.decode(np.zeros(2, np.uint8))
    with pytest.raises(RecipeError):
        codec.decode(np.array([0xFF], np.uint8))  # bits beyond the field


def test_rrc_ra_re_fits_the_record_budget() -> None:
    # 60 bytes per record at K=10: 20 B of uint16 ids + 20 B of float16 probs leave 20 B for params.
    assert get_recipe("rrc+ra+re").code_bytes <= 20


@pytest.mark.parametrize("name", ALL_RECIPES)
@pytest.mark.parametrize("chans", [1, 3])
def test_apply_of_decoded_params_is_bit_exact(name: str, chans: int) -> None:
    recipe = get_recipe(name)
    src = [_img(chans, 37, 45, s) for s in range(5)]
    for view in range(60):
        sid = view % 5
        p = recipe.sample(3, sid, view, (37, 45), 5, 8)
        q = recipe.decode(recipe.encode(p))
        if "mix" in p:
            q["mix"] = dict(p["mix"])
        partner, pparams = None, None
        if recipe.mixes and p["mix"]["mode"]:
            j, pv = p["mix"]["partner"], p["mix"]["partner_view"]
            assert j != sid and 0 <= j < 5 and 0 <= pv < 8
            partner, pparams = src[j], recipe.sample(3, j, pv, (37, 45), 5, 8)
        a = recipe.render(src[sid], p, 32, partner, pparams)
        b = recipe.render(src[sid].clone(), q, 32, partner, pparams)
        assert a.dtype == torch.uint8 and a.shape == (chans, 32, 32)
        assert torch.equal(a, b)


def test_every_autoaugment_op_changes_a_textured_image_and_replays() -> None:
    recipe = get_recipe("resize+ra@n=1,m=20")
    img = _img(3, 32, 32) // 2 + 40  # a mid-range image, so AutoContrast/Equalize have work to do
    for op in range(len(AA_OPS)):
        p = {"resize": {"top": 0, "left": 0, "height": 32, "width": 32, "flip": 0},
             "ra": {"op0": op, "mag0": 20, "sign0": 1}}
        a, b = recipe.render(img, p, 32), recipe.render(img, p, 32)
        assert torch.equal(a, b)
        changed = not torch.equal(a, img)
        assert changed == (AA_OPS[op][0] != "Identity"), AA_OPS[op][0]


def test_replay_at_another_size_crops_the_same_source_region() -> None:
    # A source whose pixel value encodes its column: the crop box decides which columns appear.
    ramp = torch.arange(200, dtype=torch.float32).div(199).mul(255).round().to(torch.uint8)
    img = ramp.view(1, 1, 200).expand(1, 200, 200).contiguous()
    recipe = get_recipe("rrc@flip=0.0")
    for view in range(30):
        p = recipe.sample(0, 0, view, (200, 200), 1, 30)
        box = p["rrc"]
        lo, hi = ramp[box["left"]].item(), ramp[box["left"] + box["width"] - 1].item()
        for size in (16, 64, 224):
            x = recipe.render(img, p, size)
            # the rendered columns span the box's columns, at every output size: the edge pixel
            # averages at most one output pixel's worth of source columns
            tol = (box["width"] / size + 1) * 255 / 199 + 1
            assert abs(x[0, 0, 0].item() - lo) <= tol
            assert abs(x[0, 0, -1].item() - hi) <= tol


def test_padcrop_box_and_erase_box_scale_with_output() -> None:
    """The pad-crop box stays within the pad; the erased area, counted in rendered pixels, is the
    recorded box's share of the image at every output size."""
    from drkit.augment.erasing import box_to_pixels

    p = get_recipe("padcrop@flip=0.0+re@p=1.0").sample(0, 0, 0, (28, 28), 1, 1)
    assert -4 <= p["padcrop"]["top"] <= 4 and p["padcrop"]["height"] == 28
    recipe = get_recipe("resize+re@p=1.0")
    img = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    q = recipe.sample(0, 0, 0, (28, 28), 1, 1)
    e = q["re"]
    assert 0.02 * 0.5 < e["h"] * e["w"] / 255**2 < 0.34
    for size in (28, 56, 112):
        x = recipe.render(img, q, size)
        assert x.shape == (1, size, size)
        y0, x0, y1, x1 = box_to_pixels(e["top"], e["left"], e["h"], e["w"], size)
        box = (y1 - y0) * (x1 - x0)
        erased = int((x != 255).sum())  # noise hits 255 itself about once in 256
        assert box * 0.95 <= erased <= box
        assert (x[:, :y0] == 255).all() and (x[:, y1:] == 255).all()  # nothing outside the box


def _params_in_subprocess(recipe: str, triples: list[tuple[int, int, int]]) -> list:
    code = (
        "import json,sys; from drkit.augment import get_recipe; r=get_recipe(sys.argv[1]);"
        "t=json.loads(sys.argv[2]);"
        "print(json.dumps([r.sample(s,i,v,(40,30),1000,16) for s,i,v in t]))"
    )
    out = subprocess.run([sys.executable, "-c", code, recipe, json.dumps(triples)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_same_seed_id_view_gives_same_params_in_another_process_and_order() -> None:
    recipe = "rrc+ra+re+mix"
    triples = [(s, i, v) for s in (0, 5) for i in (0, 1, 999) for v in (0, 3, 15)]
    here = [get_recipe(recipe).sample(s, i, v, (40, 30), 1000, 16) for s, i, v in triples]
    there = _params_in_subprocess(recipe, list(reversed(triples)))
    assert list(reversed(there)) == here
    # and different views differ
    assert len({json.dumps(p, sort_keys=True) for p in here}) == len(here)


def test_recipe_spec_round_trips_and_bad_specs_are_refused() -> None:
    for name in ALL_RECIPES + op_recipes() + ["rrc+re@units=px,fill=zero"]:
        r = get_recipe(name)
        assert get_recipe(r.spec).spec == r.spec
        assert get_recipe(r.describe()).spec == r.spec
    for bad in ["", "ra", "rrc+rrc", "rrc+padcrop", "rrc+mix+ra", "rrc+nope", "rrc@bogus=1", "rrc@scale_min",
                "padcrop@resize=24", "rrc+re@units=cm", "rrc+re@fill=ink"]:
        with pytest.raises(RecipeError):
            get_recipe(bad)
    assert set(OPS) >= {"rrc", "padcrop", "ra", "ta", "re", "mix"}


def test_eval_transform_shapes() -> None:
    assert eval_transform(_img(3, 28, 28), 28).shape == (3, 28, 28)
    assert eval_transform(_img(1, 28, 28), 32).shape == (1, 32, 32)
    assert eval_transform(_img(3, 300, 400), 224, crop_pct=0.875).shape == (3, 224, 224)


def test_mix_weight_matches_pasted_area() -> None:
    recipe = get_recipe("resize+mix@switch=1.0")  # always CutMix
    a, b = torch.zeros(1, 32, 32, dtype=torch.uint8), torch.full((1, 32, 32), 255, dtype=torch.uint8)
    pr = recipe.sample(0, 1, 0, (32, 32), 10, 1)
    for view in range(20):
        p = recipe.sample(0, 0, view, (32, 32), 10, 4)
        assert p["mix"]["mode"] == 2
        x = recipe.render(a, p, 32, b, pr)
        share_b = (x == 255).float().mean().item()
        assert abs((1 - share_b) - recipe.mix_weight(p, 32)) < 1e-6
