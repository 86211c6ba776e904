"""``CoreModule``: the one Lightning module of every trained aligner (imports Lightning).

It trains a plain ``nn.Module`` (the aligner's core) whose ``forward(*batch)`` returns the loss, with
AdamW and an optional warm-up and cosine schedule, and keeps the per-epoch loss history.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from align.methods.framework.cores import core_path, resolve_core


class CoreModule(pl.LightningModule):
    """Trains ``core`` (an ``nn.Module`` class, built from ``core_args``) whose ``forward(*batch)`` returns
    a scalar loss, with AdamW (no weight decay on biases, gains and scalars, as CLIP). After each
    optimiser step it calls ``core.after_step()`` if defined (e.g. to clamp a temperature). Mean train/val
    loss per epoch go to ``history`` (kept in checkpoints), and so do the per-epoch means of the floats a
    core leaves in ``core.parts`` after each training forward (its separate loss terms, e.g. VLAP's
    ``l_cap`` and ``l_map``). ``extra`` is stored untouched, for the caller to rebuild its own object
    from a checkpoint.

    The module's hyper-parameters are saved in checkpoints, so ``CoreModule.load_from_checkpoint``
    rebuilds the core: the core is saved as its ``"package.module:Class"`` (:func:`core_path`; a string
    is also accepted here, as a checkpoint holds it, and resolved by :func:`resolve_core`).

    The optimiser: AdamW with ``betas`` (torch's default (0.9, 0.999); LQAE's official run uses
    (0.9, 0.95)) and ``fused`` (one kernel per step: the per-tensor loop spends most of a small model's
    step in thread start-up for each elementwise op when CPU cores are shared; the two round differently
    in the last bit, so an aligner trained before the fused kernel keeps the loop). ``warmup_fraction``
    > 0 ramps the learning rate up linearly over that fraction of all steps (at least
    ``min_warmup_steps``); ``schedule="cosine"`` then decays it to 0 by the last step (per step; the
    total is Lightning's estimate for ``max_epochs``).

    A core may also score whole validation epochs: ``validation_update(*batch)`` after each validation
    batch and ``validation_compute() -> dict[str, float]`` at the epoch's end, whose values are logged
    and go to ``history`` (e.g. VLAP's validation R@1, which needs every row at once); likewise
    ``training_epoch_compute() -> dict[str, float]`` at each training epoch's end (e.g. the code usage
    Codebook-VLP's codebook counted over the epoch).

    With a logger attached (``make_trainer(log_dir=...)``) the loss of every training step is logged too
    (``train_loss_step``), and so are the per-epoch parts and training-epoch values, so the curves on
    disk hold what ``history`` holds; without one nothing more is logged than before."""

    def __init__(self, core: type[nn.Module] | str, core_args: dict[str, Any], lr: float, weight_decay: float,
                 extra: dict[str, Any] | None = None, warmup_fraction: float = 0.0, schedule: str = "constant",
                 betas: tuple[float, float] = (0.9, 0.999), fused: bool = True, min_warmup_steps: int = 0) -> None:
        super().__init__()
        core_class = resolve_core(core)
        core = core_path(core_class)  # what the checkpoint records (plain data, read back with weights_only)
        betas = [float(b) for b in betas]  # a list: hparams.yaml is then plain YAML (a tuple gets a Python tag)
        self.save_hyperparameters()  # the arguments as they are now
        self.core = core_class(**core_args)
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

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        trainable = [p for p in self.core.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": hp.weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.lr, betas=tuple(hp.betas),
                                      fused=hp.fused)
        if hp.warmup_fraction <= 0 and hp.schedule == "constant" and hp.min_warmup_steps == 0:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(hp.min_warmup_steps, round(hp.warmup_fraction * total))
        factor = functools.partial(warmup_cosine, total=total, warmup=warmup, cosine=hp.schedule == "cosine")
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
