"""``ReinforceConfig``: every option of ``drkit reinforce``, checked in one place."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..configs import FREE, VerbConfig, check
from ..errors import DrkitError


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    if spec is None:
        return 0, 1
    if isinstance(spec, tuple):
        i, n = spec
    else:
        try:
            i, n = (int(x) for x in str(spec).split("/"))
        except ValueError:
            raise DrkitError(f"--shard expects i/n (e.g. 0/4), got {spec!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise DrkitError(f"--shard {i}/{n}: need 0 <= i < n")
    return i, n


@dataclasses.dataclass(frozen=True)
class ReinforceConfig(VerbConfig):
    """``drkit reinforce``'s options: ``data`` a source spec or Source; ``teacher`` specs or a ready
    ``nn.Module`` (batch in [0, 1] -> probabilities); recipe ``auto`` resolves for the image side."""

    data: Any
    teacher: Any
    out: Any
    recipe: str | None = "auto"
    samples: int = 10
    topk: int = 10
    image_size: int | None = None
    seed: int = 0
    batch_size: int = 256
    workers: int | None = dataclasses.field(default=None, metadata=FREE)  # None: default_workers(device)
    device: str = dataclasses.field(default="auto", metadata=FREE)
    shard: Any = None
    resume: bool = dataclasses.field(default=False, metadata=FREE)
    skip_bad: bool = False
    samples_per_shard: int = 1024
    split: str | None = None
    download: bool = dataclasses.field(default=False, metadata=FREE)
    progress: bool = dataclasses.field(default=True, metadata=FREE)
    command: Any = dataclasses.field(default=None, metadata=FREE)

    def validate(self) -> ReinforceConfig:
        """Refuse what the options alone rule out; returns ``self``."""
        check(self.out is not None and str(self.out) != "", "reinforce needs an output directory (--out DIR)")
        check(1 <= self.samples <= 65535, f"--samples must be in 1..65535, got {self.samples}")
        check(self.topk >= 1, f"--topk must be positive, got {self.topk}")
        check(self.batch_size >= 1 and self.samples_per_shard >= 1,
              "--batch-size and --samples-per-shard must be positive")
        check(self.image_size is None or self.image_size >= 1, f"--image-size must be positive, got {self.image_size}")
        check(self.workers is None or self.workers >= 0, f"--workers must be 0 or more, got {self.workers}")
        check(not isinstance(self.teacher, (list, tuple)) or len(self.teacher) > 0, "no teacher given (--teacher T)")
        parse_shard(self.shard)
        return self

    @property
    def teacher_specs(self) -> list[str] | None:
        """The teacher as a list of spec strings, or ``None`` for a ready module."""
        t = self.teacher
        return [t] if isinstance(t, str) else list(t) if isinstance(t, (list, tuple)) else None
