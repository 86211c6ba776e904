"""Shared Lightning plumbing for aligners trained by gradient descent on in-memory features.

Importing this module imports ``pytorch_lightning`` (several seconds), so aligner modules import it
inside ``fit``: ``import align.methods`` (and so every CLI call) stays fast.

- ``seeded``: seed everything for one fit, then give the caller back its RNG state and flags.
- ``make_trainer``: a ``pl.Trainer`` with the project's defaults (CPU, quiet, deterministic; no logger
  unless a ``log_dir`` is given: then CSV, and TensorBoard when it is installed).
- ``curve_loggers``: those loggers, for a fit whose curves should outlive it.
- ``FeatureDataModule``: seeded train/val split of paired tensors, reproducible shuffling that a
  resumed run repeats exactly; under data parallelism each process takes its slice of every global
  batch (``EpochSeededSampler``), so N processes see the batches one process would.
- ``CoreModule``: a generic ``LightningModule`` around a plain ``nn.Module`` whose ``forward`` returns
  the loss; it saves its hyper-parameters, so ``CoreModule.load_from_checkpoint`` rebuilds the core.
- ``BestWeights``: keep the weights of the best validation epoch and restore them at the end.
- ``LastCheckpoint``: ``last.ckpt`` after every epoch, the point a killed fit resumes from.
- ``FitState``: a fit's fingerprint, the RNG states and early stopping, kept in checkpoints for an
  exact resume.
- ``SafeCheckpointIO``: checkpoints written atomically and read back with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import logging
import math
import os
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint
from torch.utils.data import DataLoader, Sampler, TensorDataset

from align.atomic import atomic_path

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """``pl.seed_everything(seed, workers=True)`` for the body; afterwards the torch, numpy and Python
    RNG states, the deterministic-algorithms flag and Lightning's seed variables are as before, so
    fitting an aligner does not change what the caller's next random draw is."""
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        pl.seed_everything(seed, workers=True, verbose=False)
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Silence Lightning's start-up banner ("GPU available: ...") and its advice about DataLoader
    workers and logging intervals, which is moot for tensors already in memory."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
        warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def make_trainer(
    max_epochs: int,
    *,
    deterministic: bool = True,
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
    monitor: str | None = None,
    callbacks: Sequence[pl.Callback] = (),
    accelerator: str = "cpu",
    devices: int = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    log_dir: str | Path | None = None,
    **overrides: Any,
) -> pl.Trainer:
    """A Trainer with the project's defaults: one CPU device, no model summary, no sanity validation, a
    progress bar only if asked. ``accelerator``, ``devices``, ``strategy`` and ``precision`` are
    Lightning's; Lightning's distributed sampler is off because ``FeatureDataModule`` shards the training
    batches itself (Lightning's would wrap our sampler and shuffle its output again). ``checkpoint_dir`` gets ``last.ckpt`` after every epoch
    (``LastCheckpoint``, for resumes) and, with ``monitor``, the best epoch (a ``ModelCheckpoint``);
    ``log_dir`` gets the training curves (``curve_loggers``, every step logged); without either nothing
    is written to disk. Checkpoints go through ``SafeCheckpointIO``."""
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        from pytorch_lightning.callbacks import ModelCheckpoint

        callbacks.append(LastCheckpoint(checkpoint_dir))
        if monitor is not None:
            callbacks.append(ModelCheckpoint(dirpath=str(checkpoint_dir), monitor=monitor, filename="best-{epoch}"))
    options: dict[str, Any] = dict(
        max_epochs=max_epochs, accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        deterministic=deterministic, use_distributed_sampler=False,
        logger=curve_loggers(log_dir) if log_dir is not None else False,
        enable_checkpointing=checkpoint_dir is not None, enable_progress_bar=progress, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=callbacks, plugins=[SafeCheckpointIO()],
        default_root_dir=str(checkpoint_dir) if checkpoint_dir is not None else None,
    )
    if log_dir is not None:
        options["log_every_n_steps"] = 1  # a curve point per optimiser step (fits here have few steps)
    options.update(overrides)
    return pl.Trainer(**options)


def curve_loggers(log_dir: str | Path) -> list[Any]:
    """Lightning's CSV logger writing ``metrics.csv`` and ``hparams.yaml`` straight into ``log_dir``, plus a
    TensorBoard logger into ``log_dir/tensorboard`` when ``tensorboard`` (or ``tensorboardX``) is importable:
    a CSV needs nothing installed and is what ``align report --html`` plots."""
    from pytorch_lightning.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(str(log_dir), name="", version="")]
    if any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX")):
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(log_dir), name="tensorboard", version="", default_hp_metric=False))
    return loggers


def restore_core(build: Callable[[], Any], state: dict[str, torch.Tensor]) -> Any:
    """Build a module and load ``state`` into its ``core``, leaving the global RNG as it was: the
    fresh initialisation that building draws is overwritten anyway (used by aligners' load)."""
    rng = torch.get_rng_state()
    module = build()
    torch.set_rng_state(rng)
    module.core.load_state_dict(state)
    return module


