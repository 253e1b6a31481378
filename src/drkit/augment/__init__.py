"""Replayable augmentations: ops with ``draw(draws, ctx) -> params`` and ``apply(img, params, size)``,
recipes that chain them, and a lossless fixed-width codec for the parameters."""
from __future__ import annotations

from . import autoaugment, erasing, geometric, mixing  # noqa: F401  (register the ops)
from .base import OPS, Op, create_op, register_op
from .codec import BitCodec, Field
from .geometric import eval_transform
from .recipe import RECIPES, SMALL_SIDE, Recipe, ViewParams, default_recipe, get_recipe, resolve_recipe
from .replay import ImageLoader, ViewLookup, ViewSampler, partner_of, partner_params, render_view

__all__ = ["OPS", "Op", "create_op", "register_op", "BitCodec", "Field", "eval_transform",
           "RECIPES", "SMALL_SIDE", "Recipe", "ViewParams", "default_recipe", "get_recipe", "resolve_recipe",
           "ImageLoader", "ViewLookup", "ViewSampler", "partner_of", "partner_params", "render_view"]
