"""Pins drkit.evaluate.corruptions: shapes, determinism, no global RNG, severity trend."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from drkit.errors import DrkitError
from drkit.evaluate import CORRUPTIONS, corrupt, corruption_seed, spatial_scale

REQUIRED = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "gaussian_blur",
    "contrast",
    "brightness",
    "jpeg_compression",
    "pixelate",
    "elastic_transform",
}
# Families that draw from the rng (the others are deterministic functions of the image).
STOCHASTIC = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "motion_blur",
    "elastic_transform",
}
FAMILIES = sorted(CORRUPTIONS)
KINDS = {"gray28": (1, 28, 28), "rgb32": (3, 32, 32)}
N_IMAGES = 8


def _synthetic(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Smooth background + fine pixel texture + two flat rectangles, in mid-range values.

    Gradients, edges and per-pixel detail, so blurs and resampling have something to remove
    wherever their grid falls.
    """
    rng = np.random.default_rng(seed)
    c, h, w = shape
    coarse = rng.random((c, 4, 4))
    yy = np.linspace(0, 3, h)
    xx = np.linspace(0, 3, w)
    # bilinear upsampling of the 4x4 grid, written out to keep the test free of scipy
    y0 = np.minimum(yy.astype(int), 2)
    x0 = np.minimum(xx.astype(int), 2)
    fy = (yy - y0)[:, None]
    fx = (xx - x0)[None, :]
    img = (
        coarse[:, y0][:, :, x0] * (1 - fy) * (1 - fx)
        + coarse[:, y0 + 1][:, :, x0] * fy * (1 - fx)
        + coarse[:, y0][:, :, x0 + 1] * (1 - fy) * fx
        + coarse[:, y0 + 1][:, :, x0 + 1] * fy * fx
    )
    img = 0.2 + 0.45 * img + 0.15 * rng.random((c, h, w))
    for _ in range(2):
        top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[:, top : top + rng.integers(5, h // 2), left : left + rng.integers(5, w // 2)] = rng.random((c, 1, 1))
    return torch.from_numpy(np.rint(img * 255).astype(np.uint8))


def _images(kind: str) -> list[torch.Tensor]:
    return [_synthetic(KINDS[kind], seed) for seed in range(N_IMAGES)]


def _mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def test_registry_has_the_required_families() -> None:
    assert REQUIRED <= set(CORRUPTIONS)
    assert all(callable(fn) for fn in CORRUPTIONS.values())


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("family", FAMILIES)
def test_corruption_contract(family: str, kind: str) -> None:
    """Shape/dtype kept, image changed, reproducible from the seed, distortion grows with severity."""
    images = _images(kind)
    mean_distance = []
    for severity in range(1, 6):
        dists = []
        for i, img in enumerate(images):
            out = corrupt(img, family, severity, corruption_seed(0, family, severity, i))
            assert out.shape == img.shape and out.dtype == torch.uint8
            assert not torch.equal(out, img), f"{family}@{severity} left image {i} unchanged"
            again = corrupt(img, family, severity, corruption_seed(0, family, severity, i))
            assert torch.equal(out, again), f"{family}@{severity} is not reproducible"
            dists.append(_mad(out, img))
        mean_distance.append(float(np.mean(dists)))
    # Strictly increasing on average over images and seeds: every severity step distorts more.
    for lo, hi in zip(mean_distance, mean_distance[1:]):
        assert hi > lo, f"{family} on {kind}: mean |diff| by severity {mean_distance}"


@pytest.mark.parametrize("family", sorted(STOCHASTIC))
def test_stochastic_families_depend_on_the_seed(family: str) -> None:
    img = _synthetic(KINDS["rgb32"], 0)
    a = corrupt(img, family, 3, corruption_seed(0, family, 3, 0))
    b = corrupt(img, family, 3, corruption_seed(1, family, 3, 0))
    c = corrupt(img, family, 3, corruption_seed(0, family, 3, 1))
    assert not torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("family", FAMILIES)
def test_non_square_and_input_untouched(family: str) -> None:
    img = _synthetic((3, 40, 24), 7)
    before = img.clone()
    out = corrupt(img, family, 5, corruption_seed(0, family, 5, 0))
    assert out.shape == (3, 40, 24) and out.dtype == torch.uint8
    assert torch.equal(img, before)


def test_no_global_rng_is_touched() -> None:
    np.random.seed(123)
    torch.manual_seed(123)
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    img = _synthetic(KINDS["rgb32"], 1)
    for family in FAMILIES:
        corrupt(img, family, 3, corruption_seed(5, family, 3, 0))
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_corruption_seed_keys() -> None:
    def draw(*key) -> float:
        return float(corruption_seed(*key).random())

    assert draw(0, "gaussian_noise", 1, 0) == draw(0, "gaussian_noise", 1, 0)
    keys = [
        (0, "gaussian_noise", 1, 0),
        (1, "gaussian_noise", 1, 0),
        (0, "shot_noise", 1, 0),
        (0, "gaussian_noise", 2, 0),
        (0, "gaussian_noise", 1, 1),
    ]
    assert len({draw(*k) for k in keys}) == len(keys)


def test_brightness_matches_hsv_round_trip() -> None:
    img = _synthetic(KINDS["rgb32"], 2)
    img[:, 0, 0] = 0  # a black pixel: V = 0 becomes grey
    out = corrupt(img, "brightness", 2, np.random.default_rng(0)).numpy()
    x = img.numpy().astype(np.float64) / 255
    for (r, c) in [(0, 0), (5, 7), (20, 3), (31, 31)]:
        h, s, v = colorsys.rgb_to_hsv(*x[:, r, c])
        expected = np.array(colorsys.hsv_to_rgb(h, s, min(v + 0.2, 1.0)))
        assert np.abs(out[:, r, c] - np.rint(expected * 255)).max() <= 1


def test_bad_arguments_are_refused() -> None:
    img = _synthetic(KINDS["gray28"], 0)
    rng = np.random.default_rng(0)
    with pytest.raises(DrkitError, match="unknown corruption"):
        corrupt(img, "frost", 1, rng)
    for severity in (0, 6, 2.5, None, "3"):
        with pytest.raises(DrkitError, match="severity"):
            corrupt(img, "contrast", severity, rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        corrupt(img.float(), "contrast", 1, rng)
    with pytest.raises(ValueError):
        corrupt(torch.zeros(2, 8, 8, dtype=torch.uint8), "contrast", 1, rng)


def test_spatial_scale() -> None:
    assert spatial_scale(224, 224) == 1.0
    assert spatial_scale(32, 64) == pytest.approx((32 / 224) ** 0.5)