# Where the cores of Lightning checkpoints written before the one-subpackage-per-method layout now live.
_MOVED_MODULES = {
    "align.methods.vlap": "align.methods.vlap.aligner",
    "align.methods.lqae": "align.methods.lqae.aligner",
    "align.methods.codebook_vlp": "align.methods.codebook_vlp.aligner",
}


def import_object(path: str) -> Any:
    """The object named ``"package.module:Name"`` (module paths of earlier layouts still resolve)."""
    module, _, name = path.partition(":")
    module_object = importlib.import_module(_MOVED_MODULES.get(module, module))
    return getattr(module_object, name)


def balanced_batch_size(n: int, batch_size: int) -> int:
    """The largest size <= ``batch_size`` that splits ``n`` rows into equal batches (the last one at
    most one row short), so no epoch ends on a tiny batch with almost no negatives."""
    return math.ceil(n / math.ceil(n / batch_size))


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """``(train, val)`` row counts for a held-out fraction; any fraction > 0 holds out at least 2."""
    n_val = 0 if val_fraction <= 0 else max(2, round(val_fraction * n))
    return n - n_val, n_val


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
        n = tensors[0].shape[0]
        n_train, n_val = split_sizes(n, val_fraction)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        self.train_rows, self.val_rows = order[:n_train].sort().values, order[n_train:].sort().values
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


