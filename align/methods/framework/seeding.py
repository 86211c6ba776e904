"""One seed per fit, and the RNG states a checkpoint keeps for an exact resume (imports Lightning)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


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
