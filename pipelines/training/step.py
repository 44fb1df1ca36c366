"""One optimiser step's forward and backward at any scale: batch shares per process, micro-batches.

``train.batch_size`` is the GLOBAL batch (the authors' 20) whatever the number of processes
(``nodes x GPUs per node``). Each step:

* :func:`rank_share`: process ``r`` of ``W`` takes a contiguous share of the global batch, as even as
  possible (20 on 8 GPUs: 3,3,3,3,2,2,2,2; on 1, 2, 4, 5 GPUs exactly B/W each). The sampler
  (:class:`pipelines.training.sampler.StepBatchSampler`) reads the same shares, so the data order stays a pure
  function of ``(seed, step)``.
* :func:`micro_slices`: the process's share is cut into micro-batches of ``train.micro_batch`` items
  (``null``: the whole share, i.e. no accumulation); the last one may be smaller.
* :func:`accumulate`: forward + backward of every micro-batch, gradients accumulated in place. Micro-
  batch ``i`` of share ``n_r`` has loss weight ``len_i / n_r * (n_r W / B)`` = ``len_i W / B``: with DDP
  averaging the gradients over ``W`` processes, the step's gradient is that of the mean loss over the
  whole global batch, as on one device with the whole batch (to float rounding), for any ``W`` and
  micro-batch size. DDP all-reduces once per step (``no_sync`` for all micro-batches but the last).
  The diffusion's start noise of the whole share is drawn once from the step's generator and sliced,
  so micro-batches see exactly the noise the whole share would have drawn. With one micro-batch and
  an even share the step is the very same computation as before (weight 1 is not even multiplied).
  Only the Sharp Encoder's BatchNorm (stage 1) sees per-micro-batch statistics, as it sees per-GPU
  statistics under DDP.

Mixed precision (``train.precision: bf16``) is the objective's (:mod:`pipelines.training.objective`); the
update itself is :meth:`pipelines.training.trainer.Trainer.optimize_parameters`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from pipelines.core.errors import InvalidInputError
from pipelines.training.objective import StageObjective


def rank_share(global_batch: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(first, count)``: process ``rank``'s contiguous share of a global batch (sizes differ by <= 1)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of world size {world_size}")
    if global_batch < world_size:
        raise InvalidInputError(f"train.batch_size={global_batch} is smaller than the {world_size} processes: "
                         "every process needs at least one item per step")
    base, extra = divmod(global_batch, world_size)
    return rank * base + min(rank, extra), base + (1 if rank < extra else 0)


def micro_slices(count: int, micro_batch: int | None) -> list[slice]:
    """Consecutive slices of ``count`` items, ``micro_batch`` each (``None``: one slice)."""
    if count < 1:
        raise ValueError(f"a share of {count} items")
    size = count if micro_batch is None else min(int(micro_batch), count)
    if size < 1:
        raise InvalidInputError(f"train.micro_batch must be >= 1, got {micro_batch}")
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


@dataclass(frozen=True)
class StepPlan:
    """How this process runs one step (see the module doc)."""

    global_batch: int
    world_size: int
    rank: int
    micro_batch: int | None = None  # train.micro_batch (None = the whole share)

    @property
    def share(self) -> int:
        return rank_share(self.global_batch, self.world_size, self.rank)[1]

    @property
    def micro(self) -> int:
        """The micro-batch size actually used on this process."""
        return self.share if self.micro_batch is None else min(self.micro_batch, self.share)

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per step on this process (the largest share's count is what memory sees)."""
        return math.ceil(self.share / self.micro)

    @property
    def share_weight(self) -> float:
        """``n_r W / B``: 1.0 when the global batch divides evenly over the processes."""
        return self.share * self.world_size / self.global_batch

    def describe(self) -> dict:
        largest = math.ceil(self.global_batch / self.world_size)
        micro = largest if self.micro_batch is None else min(self.micro_batch, largest)
        return {"global_batch": self.global_batch, "processes": self.world_size,
                "per_process": largest, "micro_batch": micro,
                "accumulation_steps": math.ceil(largest / micro)}


def accumulate(module: nn.Module, objective: StageObjective, blur: torch.Tensor, sharp: torch.Tensor,
               generator: torch.Generator, plan: StepPlan) -> torch.Tensor:
    """Forward and backward of this process's share (``blur``, ``sharp``: the whole share) in
    micro-batches; returns the weighted loss (detached), whose mean over processes is the step's loss.

    ``module`` is what runs the forward (the DDP wrapper or the objective itself), ``objective`` the
    :class:`~pipelines.training.objective.StageObjective` inside it (which draws the start noise)."""
    count = blur.shape[0]
    slices = micro_slices(count, plan.micro_batch)
    weight_share = plan.share_weight if count == plan.share else count * plan.world_size / plan.global_batch
    noise = objective.start_noise(count, generator) if len(slices) > 1 and objective.draws_noise else None
    total = None
    for i, part in enumerate(slices):
        last = i == len(slices) - 1
        sync = contextlib.nullcontext() if last or not hasattr(module, "no_sync") else module.no_sync()
        with sync:
            if len(slices) == 1:
                loss = module(blur, sharp, generator)
            elif noise is None:
                loss = module(blur[part], sharp[part], generator)
            else:
                loss = module(blur[part], sharp[part], None, noise=noise[part])
            weight = (part.stop - part.start) / count * weight_share
            scaled = loss if weight == 1.0 else loss * weight
            scaled.backward()
        value = scaled.detach().float()
        total = value if total is None else total + value
    return total
