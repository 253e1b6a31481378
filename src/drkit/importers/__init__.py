"""Stores from elsewhere: the reference work's reinforcement files (``drkit import-mldr``)."""
from __future__ import annotations

from .mldr import import_mldr

__all__ = ["import_mldr"]
