"""``TrainConfig``: every option of ``drkit train`` (its flags are generated from the fields),
checked in one place before any work. Imports no torch."""
from __future__ import annotations

# ruff: noqa: RUF009  (option() returns a dataclasses.field)
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..configs import DOWNLOAD_HELP, KW_ONLY, SPLIT_HELP, VerbConfig, check, option, section
from ..defaults import DISTILL_TEMPERATURE, LABEL_SMOOTHING, OPTIMIZERS
from ..device import AMP_MODES
from ..errors import DrkitError

if TYPE_CHECKING:
    from ..sources import Source

Mode = Literal["erm", "dr", "kd"]


def implied_mode(reinforced: Any, kd_teacher: Any) -> Mode:
    """The mode the data options ask for: DR with a store, KD with a teacher, else ERM."""
    return "dr" if reinforced is not None else "kd" if kd_teacher else "erm"


def json_object(value: dict[str, Any] | str | None) -> dict[str, Any]:
    """``--model-kwargs``: a dict, or the JSON text of one (empty or ``None``: no arguments)."""
    try:
        nan = lambda c: check(False, f"--model-kwargs has {c}: give a number")  # noqa: E731 (NaN, Infinity)
        parsed = json.loads(value or "{}", parse_constant=nan) if isinstance(value, str) else dict(value or {})
    except json.JSONDecodeError as e:
        raise DrkitError(f"--model-kwargs is not valid JSON ({e.msg}): {value!r}") from None
    check(isinstance(parsed, dict) and not {"num_classes", "in_chans", "pretrained"} & set(parsed),
          f"--model-kwargs must be a JSON object without num_classes, in_chans, pretrained (set by drkit): {value!r}")
    return parsed


@dataclasses.dataclass(frozen=True, **KW_ONLY)
class Optim(VerbConfig):
    """The schedule, optimiser and weight EMA (one code path for every mode)."""

    epochs: int = option(10)
    batch_size: int = option(128)
    lr: float | None = option(None, help="peak learning rate (default: 0.1 sgd, 2e-3 adamw, scaled by batch/256)")
    opt: str = option("sgd", choices=tuple(OPTIMIZERS))
    weight_decay: float | None = option(None)
    warmup_epochs: float = option(1.0)
    ema: float | None = option(None, metavar="DECAY", help="keep an EMA of the weights")

    @property
    def peak_lr(self) -> float:
        return float(self.lr if self.lr is not None else OPTIMIZERS[self.opt]["lr"] * self.batch_size / 256)

    @property
    def decay(self) -> float:
        return float(self.weight_decay if self.weight_decay is not None else OPTIMIZERS[self.opt]["weight_decay"])


@dataclasses.dataclass(frozen=True, **KW_ONLY)
class Distill(VerbConfig):
    """DR and KD: the soft targets' temperature, and how DR draws its stored views."""

    temperature: float | None = option(None, help=f"KD/DR softmax temperature (default {DISTILL_TEMPERATURE:g}, "
                                       "the measured best; 1 = plain CE)")
    soften_targets: bool | None = option(None, help="KD/DR: also soften the targets, p**(1/T) renormalised "
                                         "(default: on when T != 1)")
    views_per_image: int = option(1, help="DR: stored views per decoded image")
    plain_fraction: float = option(0.0, help="DR: share of plain hard-label samples")

    @property
    def resolved(self) -> dict[str, Any]:
        """The loss settings as trained, and which came from the defaults (recorded in the run's config)."""
        t = float(self.temperature) if self.temperature is not None else DISTILL_TEMPERATURE
        soften = bool(self.soften_targets) if self.soften_targets is not None else t != 1.0
        return {"temperature": t, "soften_targets": soften,
                "distill_defaults": [k for k in ("temperature", "soften_targets") if getattr(self, k) is None]}


