"""``ReinforceConfig``: every option of ``drkit reinforce``, checked in one place."""
from __future__ import annotations

# ruff: noqa: RUF009  (option() returns a dataclasses.field)
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..configs import DOWNLOAD_HELP, KW_ONLY, SPLIT_HELP, VerbConfig, check, option
from ..defaults import SMALL_SIDE
from ..errors import DrkitError

if TYPE_CHECKING:
    from ..sources import Source


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
    check(n >= 1 and 0 <= i < n, f"--shard {i}/{n}: need 0 <= i < n")
    return i, n


@dataclasses.dataclass(frozen=True, **KW_ONLY)
class ReinforceConfig(VerbConfig):
    """``drkit reinforce``'s options (its flags): ``data`` a source spec or Source; ``teacher`` specs or a
    ready ``nn.Module`` (batch in [0, 1] -> probabilities); ``views`` per image (``--samples NS``),
    ``images_per_shard`` per shard file; recipe ``auto`` resolves for the image side."""

    data: str | Source = option(required=True, metavar="SRC")
    teacher: tuple[str, ...] | Callable[..., Any] = option(
        required=True, metavar="T", help="timm:NAME[?file=W] | torchvision:NAME | ckpt:DIR; repeat for an ensemble")
    recipe: str | None = option("auto", help="augmentation recipe; auto (default): padcrop for images up to "
                                f"{SMALL_SIDE} px, rrc+ra+re above; unset crop scale and RandAugment/TrivialAugment "
                                "magnitudes follow the image size (the resolved recipe is recorded)")
    views: int = option(10, flag="--samples", metavar="NS", help="views per image (default %(default)s)")
    topk: int = option(10, metavar="K", help="stored probabilities per view (default %(default)s)")
    image_size: int | None = option(None, metavar="S", help="teacher input size (default: the teacher's)")
    out: str | Path | None = option(None, required=True, metavar="DIR")
    seed: int = option(0)
    batch_size: int | None = option(None, help="views per teacher batch (default: 256 on a CPU; on a GPU about 4M "
                                    "pixels, 256..4096: 4096 at 32 px, 256 from 96 px)")
    workers: int | None = option(None, free=True, help="DataLoader workers decoding images and sampling views "
                                 "(default: 0 on a CPU, where workers take cores from the teacher; on a GPU one per "
                                 "core but two, at most 8)")
    device: str = option("auto", free=True, help="auto | cpu | cuda")
    shard: str | tuple[int, int] | None = option(None, metavar="i/n", help="this job's part of an n-way split")
    images_per_shard: int = option(1024, flag="--samples-per-shard", metavar="SAMPLES_PER_SHARD")
    resume: bool = option(False, free=True, help="continue an interrupted run in --out")
    skip_bad: bool = option(False, help="skip undecodable images (listed in the manifest)")
    progress: bool = option(True, free=True, flag="--quiet", action="store_false", help="no progress bar")
    split: str | None = option(None, help=SPLIT_HELP)
    download: bool = option(False, free=True, help=DOWNLOAD_HELP)
    command: Sequence[str] | None = option(None, free=True, internal=True)

    def validate(self) -> ReinforceConfig:
        """Refuse what the options alone rule out; returns ``self``."""
        check(self.out is not None and str(self.out) != "", "reinforce needs an output directory (--out DIR)")
        check(1 <= self.views <= 65535, f"--samples (views per image) must be in 1..65535, got {self.views}")
        check(self.topk >= 1, f"--topk must be positive, got {self.topk}")
        check(isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"--seed must be in 0..2**63-1, got {self.seed}")
        check((self.batch_size is None or self.batch_size >= 1) and self.images_per_shard >= 1,
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
