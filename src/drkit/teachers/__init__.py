"""Teacher specs -> an ensemble module that maps [0, 1] images to averaged probabilities.

Schemes live in a registry (:data:`TEACHER_SCHEMES`, :func:`register_teacher_scheme`): ``timm:NAME`` (timm's own
pretrained machinery), ``torchvision:NAME`` and ``ckpt:DIR`` (a ``drkit train`` output; a ``--folds`` directory
is one out-of-fold group); options as each scheme's ``usage`` says. The class count comes from the weights, so
timm never silently swaps in a random head; ``weights_sha256`` is the weight file's digest, else the marker
``"hub:<scheme>:<name>"`` (never hex, so never mistaken for a digest).
"""
from __future__ import annotations

from . import schemes as _schemes  # noqa: F401  (registers timm:, torchvision:, ckpt:)
from .ensemble import TeacherEnsemble, call_teacher, load_teacher, plain_stats, predict, teacher_topk
from .spec import TEACHER_SCHEMES, TeacherInfo, TeacherSpec, parse_teacher_spec, register_teacher_scheme

__all__ = ["TEACHER_SCHEMES", "TeacherEnsemble", "TeacherInfo", "TeacherSpec", "call_teacher", "load_teacher",
           "parse_teacher_spec", "plain_stats", "predict", "register_teacher_scheme", "teacher_topk"]
