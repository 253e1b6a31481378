"""The parameter sampler (counter-based batch draws): a view's parameters do not depend on its batch,
and every op draws the distribution it defines (torchvision's, where torchvision has the op)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import op_recipes

from drkit.augment import get_recipe, resolve_recipe
from drkit.augment.draws import Draws, beta, integers

#: every op that draws (from the registry), then recipes with settings; the last: the reference's
#: CIFAR crop (recipes/cifar100_plus.py)
RECIPES = list(dict.fromkeys(op_recipes(drawing=True) + [
    "none", "rrc+ra+re", "rrc+ra+re+mix", "padcrop+ra+re", "rrc+ta+re@p=1.0", "padcrop@pad=4+ra@n=3,mstd=2.0",
    "rrc+mix@p=0.5,mixup=0.0", "resize+mix@mixup=0.4,cutmix=0.0", "rrc+re@fill=zero", "padcrop@resize=24,pad=4+ra+re"]))


def _views(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    hws = [(int(h), int(w)) for h, w in rng.integers(8, 600, (n, 2))]
    return rng.integers(0, 10**6, n), rng.integers(0, 50, n), hws


@pytest.mark.parametrize("name", RECIPES)
def test_a_view_draws_the_same_alone_and_in_any_batch(name: str) -> None:
    recipe = get_recipe(name)
    samples, views, hws = _views(48)
    whole = recipe.sample_batch(5, samples, views, hws, 10**6 + 1, 50)
    alone = [recipe.sample(5, int(i), int(v), hw, 10**6 + 1, 50) for i, v, hw in zip(samples, views, hws)]
    assert whole == alone
    pick = np.random.default_rng(1).permutation(48)[:17]
    part = recipe.sample_batch(5, samples[pick], views[pick], [hws[k] for k in pick], 10**6 + 1, 50)
    assert part == [whole[k] for k in pick]
    other_seed = recipe.sample_batch(6, samples, views, hws, 10**6 + 1, 50)
    if name not in ("none", "resize"):  # (plain resize draws nothing)
        assert sum(a != b for a, b in zip(whole, other_seed)) > 40  # the seed matters
    for p in whole:  # every drawn value fits the record
        recipe.encode(p)


def test_mixing_partners_stay_in_the_window_and_are_never_the_view_itself() -> None:
    recipe = get_recipe("rrc+mix@p=1.0")
    ids = np.arange(0, 3000) % 100
    params = recipe.sample_batch(0, ids, np.arange(3000) // 100, [(20, 20)] * 3000, 100, 30, window=3)
    partners = np.array([p["mix"]["partner"] for p in params])
    assert (partners != ids).all() and (np.abs(partners - ids) <= 3).all() and (partners >= 0).all()
    assert len(set(zip(ids.tolist(), partners.tolist()))) > 500  # all neighbours get used
    views = np.array([p["mix"]["partner_view"] for p in params])
    assert views.min() == 0 and views.max() == 29


def _stats(recipe, n: int = 4000) -> dict[str, float]:
    params = recipe.sample_batch(3, np.arange(n), np.zeros(n, np.int64), [(28, 28)] * n, n, 4)
    crop = np.array([[p["rrc"][k] for k in ("height", "width", "flip")] for p in params], dtype=np.float64)
    ra = np.array([[p["ra"][k] for k in ("op0", "mag0", "sign0", "op1")] for p in params])
    er = np.array([[p["re"][k] for k in ("on", "h", "w")] for p in params], dtype=np.float64)
    mix = [p["mix"] for p in params]
    mode = np.array([m["mode"] for m in mix])
    lam = np.array([m["lam"] for m in mix], np.uint16).view(np.float16).astype(np.float64)
    on = er[:, 0] == 1
    return {"area": float((crop[:, 0] * crop[:, 1]).mean() / 784),
            "log_aspect": float(np.log(crop[:, 1] / crop[:, 0]).mean()), "flip": float(crop[:, 2].mean()),
            "op_max_share": float(np.bincount(ra[:, 0]).max() / n), "op_min_share": float(np.bincount(ra[:, 3]).min() / n),
            "mag_std": float(ra[:, 1].std()), "sign": float(ra[:, 2].mean()), "erase": float(on.mean()),
            "cutmix": float((mode == 2).mean()), "mixup_lam_var": float(lam[mode == 1].var()),
            "cutmix_lam_mean": float(lam[mode == 2].mean())}


def _torchvision_rrc(scale: tuple[float, float], n: int = 4000) -> tuple[float, float]:
    """Mean area share and mean log aspect of torchvision's own RandomResizedCrop boxes on 28 x 28."""
    import torch
    from torchvision.transforms import v2

    img = torch.zeros(1, 28, 28)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        boxes = np.array([v2.RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3]) for _ in range(n)], np.float64)
    return float((boxes[:, 2] * boxes[:, 3]).mean() / 784), float(np.log(boxes[:, 3] / boxes[:, 2]).mean())


