"""Where a view's parameters come from (sampled: :class:`ViewSampler`; stored: a
:class:`ViewLookup`), how a mixed view finds its partner's, and :func:`render_view`, one view
through ``Recipe.render``: the batched renderer's oracle in the tests."""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch

from .recipe import Recipe, ViewParams

#: decoded uint8 CHW image of a sample, or ``None`` for an image skipped as undecodable
ImageLoader = Callable[[int], "torch.Tensor | None"]


class ViewLookup(Protocol):
    """Parameters of view ``view`` of sample ``sample`` (with a ``"mix"`` entry when it mixes)."""

    def __call__(self, sample: int, view: int) -> ViewParams: ...


class ViewSampler:
    """Fresh views, drawn as a store was generated; :meth:`batch` is ~50x cheaper per view than one."""

    def __init__(self, recipe: Recipe, seed: int, num_samples: int, num_views: int,
                 image_hw: Callable[[int], tuple[int, int]], window: int = 0):
        self.recipe, self.seed = recipe, int(seed)
        self.num_samples, self.num_views, self.image_hw = int(num_samples), int(num_views), image_hw
        self.window = int(window)  # mixing partners within this many samples (0: anywhere)

    def __call__(self, sample: int, view: int) -> ViewParams:
        return self.batch([(sample, view)])[0]

    def batch(self, pairs: Sequence[tuple[int, int]]) -> list[ViewParams]:
        hw = {i: self.image_hw(i) for i in dict.fromkeys(i for i, _ in pairs)}  # NS views share a sample
        hws = [hw[i] for i, _ in pairs]
        return self.recipe.sample_batch(self.seed, [i for i, _ in pairs], [v for _, v in pairs], hws,
                                        self.num_samples, self.num_views, self.window)


def partner_of(params: ViewParams) -> tuple[int, int] | None:
    mix = params.get("mix")
    if mix is None or not mix["mode"]:
        return None
    return int(mix["partner"]), int(mix["partner_view"])


def partner_params(params: ViewParams, lookup: ViewLookup) -> ViewParams | None:
    """The partner's parameters: stored inside the record (an imported view), else its view ``partner_view``."""
    partner = partner_of(params)
    if partner is None:
        return None
    inline = params["mix"].get("partner_params")
    return inline if inline is not None else lookup(*partner)


def render_view(recipe: Recipe, lookup: ViewLookup, load: ImageLoader, sample: int, view: int, size: int, *,
                params: ViewParams | None = None, image: torch.Tensor | None = None) -> torch.Tensor | None:
    """uint8 CHW at ``size``: view ``view`` of ``sample``, mixed with its partner's when it mixes;
    ``None`` when ``load`` returned ``None`` for it or its partner (skipped with ``--skip-bad``)."""
    params = lookup(sample, view) if params is None else params
    img = load(sample) if image is None else image
    if img is None:
        return None
    partner = partner_of(params)
    if partner is None:
        return recipe.render(img, params, size)
    partner_img = load(partner[0])
    if partner_img is None:
        return None
    return recipe.render(img, params, size, partner_img, partner_params(params, lookup))
