"""Evaluation: metrics and calibration, ImageNet-C style corruptions, figures.

The building blocks below import only torch/numpy (scipy, Pillow and matplotlib are imported
inside the functions that need them), and nothing here loads a model or a dataset at import.
"""
from __future__ import annotations

from drkit._verbs import make_callable
from drkit.evaluate.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    corrupt,
    corruption_seed,
    spatial_scale,
)
from drkit.evaluate.metrics import MetricAccumulator, compute_metrics, reliability_bins
from drkit.evaluate.plots import plot_curves, reliability_diagram

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "MetricAccumulator",
    "compute_metrics",
    "corrupt",
    "corruption_seed",
    "plot_curves",
    "reliability_bins",
    "reliability_diagram",
    "spatial_scale",
]

# --------------------------------------------------------------------------------------------
# The `evaluate(...)` verb (checkpoint + source -> metrics JSON, `drkit eval`) goes below.
# It must import models, checkpoint and sources inside the function, not at module import.
# --------------------------------------------------------------------------------------------


def __getattr__(name: str):  # the verb pulls in models/sources: resolve it lazily
    if name in ("evaluate", "format_report"):
        from drkit.evaluate import run

        return getattr(run, name)
    raise AttributeError(f"module 'drkit.evaluate' has no attribute {name!r}")


make_callable(__name__, "drkit.evaluate.run:evaluate")
