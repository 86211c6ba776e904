"""The Lightning Trainer with the project's defaults, its curve loggers, and a quiet start-up (imports Lightning)."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from align.errors import RunInterrupted
from align.methods.framework.checkpoints import LastCheckpoint, SafeCheckpointIO

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


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
    monitor: tuple[str, str] | None = None,
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
    (``LastCheckpoint``, for resumes) and, with ``monitor`` (a metric and "min" or "max"), the best epoch (a
    ``ModelCheckpoint``);
    ``log_dir`` gets the training curves (``curve_loggers``, every step logged); without either nothing
    is written to disk. Checkpoints go through ``SafeCheckpointIO``."""
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        from pytorch_lightning.callbacks import ModelCheckpoint

        callbacks.append(LastCheckpoint(checkpoint_dir))
        if monitor is not None:
            metric, mode = monitor
            callbacks.append(ModelCheckpoint(dirpath=str(checkpoint_dir), monitor=metric, mode=mode,
                                             filename="best-{epoch}"))
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


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
        ckpt_path: str | Path | None = None) -> None:
    """``trainer.fit``, except that a stop (:class:`RunInterrupted`, raised by a command's signal handler) that
    Lightning's teardown buries under an error of its own is raised again as the stop: a signal during data
    setup otherwise ends in Lightning's "call iter(combined_loader) first" traceback and exit 1."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except Exception as error:
        stop = interrupt_behind(error)
        if stop is None:
            raise
        raise stop from error


def interrupt_behind(error: BaseException) -> RunInterrupted | None:
    """The :class:`RunInterrupted` that ``error`` was raised while handling, if any (its ``__context__`` chain)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, RunInterrupted):
            return cause
        seen.add(id(cause))
        cause = cause.__context__
    return None


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
