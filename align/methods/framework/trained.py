"""One base for the aligners trained by gradient descent through Lightning (contrastive, VLAP, LQAE,
Codebook-VLP).

Seeding, the trainer, checkpoints with exact resume, the fitted module, state save and load and the
training history live here once; a method says only what it trains (``core_class``, an ``nn.Module``
whose ``forward`` is the loss), on which tensors, what its dimensions are, and where it departs from the
shared optimiser (``adamw_betas``, ``fused_adamw``, ``min_warmup_steps``, ``lr_schedule``).

Resume: with ``checkpoint_dir`` set, ``last.ckpt`` is written there (atomically) after every epoch. It
holds the weights, optimiser and scheduler states, Lightning's loop counters and callback states, the
history, the RNG states and a fingerprint of the fit (the data and every hyper-parameter but
``max_epochs``, ``progress`` and ``checkpoint_dir``). A later ``fit`` on the same data with the same
hyper-parameters finds it and resumes; the result equals an uninterrupted fit's bit for bit (the unit
tests kill a fit with SIGKILL to show it). A ``last.ckpt`` of another fit is refused, not overwritten.
``max_epochs`` may grow between the two (train further); LQAE's learning-rate schedule is then the one
of the new length.

Devices: ``accelerator``, ``devices``, ``strategy`` and ``precision`` go to Lightning's Trainer. With
``devices`` > 1 under a data-parallel strategy (``"ddp"``; on CPUs Lightning uses the gloo backend) every
process takes its slice of each global batch of ``batch_size`` rows and DDP averages the gradients, so
the fit is the one-process fit up to float rounding (the unit tests bound the difference). ``"ddp"``
starts the other processes by running the calling script again, so call it from a script that can be
run twice (every process reaches ``fit``; only rank 0 should write results); ``"ddp_spawn"`` returns
the weights to the caller but not the history. At their defaults these options are in no fingerprint or
identity (``RUN_DEFAULTS``), so fits made before they existed still resume and verify.

Curves: with ``log_dir`` set on the aligner (an attribute, not a hyper-parameter: where curves go
never changes a number, so it is no part of a fit's identity or of the saved aligner), a fit leaves
Lightning's logs there: ``metrics.csv`` (the loss of every step, per-epoch train/val loss and the
core's parts) and ``hparams.yaml``, plus ``tensorboard/`` when TensorBoard is installed. They are written
into a temporary folder moved into place when the fit ends (``atomic_dir``): an interrupted fit leaves
no curves behind, and a refit replaces the old ones whole. A fit resumed from a checkpoint logs the
epochs it runs (the checkpoint's ``history`` has the earlier ones).

Checkpoints are torch pickles written by this code; they are read by torch's loader in
``weights_only`` mode, which rebuilds tensors and plain containers only. Fitted aligners themselves are
saved with safetensors (``Aligner.save``), never pickled.

Lightning is imported inside the methods that need it (from the training modules of
:mod:`align.methods.framework`), so importing an aligner stays fast.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from align.errors import BadInputError
from align.methods.framework.base import Aligner
from align.methods.framework.cores import core_path, resolve_core
from align.methods.framework.hparams import MAX_EPOCHS, MAX_ROWS, SEED_MAX, HParams, param

# hyper-parameters that may differ between an interrupted fit and the fit that resumes it
RESUMABLE_CHANGES = ("max_epochs", "progress", "checkpoint_dir")
# where and how a fit runs (Lightning's options), added after fits and checkpoints existed: at these
# defaults they are left out of fingerprints and identities, so those stay what they were
RUN_DEFAULTS: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
PRECISIONS = ("32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def without_run_defaults(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """``hparams`` without the ``RUN_DEFAULTS`` keys that hold their default."""
    return {k: v for k, v in hparams.items() if not (k in RUN_DEFAULTS and v == RUN_DEFAULTS[k])}


@dataclass(frozen=True)
class TrainedHParams(HParams):
    """What every trained aligner takes besides its own. ``weight_decay``, ``batch_size`` and
    ``max_epochs`` are declared again by each aligner, with its own defaults and rules."""

    lr: float = param(1e-3, above=0)
    seed: int = param(0, low=0, high=SEED_MAX)
    checkpoint_dir: str | None = param(None, path=True, want="a directory path or None")
    deterministic: bool = True
    progress: bool = False
    # Lightning's: e.g. accelerator "gpu", devices 4, strategy "ddp"; devices > 1 trains data-parallel on
    # the same global batch (``batch_size`` rows split across the devices)
    accelerator: str = param("cpu", choices=("cpu", "gpu", "cuda", "mps", "tpu", "auto"))
    devices: int = param(1, low=1, high=1024)
    strategy: str = "auto"
    precision: str = param("32-true", choices=PRECISIONS)
    weight_decay: float = param(0.0, low=0)
    batch_size: int = param(64, low=1, high=MAX_ROWS)
    max_epochs: int = param(10, low=0, high=MAX_EPOCHS)


def fingerprint(name: str, hparams: Mapping[str, Any], tensors: Sequence[torch.Tensor]) -> str:
    """sha256 of an aligner's name, its hyper-parameters (but ``RESUMABLE_CHANGES``) and training tensors."""
    digest = hashlib.sha256()
    fixed = {k: v for k, v in without_run_defaults(hparams).items() if k not in RESUMABLE_CHANGES}
    digest.update(json.dumps([name, fixed], sort_keys=True, default=str).encode())
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class TrainedAligner(Aligner):
    """An aligner whose fit trains ``core_class`` with ``CoreModule`` (AdamW, per-epoch loss history).

    Subclasses set ``core_class`` and ``config_class`` (a ``TrainedHParams``), call :meth:`_train` from
    their fit method, and implement ``_set_dims`` (dimensions from a fitted module) and
    ``_load_shape`` (the data-dependent core arguments, from a saved state). The core's other
    constructor arguments are the hyper-parameters of the same names.

    ``shape_args`` names the data-dependent core arguments (those ``_train`` is given as ``shape``), so
    :meth:`from_checkpoint` takes exactly those from a checkpoint. The optimiser is ``CoreModule``'s
    AdamW; an aligner departs from it by class (``adamw_betas``, ``fused_adamw``, ``min_warmup_steps``)
    or by its hyper-parameters (:meth:`lr_schedule`), and stops early after
    :meth:`early_stopping_patience` epochs."""

    core_class: ClassVar[type[nn.Module]]
    config: TrainedHParams
    shape_args: ClassVar[tuple[str, ...]] = ("image_dim", "text_dim")
    adamw_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    fused_adamw: ClassVar[bool] = True
    min_warmup_steps: ClassVar[int] = 0
    logs_curves = True

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.module: Any = None  # the fitted CoreModule (a LightningModule), in eval mode
        self.history: dict[str, list[float]] = {}  # per-epoch means: train_loss, val_loss, the core's parts
        self.log_dir: str | Path | None = None  # where the next fit's curves go (module docstring); not an hparam

    # ------------------------------------------------------------------ building

    def lr_schedule(self) -> tuple[float, str]:
        """``(warmup_fraction, "constant" | "cosine")`` of the learning rate (``CoreModule``); none by default."""
        return 0.0, "constant"

    def early_stopping_patience(self) -> int | None:
        """Epochs without a better validation score before the fit stops (None: no early stopping)."""
        return None

    def early_stopping_monitor(self) -> tuple[str, str]:
        """``(metric, "min" | "max")``: the per-epoch validation value early stopping and the kept best epoch
        follow (a core's ``validation_compute`` may add metrics to ``val_loss``)."""
        return "val_loss", "min"

    def core_args(self, shape: Mapping[str, Any]) -> dict[str, Any]:
        """The core's constructor arguments: ``shape`` (what the data fixes) and the hyper-parameters
        named like its other parameters."""
        wanted = inspect.signature(self.core_class).parameters
        return {**shape, **{k: v for k, v in self.hparams.items() if k in wanted and k not in shape}}

    def build(self, shape: Mapping[str, Any] | None = None) -> Any:
        """A fresh Lightning module around a new core."""
        from align.methods.framework.module import CoreModule

        config = self.config
        warmup_fraction, schedule = self.lr_schedule()
        return CoreModule(self.core_class, self.core_args(shape or {}), lr=config.lr, weight_decay=config.weight_decay,
                          extra=dict(self.hparams), warmup_fraction=warmup_fraction, schedule=schedule,
                          betas=self.adamw_betas, fused=self.fused_adamw, min_warmup_steps=self.min_warmup_steps)

    def _callbacks(self) -> list[Any]:
        """Extra Lightning callbacks of a fit: with an :meth:`early_stopping_patience` (and ``val_fraction`` of the pairs held
        out), early stopping on :meth:`early_stopping_monitor`, keeping the best epoch."""
        patience = self.early_stopping_patience()
        if patience is None:
            return []
        from pytorch_lightning.callbacks import EarlyStopping

        from align.methods.framework.checkpoints import BestWeights

        monitor, mode = self.early_stopping_monitor()
        return [EarlyStopping(monitor, patience=patience, mode=mode), BestWeights(monitor, mode)]

    # ------------------------------------------------------------------ training

    def _train(self, what: str, tensors: Sequence[torch.Tensor], shape: Mapping[str, Any], *,
              prepare: Callable[[Any, Any], None] | None = None, val_fraction: float = 0.0,
              ckpt_path: str | Path | None = None) -> TrainedAligner:
        """Fit on row-aligned ``tensors`` (batched together, seeded shuffling, ``val_fraction`` held out).

        ``prepare(core, data)`` runs on the fresh core before training (fit-time initialisation; a
        resumed fit then overwrites it with the checkpoint). ``ckpt_path`` resumes from a given
        checkpoint; without it a ``last.ckpt`` of this fit in ``checkpoint_dir`` is resumed."""
        from align.methods.framework.checkpoints import FitState
        from align.methods.framework.data import FeatureDataModule, split_sizes
        from align.methods.framework.seeding import seeded
        from align.methods.framework.trainer import fit, make_trainer, quiet

        undeclared = set(shape) - set(self.shape_args)
        if undeclared:  # from_checkpoint would not rebuild the core
            raise TypeError(f"{type(self).__name__}.shape_args lacks {sorted(undeclared)}")
        config = self.config
        _, n_val = split_sizes(len(tensors[0]), val_fraction)
        self._check_checkpoint_dir(what)
        keep = config.checkpoint_dir is not None or ckpt_path is not None
        stamp = fingerprint(self.name, self.hparams, tensors) if keep else None
        found = self._resume_from(what, stamp, ckpt_path)
        resume = found[0] if found is not None else None
        with seeded(config.seed), quiet(not config.progress):
            data = FeatureDataModule(*tensors, batch_size=config.batch_size, val_fraction=val_fraction, seed=config.seed)
            module = self.build(shape)
            if prepare is not None:
                prepare(module.core, data)
            if found is not None:  # weights Lightning could not load would fail the resume with a traceback
                self._check_resumable(what, found, module, explicit=ckpt_path is not None)
                found = None  # the checkpoint's (memory-mapped) tensors are not kept through the fit
            with self._curves_dir() as log_dir:
                trainer = make_trainer(config.max_epochs, deterministic=config.deterministic, progress=config.progress,
                                       accelerator=config.accelerator, devices=config.devices,
                                       strategy=config.strategy, precision=config.precision,
                                       checkpoint_dir=config.checkpoint_dir, monitor=self.early_stopping_monitor() if n_val else None,
                                       callbacks=[*self._callbacks(), FitState(stamp)], log_dir=log_dir,
                                       **({} if n_val else {"limit_val_batches": 0}))
                fit(trainer, module, data, resume)  # SafeCheckpointIO: weights_only=True
        self._adopt(module)
        return self

    @contextmanager
    def _curves_dir(self) -> Iterator[Path | None]:
        """A temporary folder for this fit's logs, moved to ``log_dir`` when the fit succeeds (None: no curves)."""
        if self.log_dir is None:
            yield None
            return
        from align.atomic import atomic_dir

        with atomic_dir(Path(self.log_dir)) as tmp:
            yield tmp

    def _check_checkpoint_dir(self, what: str) -> None:
        """A ``checkpoint_dir`` that is a file, cannot be created or cannot be written is a one-line error
        before any training (Lightning would fail on the first ``last.ckpt``, after an epoch's work)."""
        if self.config.checkpoint_dir is None:
            return
        folder = Path(self.config.checkpoint_dir)
        if folder.exists() and not folder.is_dir():
            raise BadInputError(f"{what}: checkpoint_dir {folder} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BadInputError(f"{what}: checkpoint_dir {folder} cannot be created ({err.strerror or err})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BadInputError(f"{what}: checkpoint_dir {folder} is not writable")

    def _resume_from(self, what: str, stamp: str | None,
                     ckpt_path: str | Path | None) -> tuple[str, dict[str, Any]] | None:
        """The checkpoint to resume from, if any (its path, and its contents memory-mapped), after checking it
        is a readable checkpoint of this fit. One that is not is a one-line error naming it, and is left
        as it is: a fit never starts over in place of a user's checkpoint."""
        from align.methods.framework.checkpoints import checkpoint_fingerprint, fit_checkpoint

        if ckpt_path is not None:
            path, explicit = Path(ckpt_path), True
            if not path.is_file():
                raise BadInputError(f"{what}: no checkpoint at {path}")
        elif self.config.checkpoint_dir is not None:
            path, explicit = Path(self.config.checkpoint_dir) / "last.ckpt", False
            if not path.exists():
                return None
        else:
            return None
        try:
            checkpoint = fit_checkpoint(path, mmap=True)
        except BadInputError as err:
            raise BadInputError(f"{what}: {err}{self._resume_advice(explicit)}") from None
        saved = checkpoint_fingerprint(checkpoint)
        # a checkpoint written before fingerprints existed is resumed only when named explicitly
        if saved != stamp and not (explicit and saved is None):
            raise BadInputError(f"{what}: {path} is a checkpoint of another fit (other data or hyper-parameters); "
                                "delete it or choose another checkpoint_dir")
        return str(path), checkpoint

    def _check_resumable(self, what: str, found: tuple[str, dict[str, Any]], module: Any, explicit: bool) -> None:
        """A one-line error if the checkpoint's weights do not fit ``module`` (names or shapes)."""
        from align.methods.framework.checkpoints import weights_problem

        path, checkpoint = found
        why = weights_problem(checkpoint["state_dict"], module)
        if why is not None:
            raise BadInputError(f"{what}: {path}: {why}{self._resume_advice(explicit)}")

    @staticmethod
    def _resume_advice(explicit: bool) -> str:
        return "" if explicit else "; delete it to fit from the start, or choose another checkpoint_dir"

    def _adopt(self, module: Any) -> None:
        """Keep a trained (or restored) module in eval mode, with its history and dimensions."""
        module.eval()
        self.module = module
        self.history = {k: list(v) for k, v in module.history.items()}
        self._set_dims(module)

    def _set_dims(self, module: Any) -> None:
        raise NotImplementedError

    def _load_shape(self, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The data-dependent core arguments of a saved state (``image_dim``/``text_dim`` are set)."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> TrainedAligner:
        """The aligner in a Lightning checkpoint of ``fit`` (its hyper-parameters and weights); a file that
        is not one (missing, damaged, another kind of file, a checkpoint of another aligner's core or of
        other shapes) is a one-line error naming it."""
        from align.methods.framework.checkpoints import load_checkpoint, restore_core, weights_problem

        checkpoint = load_checkpoint(path)
        saved, weights = checkpoint.get("hyper_parameters"), checkpoint.get("state_dict")
        if not (isinstance(saved, dict) and isinstance(saved.get("core"), str) and isinstance(weights, dict)
                and isinstance(saved.get("extra"), dict) and isinstance(saved.get("core_args"), dict)):
            raise BadInputError(f"{path}: not a Lightning checkpoint of an align fit (no core, hyper-parameters "
                                "and weights in it)")
        try:
            core = resolve_core(saved["core"])
        except BadInputError as err:
            raise BadInputError(f"{path}: {err}") from None
        if core is not cls.core_class:
            raise BadInputError(f"{path}: a checkpoint of {saved['core']}, not of {cls.name} "
                                f"({core_path(cls.core_class)})")
        try:
            aligner = cls(**cls.saved_hparams(saved["extra"]))
        except BadInputError as err:
            raise BadInputError(f"{path}: {err}") from None
        shape = {k: v for k, v in saved["core_args"].items() if k in cls.shape_args}

        def build() -> Any:
            module = aligner.build(shape)
            why = weights_problem(weights, module)
            if why is not None:
                raise BadInputError(f"{path}: {why}")
            return module

        module = restore_core(build, {k.removeprefix("core."): v for k, v in weights.items()})
        module.history = {k: list(v) for k, v in checkpoint.get("history", {}).items()}
        aligner._adopt(module)
        return aligner

    # ------------------------------------------------------------------ fitted state

    @property
    def core(self) -> Any:
        """The trained ``nn.Module``."""
        self._require_fitted()
        return self.module.core

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The core's weights and buffers (frozen parts such as a language model are rebuilt from names)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.core.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Needs the dimensions set first (``Aligner.load`` does this)."""
        from align.methods.framework.checkpoints import restore_core

        shape = self._load_shape(state)
        self._adopt(restore_core(lambda: self.build(shape), state))
