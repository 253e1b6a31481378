"""Teacher specs -> an ensemble module that maps [0, 1] images to averaged probabilities.

Spec schemes live in a registry (:data:`TEACHER_SCHEMES`, extended with
:func:`register_teacher_scheme`):

``timm:NAME[?file=PATH][&size=S][&KEY=VALUE…]``
    timm weights through timm's own pretrained machinery. Without ``file`` the hub weights of the
    model's default (or given ``NAME.tag``) pretrained cfg are fetched; with ``file`` a local
    ``.safetensors``/``.pth`` is loaded via ``pretrained_cfg_overlay=dict(file=PATH, …)``. Other
    keys become ``timm.create_model`` keyword arguments (ints/floats/bools parsed), e.g.
    ``&img_size=32&patch_size=4&depth=2`` for a small ViT.
``torchvision:NAME[?file=PATH][&size=S][&weights=TAG]``
    torchvision weights enum (``DEFAULT`` unless ``weights=TAG``), or a local state dict file.
``ckpt:DIR[?folds=all]``
    a drkit checkpoint (``drkit train`` output) via :func:`drkit.checkpoint.load_checkpoint`; a
    ``drkit train --folds K`` directory loads its K members as one out-of-fold group, routed so
    that each image is labelled only by members that never trained on it (``folds=all``: every
    member labels every image, for data none of them saw).

**The class count comes from the weights.** For ``?file=`` the classifier tensor's shape is read
from the file (key from timm's ``pretrained_cfg['classifier']``, or found by probing the
architecture) and the model is created with that many classes, so timm never silently swaps in a
random head; after loading, the head is compared with the file's tensor as a final guard. For hub
weights the count is the pretrained cfg's / the weights' category list. ``load_teacher(…,
num_classes=N)`` then refuses any member predicting a different number of classes.

Every member is an :class:`~drkit.models.ImageModel` carrying its own mean/std, so members with
different normalisations ensemble fine; input size, channel count and class count must agree.

``weights_sha256`` in :meth:`TeacherEnsemble.describe` is the sha256 of the weight file: the
checkpoint's ``model.safetensors`` (verified against its config), the ``?file=``, or, for hub
weights, the file in the local timm / Hugging Face / torch.hub cache when it can be found there.
When it cannot, the field holds the marker string ``"hub:<scheme>:<name>"`` (never hex, so it is
never mistaken for a digest).
"""
from __future__ import annotations

from . import schemes as _schemes  # noqa: F401  (registers timm:, torchvision:, ckpt:)
from .diagnose import plain_stats
from .ensemble import TeacherEnsemble, call_teacher, load_teacher, predict, teacher_topk
from .spec import TEACHER_SCHEMES, TeacherInfo, TeacherSpec, parse_teacher_spec, register_teacher_scheme

__all__ = [
    "TEACHER_SCHEMES",
    "TeacherEnsemble",
    "TeacherInfo",
    "TeacherSpec",
    "call_teacher",
    "load_teacher",
    "parse_teacher_spec",
    "plain_stats",
    "predict",
    "register_teacher_scheme",
    "teacher_topk",
]
