"""Evaluation: metrics and calibration, ImageNet-C style corruptions, the ``drkit eval`` verb (nothing
loads a model or a dataset at import: scipy, Pillow and matplotlib are imported where they are needed)."""
from __future__ import annotations

from .. import callable_verb
from ..plots import plot_curves, reliability_diagram
from .corruptions import CORRUPTIONS, SEVERITIES, corrupt, corruption_seed, spatial_scale
from .metrics import MetricAccumulator, compute_metrics, reliability_bins
from .run import EvalConfig, evaluate, format_report

__all__ = ["CORRUPTIONS", "SEVERITIES", "EvalConfig", "MetricAccumulator", "compute_metrics", "corrupt",
           "corruption_seed", "evaluate", "format_report", "plot_curves", "reliability_bins", "reliability_diagram",
           "spatial_scale"]

callable_verb(__name__)