def test_every_op_draws_the_distribution_it_defines() -> None:
    """4000 views of ``rrc+ra+re+mix``: crop boxes as torchvision's RandomResizedCrop draws them,
    uniform op choice and signs, the magnitude spread asked for, erasing and CutMix at their
    rates, MixUp's λ with Beta(0.2, 0.2)'s variance."""
    from drkit.augment.autoaugment import AA_OPS

    recipe = resolve_recipe("rrc+ra@mstd=1.5+re+mix", 28, strong=True)
    got = _stats(recipe)
    area, log_aspect = _torchvision_rrc((recipe.ops[0].settings["scale_min"], recipe.ops[0].settings["scale_max"]))
    want = {"area": (area, 0.015), "log_aspect": (log_aspect, 0.02), "flip": (0.5, 0.035),
            "op_max_share": (1 / len(AA_OPS), 0.02), "op_min_share": (1 / len(AA_OPS), 0.02), "mag_std": (1.5, 0.1),
            "sign": (0.5, 0.035), "erase": (recipe.ops[2].settings["p"], 0.03), "cutmix": (0.5, 0.035),
            "mixup_lam_var": (0.2**2 / (0.4**2 * 1.4), 0.01), "cutmix_lam_mean": (0.5, 0.03)}
    for key, (value, tol) in want.items():
        assert abs(got[key] - value) < tol, (key, got[key], value)


def test_counter_draws_are_uniform_and_independent_of_the_slot() -> None:
    d = Draws(0, np.arange(200_000), np.zeros(200_000, np.int64)).op(0)
    u = d.uniform(3)
    assert ((u >= 0) & (u < 1)).all()
    assert np.abs(np.histogram(u[:, 0], bins=10, range=(0, 1))[0] / 200_000 - 0.1).max() < 0.003
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.01 and abs(np.corrcoef(u[:, 1], u[:, 2])[0, 1]) < 0.01
    k = integers(u[:, 0], -3, 3)
    assert k.min() == -3 and k.max() == 3 and np.abs(np.bincount(k + 3) / 200_000 - 1 / 7).max() < 0.004
    b = beta(Draws(1, np.arange(50_000), np.zeros(50_000, np.int64)).op(2).uniform(50), 0.5, 2.0)
    assert abs(b.mean() - 0.2) < 0.005 and abs(b.var() - 0.5 * 2.0 / (2.5**2 * 3.5)) < 0.003


@pytest.mark.parametrize("spec", [s for s in op_recipes() if s not in op_recipes(drawing=True)] +
                         ["resize+re@units=px,fill=zero"])
def test_imported_reference_ops_cannot_draw(spec: str) -> None:
    """Ops and settings that only replay imported views refuse to draw new ones, in one line."""
    from drkit.errors import RecipeError

    recipe = get_recipe(spec)
    with pytest.raises(RecipeError, match="replays imported views only"):
        recipe.sample_batch(0, [0, 1], [0, 0], [(20, 20)] * 2, 10, 2)
