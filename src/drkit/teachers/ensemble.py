"""Loaded members -> one frozen module that averages their probabilities."""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import nn

from drkit.errors import TeacherError
from drkit.models import ImageModel

from .spec import TEACHER_SCHEMES, TeacherInfo, parse_teacher_spec



def _amp_context(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """CUDA: autocast in bf16 where supported, else fp16. Elsewhere full fp32 (CPU bf16 would
    change the labels for no speed-up worth having)."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


class TeacherEnsemble(nn.Module):
    """Members' softmax probabilities averaged in float32: ``forward(x01) -> (N, num_classes)``.

    Always in eval mode (``train()`` is a no-op: a teacher's BatchNorm statistics must never
    move), parameters frozen, channels_last. Runs under ``torch.no_grad`` rather than
    ``inference_mode`` so online-KD losses may use the probabilities as targets.
    """

    def __init__(self, members: Sequence[ImageModel], infos: Sequence[TeacherInfo], amp: bool = True) -> None:
        super().__init__()
        if not members or len(members) != len(infos):
            raise TeacherError("a teacher ensemble needs at least one member")
        first = infos[0]
        for info in infos[1:]:
            for attr, what in (("image_size", "input size"), ("in_chans", "input channels"), ("num_classes", "classes")):
                a, b = getattr(first, attr), getattr(info, attr)
                if a != b:
                    raise TeacherError(
                        f"teachers disagree on {what}: {first.spec} has {a}, {info.spec} has {b}"
                        + ("; align them with &size=S" if attr == "image_size" else "")
                    )
        known = [i for i in infos if i.classes]
        for info in known[1:]:
            if info.classes != known[0].classes:
                raise TeacherError(f"teachers disagree on class names: {known[0].spec} vs {info.spec}")
        self.members = nn.ModuleList(members)
        self.infos = list(infos)
        self.specs = [i.spec for i in infos]
        self.image_size = first.image_size
        self.in_chans = first.in_chans
        self.num_classes = first.num_classes
        self.classes: list[str] | None = list(known[0].classes) if known else None  # type: ignore[arg-type]
        self.interpolation = first.interpolation  # the first member's; members may differ
        self.amp = amp
        for p in self.parameters():
            p.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        super().train(False)

    def train(self, mode: bool = True) -> "TeacherEnsemble":
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def describe(self) -> list[dict[str, Any]]:
        """Per-member provenance and input config, JSON-ready (the store manifest's teachers)."""
        return [info.describe() for info in self.infos]

    def _check_input(self, x: torch.Tensor) -> None:
        # The spatial size is not enforced: ``image_size`` is the members' native size, and a
        # caller may deliberately feed another one (``drkit reinforce --image-size``). Fixed-size
        # members (ViT) then fail in their own forward.
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            s = self.image_size
            raise TeacherError(
                f"teacher input must be N x {self.in_chans} x H x W (native {s} x {s}), "
                f"got {' x '.join(map(str, x.shape))}"
            )

    @torch.no_grad()
    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """``x01``: float NCHW in [0, 1] (uint8 is accepted and divided by 255)."""
        self._check_input(x01)
        device = self.device
        x = x01.to(device, non_blocking=True)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        x = x.contiguous(memory_format=torch.channels_last)
        total: torch.Tensor | None = None
        for member in self.members:
            with _amp_context(device, self.amp):
                logits = member(x)
            probs = logits.float().softmax(dim=-1)
            total = probs if total is None else total + probs
        assert total is not None
        return total / len(self.members)


def predict(ensemble: TeacherEnsemble, x01_batch: torch.Tensor, out_device: str | torch.device = "cpu") -> torch.Tensor:
    """Probabilities for a batch on any device, returned float32 on ``out_device``."""
    return ensemble(x01_batch).to(out_device)


def _check_classes(info: TeacherInfo, classes: list[str]) -> None:
    if info.classes is None or info.classes == classes:
        return
    diff = next((i for i, (a, b) in enumerate(zip(info.classes, classes)) if a != b), min(len(info.classes), len(classes)))
    ours = info.classes[diff] if diff < len(info.classes) else "<end>"
    theirs = classes[diff] if diff < len(classes) else "<end>"
    raise TeacherError(
        f"teacher {info.spec} was trained on other classes than the source: class {diff} is {ours!r} vs {theirs!r}"
    )


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise TeacherError(f"invalid device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TeacherError(f"device {device} requested but CUDA is not available")
    return dev


def load_teacher(
    specs: str | Sequence[str],
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    amp: bool = True,
) -> TeacherEnsemble:
    """Load one or several teacher specs into a :class:`TeacherEnsemble` on ``device``.

    ``num_classes`` (or ``len(classes)``) is the source's class count: a member predicting any
    other count is refused. ``classes`` also has to match the names a ``ckpt:`` teacher was
    trained on (hub teachers carry no comparable names). ``amp`` enables CUDA autocast.
    """
    spec_list = [specs] if isinstance(specs, str) else list(specs)
    if not spec_list:
        raise TeacherError("no teacher given")
    class_list = list(classes) if classes is not None else None
    if class_list is not None:
        if num_classes is not None and num_classes != len(class_list):
            raise TeacherError(f"num_classes={num_classes} but {len(class_list)} class names were given")
        num_classes = len(class_list)
    dev = _resolve_device(device)
    members: list[ImageModel] = []
    infos: list[TeacherInfo] = []
    for raw in spec_list:
        spec = parse_teacher_spec(raw)
        model, info = TEACHER_SCHEMES[spec.scheme].loader(spec)
        if num_classes is not None and info.num_classes != num_classes:
            raise TeacherError(f"teacher {raw} predicts {info.num_classes} classes but the source has {num_classes}")
        if class_list is not None:
            _check_classes(info, class_list)
        members.append(model.eval())
        infos.append(info)
    return TeacherEnsemble(members, infos, amp=amp).to(dev)

