"""LQAE's Lightning module: the shared ``CoreModule`` with the official run's optimiser (AdamW betas
0.9/0.95, weight decay on matrices only, linear warm-up then cosine decay to 0)."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch


@functools.cache
def module_class() -> Any:
    """A ``CoreModule`` (which records per-epoch means of the loss terms) with the paper's optimiser
    (AdamW betas 0.9/0.95, warm-up + cosine); defined lazily so importing this file skips Lightning."""
    from align.methods.framework.module import CoreModule

    class LQAEModule(CoreModule):
        def __init__(self, core: str, core_args: dict[str, Any], lr: float, weight_decay: float,
                     extra: dict[str, Any] | None = None, warmup_fraction: float = 0.05) -> None:
            super().__init__(core, core_args, lr, weight_decay, extra)

        def configure_optimizers(self) -> Any:
            trainable = [p for p in self.core.parameters() if p.requires_grad]
            groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": self.hparams.weight_decay},
                      {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
            optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.hparams.lr, betas=(0.9, 0.95))
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = max(1, round(self.hparams.warmup_fraction * total))

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    return LQAEModule
