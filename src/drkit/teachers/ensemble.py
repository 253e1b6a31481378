"""Loaded members -> one frozen module that averages their probabilities; the ensemble on plain images."""
from __future__ import annotations

import itertools
import sys
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from ..augment import eval_transform
from ..device import amp_dtype, autocast, resolve_device
from ..errors import TeacherError
from ..folds import root_indices
from ..models import ImageModel
from .spec import TEACHER_SCHEMES, TeacherInfo, parse_teacher_spec

if TYPE_CHECKING:
    from ..sources import Source


class TeacherEnsemble(nn.Module):
    """Members' softmax probabilities averaged in float32: ``forward(x01) -> (N, num_classes)``. Always in eval
    mode (BatchNorm statistics must never move), frozen, channels_last; ``no_grad`` rather than ``inference_mode``
    so online-KD losses may use the probabilities as targets. Out-of-fold routing: a ``--folds`` directory's
    members form one group, every other member its own; after :meth:`bind`, each image averages the group members
    that never trained on it (nor, where possible, on its mixing partner), then the groups, so a folds directory
    weighs as one teacher."""

    def __init__(self, members: Sequence[ImageModel], infos: Sequence[TeacherInfo], amp: bool = True) -> None:
        super().__init__()
        if not members or len(members) != len(infos):
            raise TeacherError("a teacher ensemble needs at least one member")
        first = infos[0]
        agree = (("image_size", "input size"), ("in_chans", "input channels"), ("num_classes", "classes"))
        for info in infos[1:]:
            for attr, what in agree:
                if getattr(first, attr) != getattr(info, attr):
                    raise TeacherError(f"teachers disagree on {what}: {first.spec} has {getattr(first, attr)}, "
                                       f"{info.spec} has {getattr(info, attr)}"
                                       + ("; align them with &size=S" if attr == "image_size" else ""))
        known = [i for i in infos if i.classes]
        for info in known[1:]:
            if info.classes != known[0].classes:
                raise TeacherError(f"teachers disagree on class names: {known[0].spec} vs {info.spec}")
        self.members = nn.ModuleList(members)
        self.infos = list(infos)
        self.specs = [i.spec for i in infos]
        self.image_size, self.in_chans, self.num_classes = first.image_size, first.in_chans, first.num_classes
        self.classes: list[str] | None = list(known[0].classes) if known else None  # type: ignore[arg-type]
        self.amp = amp
        self.routes = [info.route for info in infos]
        self.routed = any(r is not None and not r.use_all for r in self.routes)
        keys = [r.group if r is not None else f"member{m}" for m, r in enumerate(self.routes)]
        self.groups = [[m for m, key in enumerate(keys) if key == g] for g in dict.fromkeys(keys)]
        self._root_ids: np.ndarray | None = None
        self.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        super().train(False)

    def train(self, mode: bool = True) -> "TeacherEnsemble":
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next((t.device for t in itertools.chain(self.parameters(), self.buffers())), torch.device("cpu"))

    def describe(self) -> list[dict[str, Any]]:
        """Per-member provenance and input config, JSON-ready (the store manifest's teachers)."""
        return [info.describe() for info in self.infos]

    # -- out-of-fold routing --------------------------------------------------------------
    def bind(self, src: Source) -> None:
        """Tie sample ids to ``src`` (the data being labelled). A folds group is refused unless
        ``src`` is cut from the very dataset its members trained on: sample ids of other data
        cannot say which member saw which image (``ckpt:DIR?folds=all`` says none did)."""
        root, ids = root_indices(src)
        for info in self.infos:
            _warn_single_member(info, root, ids, src)
        if not self.routed:
            return
        for route in {r.group: r for r in self.routes if r is not None and not r.use_all}.values():
            if root.fingerprint != route.split.root_fingerprint:
                raise TeacherError(
                    f"teacher {route.group} holds out-of-fold members trained on {route.split.root_spec} "
                    f"(fingerprint {route.split.root_fingerprint[:12]}…), but the data is {src.spec} "
                    f"(root fingerprint {root.fingerprint[:12]}…): its members cannot be routed. If none of them "
                    f"ever saw these images, use {route.group}?folds=all")
        self._root_ids = ids

    def _trained(self, member: int, sample_ids: np.ndarray) -> np.ndarray:
        route = self.routes[member]
        if route is None or route.use_all or self._root_ids is None:
            return np.zeros(sample_ids.shape, dtype=bool)
        return route.split.trained_on(self._root_ids[sample_ids], route.fold)

    def eligible(self, sample_ids: np.ndarray | Sequence[int],
                 partner_ids: np.ndarray | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mask, fallback): ``mask[b, m]`` = member m may label image b; ``fallback[b]`` = some
        group had no member that saw neither the image nor its mixing partner (``partner < 0``
        means none), so it labels with the members that never saw the image itself."""
        if self.routed and self._root_ids is None:
            raise TeacherError("this teacher routes out-of-fold members by sample: call bind(source) first")
        ids = np.asarray(sample_ids, dtype=np.int64)
        partners = np.full_like(ids, -1) if partner_ids is None else np.asarray(partner_ids, dtype=np.int64)
        has_partner = partners >= 0
        mask = np.zeros((ids.size, len(self.members)), dtype=bool)
        fallback = np.zeros(ids.size, dtype=bool)
        for group in self.groups:
            own = np.stack([~self._trained(m, ids) for m in group], 1)
            both = own & np.stack([~has_partner | ~self._trained(m, np.where(has_partner, partners, 0))
                                   for m in group], 1)
            strict = both.any(1)  # own.any(1) holds always: each image's fold has a member that never saw it
            mask[:, group] = np.where(strict[:, None], both, own)
            fallback |= ~strict
        return mask, fallback

    def _probs(self, member: int, x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, amp_dtype(self.amp, x.device)):
            logits = self.members[member](x)
        return logits.float().softmax(dim=-1)

    @torch.no_grad()
    def forward(self, x01: torch.Tensor, sample_ids: Any = None, partner_ids: Any = None) -> torch.Tensor:
        """``x01``: float NCHW in [0, 1] (or uint8); ``sample_ids`` (into the bound source) are required when
        the ensemble routes out-of-fold members; ``partner_ids``: each mixed view's partner (-1: none). The
        spatial size is not enforced (``reinforce --image-size`` may differ on purpose; a ViT then fails)."""
        if x01.ndim != 4 or x01.shape[1] != self.in_chans:
            raise TeacherError(f"teacher input must be N x {self.in_chans} x H x W (native {self.image_size} x "
                               f"{self.image_size}), got {' x '.join(map(str, x01.shape))}")
        x = x01.to(self.device, non_blocking=True)
        x = (x.float().div_(255) if x.dtype == torch.uint8 else x.float()).contiguous(memory_format=torch.channels_last)
        if not self.routed:
            return sum(self._probs(m, x) for m in range(len(self.members))) / len(self.members)
        if sample_ids is None:
            raise TeacherError("this teacher routes out-of-fold members by sample: pass sample_ids")
        mask, _ = self.eligible(_as_numpy(sample_ids), None if partner_ids is None else _as_numpy(partner_ids))
        out = torch.zeros(x.shape[0], self.num_classes, dtype=torch.float32, device=x.device)
        for group in self.groups:
            total = torch.zeros_like(out)
            for m in group:
                rows = torch.from_numpy(np.flatnonzero(mask[:, m])).to(x.device)
                if rows.numel():
                    total.index_add_(0, rows, self._probs(m, x.index_select(0, rows)))
            out += total / torch.from_numpy(mask[:, group].sum(1, keepdims=True)).to(x.device, torch.float32)
        return out / len(self.groups)


def _warn_single_member(info: TeacherInfo, root: Source, root_ids: np.ndarray, src: Source) -> None:
    """Say plainly when one member of a folds directory, loaded alone, labels images it trained on."""
    route = info.member_of
    if route is None or root.fingerprint != route.split.root_fingerprint:
        return
    seen = int(route.split.trained_on(root_ids, route.fold).sum())
    if seen:
        print(f"drkit: warning: teacher {info.spec} is member {route.fold} of the --folds directory {route.group} "
              f"and trained on {seen} of the {len(root_ids)} images of {src.spec}: their labels will be near "
              f"one-hot; use --teacher {route.group} to label each image only with members that never saw it",
              file=sys.stderr, flush=True)


def _as_numpy(ids: Any) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    return np.asarray(ids, dtype=np.int64).reshape(-1)


def call_teacher(teacher: nn.Module, x: torch.Tensor, sample_ids: Any = None, partner_ids: Any = None) -> torch.Tensor:
    """Probabilities from a teacher ensemble (routed by sample where it has out-of-fold
    members) or from any module that maps a batch to probabilities."""
    if getattr(teacher, "routed", False):
        return teacher(x, sample_ids=sample_ids, partner_ids=partner_ids)
    return teacher(x)


def teacher_topk(teacher: nn.Module, images: torch.Tensor, k: int, sample_ids: Any = None,
                 partner_ids: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, class ids) of the teacher's top-``k`` for a uint8 batch already on its
    device, sorted by probability: what ``reinforce`` stores and what a replay check compares."""
    x = images.float().div_(255).contiguous(memory_format=torch.channels_last)
    return call_teacher(teacher, x, sample_ids, partner_ids).float().topk(k, dim=-1, largest=True, sorted=True)


