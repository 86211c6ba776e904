"""Checkpoints of a fit (imports Lightning).

- ``LastCheckpoint``: ``last.ckpt`` after every epoch, the point a killed fit resumes from.
- ``FitState``: a fit's fingerprint, the RNG states and early stopping, kept in checkpoints for an
  exact resume (:func:`saved_fingerprint` reads the fingerprint back).
- ``BestWeights``: keep the weights of the best validation epoch and restore them at the end.
- ``SafeCheckpointIO`` / :func:`load_checkpoint`: written atomically, read back with ``weights_only=True``;
  :func:`fit_checkpoint` also checks that it holds what resuming reads, and :func:`weights_problem` that
  its weights fit the model to resume. A file that is not such a checkpoint is a one-line
  ``BadInputError`` naming it (never a traceback from torch's unpickler or Lightning's restore).
- :func:`restore_core`: a fresh module with saved weights in its core (loading a fitted aligner).
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint

from align.atomic import atomic_path
from align.errors import BadInputError
from align.methods.framework.restoring import building_for_restore
from align.methods.framework.seeding import rng_state, set_rng_state


def restore_core(build: Callable[[], Any], state: dict[str, torch.Tensor]) -> Any:
    """Build a module and load ``state`` into its ``core``, leaving the global RNG as it was: the
    fresh initialisation that building draws is overwritten anyway (used by aligners' load)."""
    rng = torch.get_rng_state()
    try:
        with building_for_restore():  # a core may skip work whose only product is initial weights
            module = build()
    finally:
        torch.set_rng_state(rng)
    module.core.load_state_dict(state)
    return module


class BestWeights(pl.Callback):
    """Snapshot the module's weights whenever ``monitor`` (a logged metric) reaches a new best (its minimum,
    or its maximum with ``mode="max"``) and
    load the best snapshot when fitting ends, so early stopping returns the best epoch, not the last.
    The snapshot is part of the callback state, so it survives a checkpoint resume."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"BestWeights: mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.sign = monitor, 1.0 if mode == "min" else -1.0
        self.best: float = math.inf  # sign * the best value so far
        self.best_epoch: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not self.sign * float(value) < self.best:
            return
        self.best, self.best_epoch = self.sign * float(value), trainer.current_epoch
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


# what Lightning writes into every checkpoint of a fit, and reads back to resume one
LIGHTNING_KEYS: dict[str, type] = {"pytorch-lightning_version": str, "epoch": int, "global_step": int,
                                   "state_dict": dict, "loops": dict, "callbacks": dict,
                                   "optimizer_states": list, "lr_schedulers": list}


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's contents on the CPU, read with ``weights_only=True`` (``mmap``: tensors are read
    only when touched, for a quick look at the metadata). A file that is missing, unreadable, damaged
    or holds something other than a dict is a one-line ``BadInputError`` naming it."""
    path = Path(path)
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise BadInputError(f"{path}: no checkpoint there") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: a folder, not a checkpoint file") from None
    except PermissionError as err:
        raise BadInputError(f"{path}: cannot read ({err.strerror or err})") from None
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise BadInputError(f"{path}: not a readable checkpoint (truncated, damaged, or not written by "
                                "torch.save)") from None
        raise BadInputError(f"{path}: holds pickled objects other than tensors and plain data ({found[1]}), which "
                            "are never loaded (weights only load failed)") from None
    except Exception:  # torch reports a damaged file in many ways (UnpicklingError, RuntimeError, EOFError, OSError)
        raise BadInputError(f"{path}: not a readable checkpoint (truncated, damaged, or not written by "
                            "torch.save)") from None
    if not isinstance(checkpoint, dict):
        raise BadInputError(f"{path}: not a checkpoint of a fit (it holds a {type(checkpoint).__name__}, "
                            "not Lightning's dict)")
    return checkpoint


def fit_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """:func:`load_checkpoint`, with everything Lightning reads to resume a fit there and of its type."""
    checkpoint = load_checkpoint(path, mmap=mmap)
    for key, kind in LIGHTNING_KEYS.items():
        value = checkpoint.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            found = "no" if key not in checkpoint else f"a {type(value).__name__} as"
            raise BadInputError(f"{path}: not a Lightning checkpoint of a fit ({found} {key!r})")
    state = checkpoint["callbacks"].get(FitState.__qualname__, {})
    if not isinstance(state, dict) or not isinstance(state.get("fingerprint"), (str, type(None))):
        raise BadInputError(f"{path}: not a Lightning checkpoint of a fit (a damaged {FitState.__qualname__!r} state)")
    return checkpoint


def checkpoint_fingerprint(checkpoint: Mapping[str, Any]) -> str | None:
    """The ``FitState`` fingerprint in a checkpoint read by :func:`fit_checkpoint` (None in one written
    before it existed)."""
    return checkpoint["callbacks"].get(FitState.__qualname__, {}).get("fingerprint")


def weights_problem(saved: Mapping[str, Any], model: torch.nn.Module) -> str | None:
    """Why the weights ``saved`` (a checkpoint's ``state_dict``) cannot be loaded into ``model`` (names or
    shapes differ), or None; the words of a one-line error."""
    own = model.state_dict()
    missing, unexpected = [k for k in own if k not in saved], [k for k in saved if k not in own]
    if missing or unexpected:
        example = f"no {missing[0]!r}" if missing else f"an unexpected {unexpected[0]!r}"
        return f"its weights are not this model's ({len(missing)} missing, {len(unexpected)} unexpected: {example})"
    for key, tensor in own.items():
        theirs = saved[key]
        if not isinstance(theirs, torch.Tensor) or theirs.shape != tensor.shape:
            found = tuple(theirs.shape) if isinstance(theirs, torch.Tensor) else type(theirs).__name__
            return f"its {key!r} has shape {found}, the model's {tuple(tensor.shape)}"
    return None


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
    """The ``FitState`` fingerprint in a checkpoint of a fit (None in one written before it existed); a
    file that is not one is a one-line ``BadInputError`` (:func:`fit_checkpoint`)."""
    return checkpoint_fingerprint(fit_checkpoint(path, mmap=True))
