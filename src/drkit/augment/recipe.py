"""Recipes: an ordered list of replayable ops, parsed from specs like ``rrc+ra@m=5+re``.

A view's randomness comes from ``(seed, sample_id, view)`` and nothing else, so any worker, rank
or resumed run draws the same parameters for the same view (sampler 2, :mod:`~drkit.augment.draws`;
a ``reinforce`` run begun with sampler 1 is refused).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..defaults import SMALL_SIDE
from ..errors import RecipeError
from ..textspec import split_options
from .base import Op, create_op
from .codec import BitCodec
from .draws import BatchContext, Draws
from .mixing import MixUpCutMix

ViewParams = dict[str, dict[str, int]]

#: the parameter sampler stores record; reinforce refuses to resume a run begun with another
SAMPLER = 2

# Named recipes (design.md). Any `+`-joined op list is valid; these are the documented ones.
RECIPES: dict[str, str] = {**{k: k for k in ("rrc", "padcrop", "rrc+ra+re", "rrc+ta", "rrc+mix", "rrc+ra+re+mix",
                                             "padcrop+ra+re")}, "none": "resize"}


class Recipe:
    """Base ops (first one maps source -> output size) plus an optional final mixing op."""

    def __init__(self, ops: list[Op], mix: MixUpCutMix | None = None):
        if not ops or not ops[0].geometric_source:
            raise RecipeError("a recipe starts with exactly one of rrc | padcrop | resize")
        if any(op.geometric_source for op in ops[1:]):
            raise RecipeError("a recipe has only one crop op (rrc | padcrop | resize), first")
        names = [op.name for op in ops]
        if len(set(names)) != len(names):
            raise RecipeError(f"recipe repeats an op: {'+'.join(names)}")
        self.ops, self.mixer = ops, mix
        self.codec = BitCodec([(op.name, op.fields()) for op in ops])

    @property
    def spec(self) -> str:
        """Canonical spec with every setting spelled out (round-trips through get_recipe)."""
        parts = []
        for op in self.ops + ([self.mixer] if self.mixer else []):
            opts = ",".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in op.settings.items())
            parts.append(f"{op.name}@{opts}" if opts else op.name)
        return "+".join(parts)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "ops": [op.describe() for op in self.ops],
                "mix": self.mixer.describe() if self.mixer else None, "code_bytes": self.code_bytes}

    @property
    def mixes(self) -> bool:
        return self.mixer is not None

    @property
    def mix_layout(self) -> str | None:
        """``"drkit"`` (partner view, 1/255 box), ``"reference"`` (imported: pixel box, inline partner), ``None``."""
        return None if self.mixer is None else getattr(self.mixer, "layout", "drkit")

    @property
    def code_bytes(self) -> int:
        return self.codec.num_bytes

    def __repr__(self) -> str:
        return f"Recipe({self.spec!r})"

    def sample(self, seed: int, sample_id: int, view: int, src_hw: tuple[int, int],
               num_samples: int, num_views: int, window: int = 0) -> ViewParams:
        """All parameters of one view, a pure function of its arguments."""
        return self.sample_batch(seed, [sample_id], [view], [src_hw], num_samples, num_views, window)[0]

    def sample_batch(self, seed: int, samples: Sequence[int], views: Sequence[int], src_hw: Sequence[tuple[int, int]],
                     num_samples: int, num_views: int, window: int = 0) -> list[ViewParams]:
        """:meth:`sample` of many views; each view's parameters are the same alone or in any batch."""
        if not len(samples):
            return []
        hw = np.asarray(src_hw, dtype=np.int64).reshape(-1, 2)
        ctx = BatchContext(hw[:, 0], hw[:, 1], np.asarray(samples, dtype=np.int64), int(num_samples),
                           int(num_views), int(window))
        d = Draws(seed, samples, views)
        ops = self.ops + ([self.mixer] if self.mixer is not None else [])
        per_op = []
        for k, op in enumerate(ops):
            cols = op.draw(d.op(k), ctx)
            per_op.append([dict(zip(cols, row)) for row in zip(*(np.asarray(c).tolist() for c in cols.values()))])
        return [dict(zip([op.name for op in ops], view)) for view in zip(*per_op)]

    def encode(self, params: ViewParams) -> np.ndarray:
        return self.codec.encode(params)

    def decode(self, code: np.ndarray | bytes) -> ViewParams:
        return self.codec.decode(code)

    def render_base(self, img: torch.Tensor, params: ViewParams, out_size: int) -> torch.Tensor:
        if img.dtype != torch.uint8 or img.ndim != 3:
            raise RecipeError(f"render expects a uint8 CHW tensor, got {img.dtype} {tuple(img.shape)}")
        for op in self.ops:
            img = op.apply(img, params[op.name], out_size)
        return img

    def render(self, img: torch.Tensor, params: ViewParams, out_size: int,
               partner_img: torch.Tensor | None = None, partner_params: ViewParams | None = None) -> torch.Tensor:
        """The one replay function: generation and training both call it."""
        out = self.render_base(img, params, out_size)
        mix = params.get("mix")
        if self.mixer is None or mix is None or mix["mode"] == 0:
            return out
        if partner_img is None or partner_params is None:
            raise RecipeError("this view mixes with another sample: pass partner_img and partner_params")
        partner = self.render_base(partner_img, partner_params, out_size)
        return self.mixer.mix(out, partner, mix)

    def mix_weight(self, params: ViewParams, out_size: int) -> float:
        if self.mixer is None or "mix" not in params:
            return 1.0
        return self.mixer.weight(params["mix"], out_size)


def default_recipe(side: int, strong: bool = False) -> str:
    """Pad-crop + flip for small images (RandAugment, erasing and small crops destroy 28-32 px
    images); random-resized crop (``strong``: + RandAugment + erasing) for larger ones."""
    return "padcrop" if side <= SMALL_SIDE else "rrc+ra+re" if strong else "rrc"


def resolve_recipe(spec: str | None, side: int, strong: bool = False) -> Recipe:
    """What ``--recipe`` means for images of this side: ``None``/``auto`` picks :func:`default_recipe`;
    size-dependent settings left unspecified follow ``side`` (the spec then spells them out)."""
    if side < 1:
        raise RecipeError(f"image side must be positive, got {side}")
    name = default_recipe(side, strong) if spec is None or spec.strip() in ("", "auto") else spec
    return get_recipe(name, side=side)


def get_recipe(spec: str | dict[str, Any] | Recipe, side: int | None = None) -> Recipe:
    """A recipe from a spec string (``padcrop+ra@m=5,n=1+re@p=0.5``) or a manifest dict; ``side``
    resolves size-dependent defaults (see :func:`resolve_recipe`)."""
    if isinstance(spec, Recipe):
        return spec
    if isinstance(spec, dict):
        spec = spec["spec"]
    text = RECIPES.get(spec.strip(), spec.strip())
    if not text:
        raise RecipeError("empty recipe spec")
    ops: list[Op] = []
    for token in text.split("+"):
        name, settings = split_options(token, context=f"recipe op {token.strip()!r}", error=RecipeError)
        ops.append(create_op(name.strip(), side=side, **settings))
    if any(isinstance(op, MixUpCutMix) for op in ops[:-1]):
        raise RecipeError("mix must be the last op of a recipe")
    return Recipe(ops[:-1], ops[-1]) if isinstance(ops[-1], MixUpCutMix) else Recipe(ops)
