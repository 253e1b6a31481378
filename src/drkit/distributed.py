"""torchrun environment -> rank, world size, device. Does nothing when torchrun is absent."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them (defaults: a single process)."""
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(device: "torch.device | str") -> bool:
    """Start the default process group (NCCL on CUDA, gloo on CPU) if under torchrun."""
    import torch.distributed as dist

    device, env = str(device), dist_env()
    if not env.is_distributed or dist.is_initialized():
        return dist.is_initialized()
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(int(device.split(":")[1]) if ":" in device else env.local_rank)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return True