class CoreModule(pl.LightningModule):
    """Trains ``core`` (an ``nn.Module`` named ``"module:Class"``, built from ``core_args``) whose
    ``forward(*batch)`` returns a scalar loss, with AdamW (no weight decay on biases, gains and
    scalars, as CLIP). After each optimiser step it calls ``core.after_step()`` if defined (e.g. to
    clamp a temperature). Mean train/val loss per epoch go to ``history`` (kept in checkpoints), and
    so do the per-epoch means of the floats a core leaves in ``core.parts`` after each training
    forward (its separate loss terms, e.g. VLAP's ``l_cap`` and ``l_map``).
    ``extra`` is stored untouched, for the caller to rebuild its own object from a checkpoint.

    ``warmup_fraction`` > 0 ramps the learning rate up linearly over that fraction of all steps;
    ``schedule="cosine"`` then decays it to 0 by the last step (per step; the total is Lightning's
    estimate for ``max_epochs``). A core may also score whole validation epochs: ``validation_update(*batch)``
    after each validation batch and ``validation_compute() -> dict[str, float]`` at the epoch's end, whose
    values are logged and go to ``history`` (e.g. VLAP's validation R@1, which needs every row at once);
    likewise ``training_epoch_compute() -> dict[str, float]`` at each training epoch's end (e.g. the
    code usage Codebook-VLP's codebook counted over the epoch).

    With a logger attached (``make_trainer(log_dir=...)``) the loss of every training step is logged too
    (``train_loss_step``), and so are the per-epoch parts and training-epoch values, so the curves on
    disk hold what ``history`` holds; without one nothing more is logged than before."""

    def __init__(self, core: str, core_args: dict[str, Any], lr: float, weight_decay: float,
                 extra: dict[str, Any] | None = None, warmup_fraction: float = 0.0,
                 schedule: str = "constant") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.core = import_object(core)(**core_args)
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        self._sums: dict[str, list[float]] = {"train_loss": [0.0, 0], "val_loss": [0.0, 0]}

    def _step(self, batch: Sequence[torch.Tensor], key: str) -> torch.Tensor:
        loss = self.core(*batch)
        rows = len(batch[0])
        self.log(key, loss, on_step=False, on_epoch=True, batch_size=rows)
        self._sums[key][0] += float(loss.detach()) * rows
        self._sums[key][1] += rows
        return loss

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train_loss")
        if self._curves():
            self.log("train_loss_step", loss, on_step=True, on_epoch=False, batch_size=len(batch[0]))
        for key, value in getattr(self.core, "parts", {}).items():
            self.history.setdefault(key, [])
            total = self._sums.setdefault(key, [0.0, 0])
            total[0] += float(value) * len(batch[0])
            total[1] += len(batch[0])
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "val_loss")
        update = getattr(self.core, "validation_update", None)
        if callable(update):
            update(*batch)
        return loss

    def _close(self, key: str) -> None:
        total, rows = self._sums[key]
        if rows:
            self.history[key].append(total / rows)
        self._sums[key] = [0.0, 0]

    def on_validation_epoch_end(self) -> None:
        self._close("val_loss")
        compute = getattr(self.core, "validation_compute", None)
        if callable(compute):
            for key, value in compute().items():
                self.log(key, value)
                self.history.setdefault(key, []).append(float(value))

    def on_train_epoch_end(self) -> None:
        parts = [k for k in self._sums if k not in ("train_loss", "val_loss")]
        for key in ["train_loss", *parts]:
            self._close(key)
        values = {k: self.history[k][-1] for k in parts if self.history.get(k)}
        compute = getattr(self.core, "training_epoch_compute", None)
        if callable(compute):
            for key, value in compute().items():
                self.history.setdefault(key, []).append(float(value))
                values[key] = float(value)
        if self._curves():
            for key, value in values.items():
                self.log(key, value, on_step=False, on_epoch=True)

    def _curves(self) -> bool:
        """Whether a logger records this fit's curves (only ``make_trainer(log_dir=...)`` attaches one)."""
        trainer = self._trainer
        return trainer is not None and bool(trainer.loggers)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        after_step = getattr(self.core, "after_step", None)
        if callable(after_step):
            after_step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.core.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": self.hparams.weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ]
        # fused: one kernel per step; the per-tensor loop spends most of a small model's step in
        # thread start-up for each elementwise op when CPU cores are shared
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.hparams.lr, fused=True)
        warmup_fraction = self.hparams.get("warmup_fraction", 0.0)
        schedule = self.hparams.get("schedule", "constant")
        if warmup_fraction <= 0 and schedule == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        factor = functools.partial(warmup_cosine, total=total, warmup=round(warmup_fraction * total),
                                   cosine=schedule == "cosine")
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["history"] = copy.deepcopy(self.history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = copy.deepcopy(checkpoint.get("history", self.history))


def warmup_cosine(step: int, *, total: int, warmup: int, cosine: bool) -> float:
    """The learning-rate factor at ``step`` of ``total``: linear warm-up over the first ``warmup`` steps,
    then 1 (``cosine=False``) or a cosine decay that reaches 0 at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class BestWeights(pl.Callback):
    """Snapshot the module's weights whenever ``monitor`` (a logged metric) reaches a new minimum and
    load the best snapshot when fitting ends, so early stopping returns the best epoch, not the last.
    The snapshot is part of the callback state, so it survives a checkpoint resume."""

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best: float = math.inf
        self.best_epoch: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not float(value) < self.best:
            return
        self.best, self.best_epoch = float(value), trainer.current_epoch
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.weights is not None:
            pl_module.load_state_dict(self.weights)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self.weights = state_dict["weights"]


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written through a temporary file moved into place (a reader, or a fit
    killed while writing, never sees a partial ``last.ckpt``) and read by torch's loader in
    ``weights_only`` mode: only tensors and plain containers are rebuilt, no pickled code runs. Everything
    our modules and callbacks put in a checkpoint is of that kind."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's contents on the CPU, read with ``weights_only=True`` (``mmap``: tensors are read
    only when touched, for a quick look at the metadata)."""
    return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


def rng_state() -> dict[str, Any]:
    """The torch (CPU), numpy and Python RNG states, as tensors and plain lists (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss]}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` in ``dirpath`` at the end of every training epoch. Lightning runs checkpoint
    callbacks last, after validation, early stopping and the module's own epoch-end hook (which closes
    the epoch's loss history), so the file holds the complete epoch. (``ModelCheckpoint(save_last=True,
    save_top_k=0)`` writes ``last.ckpt`` only when the fit ends: nothing to resume a killed fit from.)"""

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


class FitState(pl.Callback):
    """What a checkpoint needs beyond Lightning's own state for a resumed fit to equal an uninterrupted
    one: the RNG states when it was written (masks, dropout and negatives drawn from the global RNG
    continue where they were; Lightning does not save them), whether early stopping had ended the fit
    (Lightning does not save that either, and would train one more epoch), and ``fingerprint``, the
    fit's data and hyper-parameters, so a checkpoint is never resumed by another fit.

    The RNG states are put back as soon as Lightning hands the checkpoint over, before it builds the
    first epoch's batch iterator (which draws a seed from the global RNG). Measured on a toy LQAE: an
    uninterrupted fit draws exactly that seed, and nothing else, between writing ``last.ckpt`` and the
    next training step; putting the states back at ``on_train_start`` instead (after the iterator
    exists) shifts every later mask by one draw."""

    def __init__(self, fingerprint: str | None) -> None:
        self.fingerprint = fingerprint
        self._trainer: pl.Trainer | None = None
        self._stopped = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        stopped = bool(self._trainer is not None and self._trainer.should_stop)
        return {"fingerprint": self.fingerprint, "rng": rng_state(), "stopped": stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_state(state_dict["rng"])
        self._stopped = bool(state_dict.get("stopped", False))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stopped:  # the fit loop then ends before another epoch, as the interrupted fit had
            trainer.should_stop = True


def saved_fingerprint(path: str | Path) -> str | None:
    """The ``FitState`` fingerprint in a checkpoint (None in one written before it existed)."""
    state = load_checkpoint(path, mmap=True).get("callbacks", {}).get(FitState.__qualname__, {})
    return state.get("fingerprint")