def predict(ensemble: TeacherEnsemble, x01_batch: torch.Tensor, out_device: str | torch.device = "cpu") -> torch.Tensor:
    """Probabilities for a batch on any device, returned float32 on ``out_device``."""
    return ensemble(x01_batch).to(out_device)


def _check_member(info: TeacherInfo, num_classes: int | None, classes: list[str] | None) -> None:
    if num_classes is not None and info.num_classes != num_classes:
        raise TeacherError(f"teacher {info.spec} predicts {info.num_classes} classes but the source has {num_classes}")
    if classes is None or info.classes is None or info.classes == classes:
        return
    diff, ours, theirs = next((i, a, b) for i, (a, b) in enumerate(
        itertools.zip_longest(info.classes, classes, fillvalue="<end>")) if a != b)
    raise TeacherError(f"teacher {info.spec} was trained on other classes than the source: "
                       f"class {diff} is {ours!r} vs {theirs!r}")


def load_teacher(specs: str | Sequence[str], device: str | torch.device = "cpu", num_classes: int | None = None,
                 classes: Sequence[str] | None = None, amp: bool = True) -> TeacherEnsemble:
    """Teacher spec(s) as a :class:`TeacherEnsemble` on ``device``; a member whose class count differs from the
    source's is refused, and a ``ckpt:`` member whose class names do (hub teachers carry none)."""
    spec_list = [specs] if isinstance(specs, str) else list(specs)
    if not spec_list:
        raise TeacherError("no teacher given")
    class_list = list(classes) if classes is not None else None
    if class_list is not None:
        if num_classes is not None and num_classes != len(class_list):
            raise TeacherError(f"num_classes={num_classes} but {len(class_list)} class names were given")
        num_classes = len(class_list)
    dev = resolve_device(device)
    loaded = []
    for spec in map(parse_teacher_spec, spec_list):
        got = TEACHER_SCHEMES[spec.scheme].loader(spec)
        loaded += got if isinstance(got, list) else [got]
    for _, info in loaded:
        _check_member(info, num_classes, class_list)
    return TeacherEnsemble([model.eval() for model, _ in loaded], [info for _, info in loaded], amp=amp).to(dev)


#: plain images the diagnostics look at (evenly strided: the first N of a folder are one class)
PLAIN_IMAGES = 1024


@torch.inference_mode()
def plain_stats(ens: nn.Module, src: Source, image_size: int, max_images: int = PLAIN_IMAGES,
                batch_size: int = 256, skipped: set[int] | None = None) -> dict[str, Any]:
    """Top-1 accuracy and mean top-1 probability of the (routed) ensemble on plain (un-augmented) images:
    the yardstick that tells whether a recipe destroys labels and whether the teachers memorised them."""
    idx = np.array([i for i in src.probe_indices(max_images) if i not in (skipped or set())], dtype=np.int64)
    correct, prob_sum = 0, 0.0
    for a in range(0, idx.size, batch_size):
        chunk = idx[a:a + batch_size]
        x = torch.stack([eval_transform(src.load_uint8(int(i)), image_size) for i in chunk])
        top_p, top_id = call_teacher(ens, x, sample_ids=chunk).float().cpu().max(-1)
        correct += int((top_id.numpy() == np.asarray(src.labels)[chunk]).sum())
        prob_sum += float(top_p.sum())
    count = int(idx.size)
    return {"images": count, "top1": correct / count if count else None,
            "mean_top1_prob": prob_sum / count if count else None}
