"""Teacher specs -> an ensemble module that maps [0, 1] images to averaged probabilities.

Schemes live in a registry (:data:`TEACHER_SCHEMES`, extended with :func:`register_teacher_scheme`):
``timm:NAME[?file=PATH][&size=S][&KEY=VALUE…]`` (timm's own pretrained machinery: hub weights, or a
local file via ``pretrained_cfg_overlay``; other keys become ``timm.create_model`` arguments),
``torchvision:NAME[?file=PATH][&size=S][&weights=TAG]``, and ``ckpt:DIR[?folds=all]`` (a ``drkit
train`` output; a ``--folds K`` directory loads as one out-of-fold group, each image labelled only by
members that never trained on it, or by all of them with ``folds=all``).

**The class count comes from the weights**: for ``?file=`` the classifier's shape is read from the
file and the model built with that many classes, so timm never silently swaps in a random head (the
loaded head is then compared with the file's). Every member is an :class:`~drkit.models.ImageModel`
carrying its own mean/std; input size, channels and classes must agree. ``weights_sha256`` is the
weight file's digest (the checkpoint's, the ``?file=``, or the hub file in a local cache), else the
marker ``"hub:<scheme>:<name>"`` (never hex, so never mistaken for a digest).
"""
from __future__ import annotations

from . import schemes as _schemes  # noqa: F401  (registers timm:, torchvision:, ckpt:)
from .diagnose import plain_stats
from .ensemble import TeacherEnsemble, call_teacher, load_teacher, predict, teacher_topk
from .spec import TEACHER_SCHEMES, TeacherInfo, TeacherSpec, parse_teacher_spec, register_teacher_scheme

__all__ = ["TEACHER_SCHEMES", "TeacherEnsemble", "TeacherInfo", "TeacherSpec", "call_teacher", "load_teacher",
           "parse_teacher_spec", "plain_stats", "predict", "register_teacher_scheme", "teacher_topk"]
