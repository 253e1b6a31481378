"""``drkit reinforce``: a config, the views it labels, the run that writes the store, and the
diagnostics said when it is done."""
from __future__ import annotations

from .. import callable_verb
from .config import ReinforceConfig, parse_shard
from .run import reinforce

__all__ = ["ReinforceConfig", "parse_shard", "reinforce"]

callable_verb(__name__)