@dataclasses.dataclass(frozen=True, **KW_ONLY)
class Runtime(VerbConfig):
    """Where and how the run executes (workers, device, resume and quiet do not change its result)."""

    workers: int = option(2, free=True)
    device: str = option("auto", free=True)
    amp: str = option("auto", choices=AMP_MODES)
    channels_last: bool = option(True)
    limit_batches: int | None = option(None, help="stop each epoch after this many batches (smoke runs)")
    resume: bool = option(False, free=True)
    quiet: bool = option(False, free=True)


@dataclasses.dataclass(frozen=True, **KW_ONLY)
class TrainConfig(VerbConfig):
    """One student run (see ``drkit train --help``): what to learn at the top, how in typed sections
    (:class:`Optim`, :class:`Distill`, :class:`Runtime`); ``TrainConfig.build(epochs=3, ...)`` and the
    flags take every option flat, routed to its section by name.

    ``mode`` is DR with ``reinforced`` (the store's views and soft labels), online KD with
    ``kd_teacher`` (the teacher labels each augmented batch), else ERM (``recipe`` views, hard or
    λ-mixed labels, ``label_smoothing``); left out, it is set from those options at construction,
    given, it must agree with them. ``batch_size`` is the global batch in *views*: split
    evenly across torchrun ranks, and with ``views_per_image = k`` each rank's batch is
    ``batch_size / ranks / k`` decoded images x k stored views each. Defaults: lr 0.1 (SGD) or
    2e-3 (AdamW) times ``batch_size / 256``, weight decay 5e-4 / 0.05, image size the store's
    (DR) or the source's native side. ``model_kwargs`` (a dict, or its JSON text) go to the model
    factory. ``folds = K`` trains K out-of-fold members into ``out/fold{k}`` plus ``folds.json``.
    """

    data: str | Source = option(required=True, metavar="SRC")
    val: str | Source | None = option(None, metavar="SRC")
    model: str = option("drkit_cnn_tiny", required=True, help="drkit_* | timm name | torchvision:NAME")
    model_kwargs: dict[str, Any] | str | None = option(
        None, metavar="JSON", help='extra model arguments as a JSON object, e.g. \'{"img_size": 16, "depth": 1}\'')
    reinforced: str | Path | None = option(None, metavar="DIR", help="train on this store's soft labels")
    kd_teacher: tuple[str, ...] | None = option(None, metavar="T", help="online KD from this teacher")
    recipe: str | None = option(None, help="augmentation for ERM/KD (default: padcrop for small images, rrc else)")
    image_size: int | None = option(None)
    label_smoothing: float | None = option(None, help=f"ERM only (default {LABEL_SMOOTHING}; 0 with --folds: "
                                           "teachers' probabilities become labels)")
    out: str | Path | None = option(None, free=True, required=True, metavar="DIR")  # a moved run resumes
    seed: int = option(0)
    init: str | None = option(None, metavar="CKPT", help="start from these weights (fine-tuning)")
    folds: int | None = option(None, metavar="K", help="train K out-of-fold teachers into OUT/fold{k} (member k never "
                               "sees fold k); --teacher ckpt:OUT then labels each image only with members that never "
                               "saw it")
    split: str | None = option(None, help=SPLIT_HELP)
    download: bool = option(False, free=True, help=DOWNLOAD_HELP)
    command: Sequence[str] | None = option(None, free=True, internal=True)
    mode: Mode | None = option(None, internal=True, derived=True)
    optim: Optim = section(Optim)
    distill: Distill = section(Distill)
    runtime: Runtime = section(Runtime)

    def __post_init__(self) -> None:
        teachers = self.kd_teacher
        if teachers is not None:  # one spec or several: a tuple
            object.__setattr__(self, "kd_teacher", (teachers,) if isinstance(teachers, str) else tuple(teachers))
        object.__setattr__(self, "model_kwargs", json_object(self.model_kwargs))
        if self.mode is None:
            object.__setattr__(self, "mode", implied_mode(self.reinforced, self.kd_teacher))

    @classmethod
    def upgrade(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        """A ``to_dict()`` saved flat, or before ``mode``, a ``kd_teacher`` tuple and a ``model_kwargs`` dict."""
        saved = super().upgrade(saved)
        kd = [saved["kd_teacher"]] if isinstance(saved.get("kd_teacher"), str) else saved.get("kd_teacher")
        out = {**saved, "kd_teacher": kd, "model_kwargs": json_object(saved.get("model_kwargs"))}
        mode = implied_mode(out.get("reinforced"), kd)  # options a mode ignored, saved before they were refused:
        out.update({"temperature": None, "soften_targets": None} if mode == "erm" else {"label_smoothing": None})
        return {"mode": mode, **out}

    # -- resolved views of options ----------------------------------------------------------
    @property
    def smoothing(self) -> float:
        """ERM label smoothing, resolved: ``LABEL_SMOOTHING``, or 0 for ``--folds`` teachers."""
        if self.label_smoothing is not None:
            return float(self.label_smoothing)
        return 0.0 if self.folds else LABEL_SMOOTHING

    # -- refusals ----------------------------------------------------------------------------
    def validate(self, world_size: int = 1) -> TrainConfig:
        """Refuse what the options (and ``out``'s state) rule out; returns ``self``."""
        o, d, rt = self.optim, self.distill, self.runtime
        check(self.out is not None and str(self.out) != "", "train needs an output directory (--out DIR)")
        check(self.reinforced is None or not self.kd_teacher, "--reinforced and --kd-teacher exclude each other: "
              "DR replays stored labels, KD runs the teacher online")
        check(self.mode == implied_mode(self.reinforced, self.kd_teacher), f"mode {self.mode!r} does not match the "
              "options: DR needs reinforced (--reinforced DIR), KD kd_teacher (--kd-teacher T), ERM neither")
        check(o.epochs >= 1 and o.batch_size >= 1, "--epochs and --batch-size must be positive")
        check(rt.workers >= 0, f"--workers must be 0 or more, got {rt.workers}")
        check(isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"--seed must be in 0..2**63-1, got {self.seed}")
        check(o.opt in OPTIMIZERS, f"--opt must be one of {', '.join(OPTIMIZERS)}, got {o.opt!r}")
        check(rt.amp in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}, got {rt.amp!r}")
        check(d.views_per_image >= 1 and o.batch_size % (world_size * d.views_per_image) == 0,
              f"--views-per-image must be positive and --batch-size {o.batch_size} a multiple of ranks x it "
              f"({world_size} x {d.views_per_image})")
        check(self.reinforced is not None or (d.views_per_image == 1 and d.plain_fraction == 0.0),
              "--views-per-image and --plain-fraction apply to DR (--reinforced) only")
        check(self.mode != "erm" or (d.temperature is None and d.soften_targets is None),
              "--temperature and --soften-targets apply to DR (--reinforced) and KD (--kd-teacher) only")
        check(self.mode == "erm" or self.label_smoothing is None,
              "--label-smoothing applies to ERM only: DR and KD learn the teachers' soft labels")
        check(0.0 <= self.smoothing < 1.0 and d.resolved["temperature"] > 0 and o.warmup_epochs >= 0 and o.peak_lr > 0
              and o.decay >= 0, "need 0 <= --label-smoothing < 1, --temperature > 0, --warmup-epochs >= 0, --lr > 0 "
              "and --weight-decay >= 0")
        check(rt.limit_batches is None or rt.limit_batches >= 1, "--limit-batches must be positive")
        check(self.image_size is None or self.image_size >= 1, f"--image-size must be positive, got {self.image_size}")
        check(self.folds is None or self.folds >= 2, f"--folds must be at least 2, got {self.folds}")
        if self.folds is None:
            from .outputs import METRICS
            from .state import has_state

            out = Path(self.out)
            if rt.resume:
                check(has_state(out), f"--resume: {out} has no training state to resume (no {out}/state/state.json)")
            else:
                check(not ((out / "config.json").exists() or has_state(out) or (out / METRICS).exists()),
                      f"{out} already holds a training run; pass --resume to continue it or choose another --out")
        return self
