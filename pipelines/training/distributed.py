"""Where a training process runs: its rank among ``torchrun``'s processes, its device, and torch's set-up.

Under ``torchrun`` (``WORLD_SIZE > 1``, any number of nodes: :mod:`pipelines.training.launch`) the job runs
with DistributedDataParallel (gloo on CPU, nccl on GPU, ``train.gpus > 0``); one process alone needs no
process group. :func:`configure_torch` sets the threads and deterministic algorithms.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist

from pipelines.core.threads import apply_threads


@dataclass
class Distributed:
    """This process among the job's processes (one, or ``torchrun``'s), and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, gpus: int) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = gpus > 0 and torch.cuda.is_available()
        if gpus > 0 and not torch.cuda.is_available():
            warnings.warn(f"train.gpus={gpus} but CUDA is not available: training on the CPU", stacklevel=2)
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
        ctx = cls(rank, world, local_rank, device)
        if world > 1:
            if not torch_dist.is_initialized():
                torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            ctx.initialised = True
        return ctx

    def mean(self, value: torch.Tensor) -> float:
        """Mean of a scalar over all ranks, as a float (synchronises)."""
        if self.world_size > 1:
            value = value.detach().clone().float()
            torch_dist.all_reduce(value)
            value = value / self.world_size
        return float(value)

    def barrier(self) -> None:
        if self.world_size > 1:
            if self.device.type == "cuda":
                torch_dist.barrier(device_ids=[self.local_rank])
            else:
                torch_dist.barrier()

    def close(self) -> None:
        if self.initialised:
            if torch_dist.is_initialized():
                torch_dist.destroy_process_group()
            self.initialised = False


def configure_torch(train_cfg, dist: Distributed) -> int:
    """Threads (``train.threads``; 0 = the cores this process may use, shared between DVC queue workers
    and local ranks: :mod:`pipelines.core.threads`) and deterministic algorithms."""
    threads = apply_threads(train_cfg.threads).threads
    if dist.device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return threads
