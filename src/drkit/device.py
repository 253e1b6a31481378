"""Where tensors run and in which precision: one ``resolve_device`` and one ``amp_dtype`` for
every verb, so ``auto`` means the same thing in reinforce, train, eval and the teachers."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .distributed import DistEnv, dist_env
from .errors import DrkitError

if TYPE_CHECKING:
    import torch

AMP_MODES = ("auto", "off", "bf16", "fp16")


def resolve_device(device: Any = "auto", env: DistEnv | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; under torchrun ``cuda`` means ``cuda:LOCAL_RANK``."""
    import torch

    env = env or dist_env()
    name = str(device) if device not in (None, "") else "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and env.is_distributed:
        name = f"cuda:{env.local_rank}"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DrkitError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DrkitError(f"--device {device} requested but CUDA is not available")
    return dev


def amp_dtype(mode: str | bool, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``mode`` (auto | off | bf16 | fp16; ``True`` = auto) on ``device``: CUDA
    only (CPU bf16 would change labels for no speed worth having); ``auto``: bf16 where supported."""
    import torch

    mode = "auto" if mode is True else "off" if mode is False else mode
    if mode not in AMP_MODES:
        raise DrkitError(f"--amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def default_workers(device: torch.device) -> int:
    """Loader workers for labelling on ``device`` when none are asked for: none on a CPU (they would
    stall the teacher's parallel regions); else one per core but two, at most 8 (beats 12 on 16 cores)."""
    import os

    return 0 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 2))


def default_batch_size(device: torch.device, size: int) -> int:
    """Views per labelling batch when none is asked for: 256 on a CPU; on an accelerator about 4M pixels
    (a power of two in 256..4096), since rendering costs ~300 kernel launches a batch whatever its size."""
    return 256 if device.type == "cpu" else max(256, min(4096, 1 << max(0, (2**22 // (size * size)).bit_length() - 1)))


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` in ``dtype``, or nothing when ``dtype`` is ``None``."""
    import torch

    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def on_side_stream(device: torch.device, source: torch.Tensor, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` (one tensor) queued on a second CUDA stream and handed to the current one, so that
    torchvision's synchronising host copies wait only for the render, not the teacher's forward pass;
    ``source`` (what ``fn`` reads) must be on the host (the side stream does not wait), else a plain call."""
    if device.type != "cuda" or source.device.type != "cpu":
        return fn(*args)
    import torch

    current = torch.cuda.current_stream(device)
    # from torch's per-device pool; high priority: the render's small kernels go first
    side = torch.cuda.Stream(device, priority=-1)
    with torch.cuda.stream(side):
        out = fn(*args)
    current.wait_stream(side)
    out.record_stream(current)  # the allocator must not hand its memory back to the side stream early
    return out


def to_device(values: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Host values as a tensor on ``device``, on an accelerator through pinned memory and a
    non-blocking copy (a plain copy would wait for every kernel queued before it)."""
    import torch

    t = torch.as_tensor(values, dtype=dtype)
    return t if device.type == "cpu" else t.pin_memory().to(device, non_blocking=True)


def tune_host_allocator() -> bool:
    """Make glibc keep freed host memory (returns whether anything changed): else every CPU forward
    pass page-faults its activations afresh (reinforce ~25 % slower). No-op off glibc, or with
    ``MALLOC_*``/``LD_PRELOAD`` set."""
    import ctypes
    import os
    import platform

    if platform.libc_ver()[0] != "glibc" or os.environ.get("LD_PRELOAD") or any(k.startswith("MALLOC_")
                                                                                 for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
