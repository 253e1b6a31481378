"""``TrainConfig``: every option of ``drkit train``, checked in one place before any work."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..configs import FREE, VerbConfig, check
from ..defaults import DISTILL_TEMPERATURE, LABEL_SMOOTHING
from ..device import AMP_MODES
from ..errors import DrkitError
from .optim import DEFAULTS, default_lr
from .outputs import METRICS
from .state import has_state


@dataclasses.dataclass(frozen=True)
class TrainConfig(VerbConfig):
    """One student run (see ``drkit train --help``).

    Mode: DR with ``reinforced`` (the store's views and soft labels), online KD with
    ``kd_teacher`` (the teacher labels each augmented batch), else ERM (``recipe`` views, hard or
    λ-mixed labels, ``label_smoothing``). ``batch_size`` is the global batch in *views*: split
    evenly across torchrun ranks, and with ``views_per_image = k`` each rank's batch is
    ``batch_size / ranks / k`` decoded images x k stored views each. Defaults: lr 0.1 (SGD) or
    2e-3 (AdamW) times ``batch_size / 256``, weight decay 5e-4 / 0.05, image size the store's
    (DR) or the source's native side. ``model_kwargs`` (dict or JSON text) go to the model
    factory. ``folds = K`` trains K out-of-fold members into ``out/fold{k}`` plus ``folds.json``.
    """

    data: Any
    out: Any = None
    val: Any = None
    model: str = "drkit_cnn_tiny"
    model_kwargs: Any = None
    reinforced: Any = None
    kd_teacher: Any = None
    recipe: str | None = None
    image_size: int | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    opt: str = "sgd"
    weight_decay: float | None = None
    warmup_epochs: float = 1.0
    label_smoothing: float | None = None
    temperature: float | None = None
    soften_targets: bool | None = None
    views_per_image: int = 1
    plain_fraction: float = 0.0
    ema: float | None = None
    workers: int = dataclasses.field(default=2, metadata=FREE)
    device: str = dataclasses.field(default="auto", metadata=FREE)
    amp: str = "auto"
    channels_last: bool = True
    seed: int = 0
    resume: bool = dataclasses.field(default=False, metadata=FREE)
    init: str | None = None
    limit_batches: int | None = None
    folds: int | None = None
    quiet: bool = dataclasses.field(default=False, metadata=FREE)
    split: str | None = None
    download: bool = dataclasses.field(default=False, metadata=FREE)
    command: Any = dataclasses.field(default=None, metadata=FREE)

    # -- resolved views of options ----------------------------------------------------------
    @property
    def kd_specs(self) -> list[str]:
        return [self.kd_teacher] if isinstance(self.kd_teacher, str) else list(self.kd_teacher or [])

    @property
    def mode(self) -> str:
        return "dr" if self.reinforced is not None else "kd" if self.kd_specs else "erm"

    @property
    def smoothing(self) -> float:
        """ERM label smoothing, resolved: ``LABEL_SMOOTHING``, or 0 for ``--folds`` teachers."""
        if self.label_smoothing is not None:
            return float(self.label_smoothing)
        return 0.0 if self.folds else LABEL_SMOOTHING

    @property
    def distill(self) -> dict[str, Any]:
        """DR/KD loss settings, resolved, and whether each came from the defaults (recorded in the
        run's config so a reader knows what was chosen for them)."""
        t = float(self.temperature) if self.temperature is not None else DISTILL_TEMPERATURE
        soften = bool(self.soften_targets) if self.soften_targets is not None else t != 1.0
        return {"temperature": t, "soften_targets": soften,
                "defaulted": [k for k in ("temperature", "soften_targets") if getattr(self, k) is None]}

    @property
    def peak_lr(self) -> float:
        return float(self.lr if self.lr is not None else default_lr(self.opt, self.batch_size))

    @property
    def decay(self) -> float:
        return float(self.weight_decay if self.weight_decay is not None else DEFAULTS[self.opt]["weight_decay"])

    @property
    def model_options(self) -> dict[str, Any]:
        """``model_kwargs`` as a dict (``--model-kwargs`` arrives as JSON text)."""
        value = self.model_kwargs
        if value is None or value == "":
            return {}
        if isinstance(value, dict):
            return dict(value)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise DrkitError(f"--model-kwargs is not valid JSON ({e.msg}): {value!r}") from None
        if not isinstance(parsed, dict):
            raise DrkitError(f"--model-kwargs must be a JSON object, got {value!r}")
        return parsed

    # -- refusals ----------------------------------------------------------------------------
    def validate(self, world_size: int = 1) -> TrainConfig:
        """Refuse what the options (and ``out``'s state) rule out; returns ``self``."""
        check(self.out is not None and str(self.out) != "", "train needs an output directory (--out DIR)")
        check(self.reinforced is None or not self.kd_specs, "--reinforced and --kd-teacher exclude each other: "
              "DR replays stored labels, KD runs the teacher online")
        check(self.epochs >= 1 and self.batch_size >= 1, "--epochs and --batch-size must be positive")
        check(self.workers >= 0, f"--workers must be 0 or more, got {self.workers}")
        check(self.opt in DEFAULTS, f"--opt must be one of {', '.join(DEFAULTS)}, got {self.opt!r}")
        check(self.amp in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        check(self.batch_size % (world_size * self.views_per_image) == 0,
              f"--batch-size {self.batch_size} must be a multiple of ranks x views per image "
              f"({world_size} x {self.views_per_image})")
        check(self.reinforced is not None or (self.views_per_image == 1 and self.plain_fraction == 0.0),
              "--views-per-image and --plain-fraction apply to DR (--reinforced) only")
        check(0.0 <= self.smoothing < 1.0 and self.distill["temperature"] > 0 and self.warmup_epochs >= 0,
              "need 0 <= --label-smoothing < 1, --temperature > 0 and --warmup-epochs >= 0")
        check(self.limit_batches is None or self.limit_batches >= 1, "--limit-batches must be positive")
        check(self.image_size is None or self.image_size >= 1, f"--image-size must be positive, got {self.image_size}")
        check(self.folds is None or self.folds >= 2, f"--folds must be at least 2, got {self.folds}")
        self.model_options  # noqa: B018  (refuses malformed --model-kwargs)
        if self.folds is None:
            out = Path(self.out)
            if self.resume:
                check(has_state(out), f"--resume: {out} has no training state to resume (no {out}/state/state.json)")
            else:
                check(not ((out / "config.json").exists() or has_state(out) or (out / METRICS).exists()),
                      f"{out} already holds a training run; pass --resume to continue it or choose another --out")
        return self
