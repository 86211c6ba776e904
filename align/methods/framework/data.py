"""Paired tensors as Lightning batches (imports Lightning): a seeded train/validation split, batch sizes
evened out, and a per-epoch seeded sampler that a resumed fit repeats exactly; under data parallelism
each process takes its slice of every global batch, so N processes see the batches one process would."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset


def balanced_batch_size(n: int, batch_size: int) -> int:
    """The largest size <= ``batch_size`` that splits ``n`` rows into equal batches (the last one at
    most one row short), so no epoch ends on a tiny batch with almost no negatives."""
    return math.ceil(n / math.ceil(n / batch_size))


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """``(train, val)`` row counts for a held-out fraction; any fraction > 0 holds out at least 2."""
    n_val = 0 if val_fraction <= 0 else max(2, round(val_fraction * n))
    return n - n_val, n_val


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_rows, val_rows)``, each sorted: the seeded split :class:`FeatureDataModule` makes, so a fit
    can compute its data statistics from the training rows before the data module exists."""
    n_train, _ = split_sizes(n, val_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n_train].sort().values, order[n_train:].sort().values


class EpochSeededSampler(Sampler[int]):
    """A fresh permutation each epoch drawn from ``(seed, epoch)`` alone. Lightning calls ``set_epoch``
    before each epoch (also after a resume), so an interrupted and resumed fit sees the same batches as
    an uninterrupted one, which a sampler drawing from a running generator would not.

    With ``replicas`` > 1 (data parallelism) the permutation is cut into global batches of
    ``per_device * replicas`` rows and process ``rank`` takes the ``rank``-th slice of each, so the
    processes together see exactly the batches one process would see with the global batch size
    (the permutation is padded by its first rows when the last global batch would leave a process short)."""

    def __init__(self, n: int, seed: int, *, per_device: int | None = None, rank: int = 0, replicas: int = 1) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.per_device, self.rank, self.replicas = per_device or n, rank, replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        order = torch.randperm(self.n, generator=generator).tolist()
        return iter(order if self.replicas == 1 else self._slice(order))

    def _slice(self, order: list[int]) -> list[int]:
        step, k = self.per_device * self.replicas, self.per_device
        padded = order + order[: -len(order) % step] if len(order) % step else order
        return [i for start in range(0, len(padded), step) for i in padded[start + self.rank * k: start + (self.rank + 1) * k]]

    def __len__(self) -> int:
        if self.replicas == 1:
            return self.n
        step = self.per_device * self.replicas
        return math.ceil(self.n / step) * self.per_device


class FeatureDataModule(pl.LightningDataModule):
    """Row-aligned tensors (e.g. image and text features of N pairs), split once by ``seed`` into
    train and validation rows; batches are evened out by ``balanced_batch_size``."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, val_fraction: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.train_rows, self.val_rows = split_rows(tensors[0].shape[0], val_fraction, seed)
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed

    def _loader(self, rows: torch.Tensor, shuffle: bool) -> DataLoader:
        """Training batches are sliced across data-parallel processes (each takes ``size / world`` rows of
        every global batch); validation batches are whole on every process, so each scores the same rows."""
        dataset = TensorDataset(*(t[rows] for t in self.tensors))
        size = balanced_batch_size(len(rows), self.batch_size)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if not shuffle:
            return DataLoader(dataset, batch_size=size, shuffle=False)
        per_device = math.ceil(size / world)
        sampler = EpochSeededSampler(len(rows), self.seed, per_device=per_device, rank=rank, replicas=world)
        return DataLoader(dataset, batch_size=per_device, sampler=sampler, shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_rows, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_rows, shuffle=False) if len(self.val_rows) else []
