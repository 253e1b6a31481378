"""The replayable-op protocol and its registry: an op draws integer parameters for a batch of
views (``draw``) and applies one view's to a uint8 CHW tensor (``apply``); generation and training
call the same ``apply`` (or its batched twin), which makes replay bit-exact."""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..defaults import SMALL_SIDE
from ..errors import RecipeError
from .codec import Field
from .draws import BatchContext, Draws


class Op:
    """Base class. Subclasses set ``name`` and ``defaults`` and implement the three methods."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: setting -> (lowest, highest) accepted value, checked when the op is built
    limits: ClassVar[dict[str, tuple[float, float]]] = {}
    geometric_source: ClassVar[bool] = False  # True: maps the source image to out_size

    def __init__(self, **settings: Any):
        unknown = set(settings) - set(self.defaults)
        if unknown:
            raise RecipeError(f"op {self.name!r} has no setting(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.settings = {**self.defaults, **settings}
        for k, v in self.settings.items():
            want = type(self.defaults[k])
            try:
                self.settings[k] = want(v)
            except (TypeError, ValueError):
                raise RecipeError(f"op {self.name!r}: {k}={v!r} is not a{'n' if want is int else ''} "
                                  f"{want.__name__}") from None
            if isinstance(v, float) and want is int and v != int(v):
                raise RecipeError(f"op {self.name!r}: {k}={v!r} must be a whole number")
        for k, (lo, hi) in self.limits.items():
            if not lo <= self.settings[k] <= hi:
                raise RecipeError(f"op {self.name!r}: {k}={self.settings[k]} must be in [{lo}, {hi}]")

    @classmethod
    def size_defaults(cls, side: int) -> dict[str, Any]:
        """Settings that follow the image side (:func:`~drkit.augment.recipe.resolve_recipe`)."""
        return {}

    def fields(self) -> list[Field]:
        raise NotImplementedError

    def draw(self, d: Draws, ctx: BatchContext) -> dict[str, np.ndarray]:
        """Every view of a batch at once, as int64 columns (a view's do not depend on its batch)."""
        raise RecipeError(f"{self.name} replays imported views only: it cannot draw new ones (reinforce "
                          "or train ERM with a drkit recipe instead)")

    def apply(self, img: torch.Tensor, params: dict[str, int], out_size: int) -> torch.Tensor:
        raise NotImplementedError

    def apply_batch(self, x: torch.Tensor, params: list[dict[str, int]], out_size: int) -> torch.Tensor:
        """:meth:`apply` of a batch ``[N, C, S, S]``; overridden, same bytes, where faster."""
        return torch.stack([self.apply(x[r], params[r], out_size) for r in range(x.shape[0])])

    def describe(self) -> dict[str, Any]:
        return {"op": self.name, **self.settings}


OPS: dict[str, type[Op]] = {}


def register_op(cls: type[Op]) -> type[Op]:
    """Class decorator: make an op available to recipe specs under ``cls.name``."""
    if not cls.name:
        raise ValueError("op class needs a name")
    OPS[cls.name] = cls
    return cls


def create_op(name: str, side: int | None = None, **settings: Any) -> Op:
    """An op by name; with ``side`` its size-dependent defaults are resolved for that image side."""
    try:
        cls = OPS[name]
    except KeyError:
        raise RecipeError(f"unknown augmentation op {name!r}; known: {sorted(OPS)}") from None
    if side is not None:
        settings = {**cls.size_defaults(int(side)), **settings}
    return cls(**settings)


#: on the CPU, up to this many pixels the batched ops fuse RandAugment's warps and colour ops and index erased
#: pixels flat; above, per-view grids and flat indices cost more than they save
FUSE_MAX_PIXELS = SMALL_SIDE * SMALL_SIDE

#: the side the reference recipes' magnitudes were tuned for (ImageNet training crops)
REFERENCE_SIDE = 224
