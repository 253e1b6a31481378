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
    """``auto`` -> CUDA when available, else CPU; under torchrun ``cuda`` means ``cuda:LOCAL_RANK``.
    An unknown device string or CUDA without a GPU is refused in one line."""
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
    """Autocast dtype for ``mode`` (auto | off | bf16 | fp16; ``True`` = auto) on ``device``.

    Mixed precision is used on CUDA only: CPU bf16 would change labels and metrics for no speed
    worth having. ``auto`` takes bf16 where the GPU supports it, else fp16."""
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
    """Loader workers for labelling on ``device`` when none are asked for. On a CPU none: workers
    and the teacher's threads share the same cores, and a preempted thread stalls the teacher's
    parallel regions (2 cores, 28-px teacher: 0.76 of its bare rate inline, 0.67 with one worker).
    On an accelerator one per core but two (the main process renders and labels), at most 8 (on a
    16-core H200 box 6 and 8 workers beat 12)."""
    import os

    if device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 2))


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` in ``dtype``, or nothing when ``dtype`` is ``None``."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def on_side_stream(device: torch.device, source: torch.Tensor, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` (returning one tensor) queued on a second CUDA stream and handed to the current one.

    Why: batched rendering calls torchvision ops that copy small host tensors to the device with a
    stream synchronisation. On the stream that runs the teacher (or the training step), each such
    copy would wait for the whole previous forward pass; on a side stream it waits only for the
    render's own kernels, so the host prepares batch i + 1 while the device still works on batch i.
    ``source`` is the tensor ``fn`` reads: only a host tensor may be read there, since the side
    stream does not wait for the current one. Otherwise, and on a CPU, it is just ``fn(*args)``."""
    if device.type != "cuda" or source.device.type != "cpu":
        return fn(*args)
    import torch

    current = torch.cuda.current_stream(device)
    # from torch's per-device pool (cheap, never leaked); high priority: the render's few small
    # kernels are scheduled as soon as the teacher's leave room, so the host waits less on them
    side = torch.cuda.Stream(device, priority=-1)
    with torch.cuda.stream(side):
        out = fn(*args)
    current.wait_stream(side)
    out.record_stream(current)  # the allocator must not hand its memory back to the side stream early
    return out


def to_device(values: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Host values (indices, boxes, λ, a small matrix) as a tensor on ``device``. On an accelerator
    through pinned memory and a non-blocking copy: a plain copy synchronises the stream, making the
    host wait for every kernel queued before it."""
    import torch

    t = torch.as_tensor(values, dtype=dtype)
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def tune_host_allocator() -> bool:
    """Make glibc keep freed host memory for reuse instead of handing it back to the system;
    returns whether anything changed. The ``drkit`` command calls it at start; library users who
    reinforce on the CPU may call it once too.

    Why: a CPU teacher's activations are tens of MB a batch. By default glibc maps each such block
    afresh and unmaps it when freed, so every forward pass page-faults its activations again; inside
    ``reinforce``, where rendering allocates in between, that made a 28-px teacher ~25 % slower
    than on its own (``benchmarks/reinforce_throughput.py``). A no-op on other C libraries and when
    the user already chose: ``MALLOC_*`` variables set, or an allocator preloaded."""
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

