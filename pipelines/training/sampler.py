"""The data order of a training run: a pure function of ``(seed, step, rank)``, so a resumed run continues it exactly.

:class:`StepBatchSampler` gives each step's batch (every rank its share of the global batch,
:func:`pipelines.training.step.rank_share`); :class:`EpochIndexed` sets the dataset's epoch for each item (its
augmentation draws). :func:`derive_seed` makes every per-step seed (data order, diffusion noise, torch's global
generator) from the run's seed and a purpose tag.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pipelines.training.step import rank_share

# purpose tags mixed into the per-step seeds
TAG_ORDER, TAG_NOISE, TAG_TORCH = 1, 2, 3


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the non-negative integers ``parts``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class StepBatchSampler(Sampler):
    """Batches of ``(epoch, index)`` for steps ``start .. end-1``: a pure function of ``(seed, step)``.

    Sample position ``p = step * global_batch + j`` of an endless stream of epochs, each epoch a
    seeded permutation of the items; rank ``r`` of ``world_size`` takes its contiguous share of
    each global batch (:func:`pipelines.training.step.rank_share`: as even as possible, e.g. 20 over 8
    processes = 3,3,3,3,2,2,2,2). Resuming at any step therefore continues the exact same order.
    """

    def __init__(self, n_items: int, global_batch: int, seed: int, start: int, end: int,
                 rank: int = 0, world_size: int = 1):
        if n_items < 1:
            raise ValueError("StepBatchSampler: no training items")
        self.share = rank_share(global_batch, world_size, rank)
        self.n, self.global_batch, self.seed = n_items, global_batch, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world_size
        self._cache: tuple[int, list[int]] | None = None

    def _perm(self, epoch: int) -> list[int]:
        if self._cache is None or self._cache[0] != epoch:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, TAG_ORDER, epoch))
            self._cache = (epoch, torch.randperm(self.n, generator=gen).tolist())
        return self._cache[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(epoch, index)`` items of global step ``step``."""
        offset, local = self.share
        first = step * self.global_batch + offset
        out = []
        for p in range(first, first + local):
            epoch, offset = divmod(p, self.n)
            out.append((epoch, self._perm(epoch)[offset]))
        return out

    def __iter__(self):
        for step in range(self.start, self.end):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.end - self.start)


class EpochIndexed(Dataset):
    """``dataset[(epoch, index)]``: sets the dataset's epoch (its augmentation RNG) for that item."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]
