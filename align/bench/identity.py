"""What produced a result or a fit: its identity, stored in it and compared on every rerun.

A result is identified by the config's dataset entry and task options, the aligner's name, code
version (``Aligner.version``) and resolved hyper-parameters (with its sweep's grid, validation part and
selector), the seed, the encoders and the sha256 of their weights, the dataset's version and asset
hashes, and the evaluation code's version (``tasks.EVAL_VERSION``). The identity is those parts plus
the sha256 of their canonical JSON; a result whose stored identity differs from the one the config
gives now was produced by something else and is recomputed, never reported as this run's.

A fit's identity is the same without the evaluation side (eval split, label set, task) and with the
hyper-parameters really fitted (a sweep's choice), so a fitted aligner saved under ``--save-aligners``
is reused only for the very same fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from align.checksum import canonical
from align.methods.framework.trained import without_run_defaults

if TYPE_CHECKING:
    from align.methods.framework.base import Aligner

FORMAT = 1
# hyper-parameters that never change a number: a fit resumed from a checkpoint equals an uninterrupted one,
# and where a fit runs (CPU or GPU, one device or several data-parallel ones) changes only float rounding.
# ``precision`` does change numbers: it is identity, but left out at its default (``RUN_DEFAULTS``) so
# results made before it existed keep their identity.
NOT_IDENTITY = ("progress", "checkpoint_dir", "accelerator", "devices", "strategy")


def sealed(parts: Mapping[str, Any]) -> dict[str, Any]:
    """``{"sha256": ..., "parts": parts}``."""
    return {"sha256": hashlib.sha256(canonical(parts)).hexdigest(), "parts": dict(parts)}


def aligner_part(name: str, aligner: Aligner, sweep: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The aligner as it will be fitted: registry name, code version, resolved hyper-parameters and sweep."""
    hparams = {k: v for k, v in without_run_defaults(aligner.hparams).items() if k not in NOT_IDENTITY}
    part = {"name": name, "version": str(type(aligner).version), "hparams": hparams}
    return {**part, "sweep": dict(sweep)} if sweep is not None else part


def fit_parts(*, aligner: Mapping[str, Any], seed: int, encoders: Mapping[str, Any],
              dataset: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a fit depends on (``dataset`` describes the fit split only)."""
    return {"format": FORMAT, "aligner": dict(aligner), "seed": int(seed), "encoders": dict(encoders),
            "dataset": dict(dataset)}


def result_parts(fit: Mapping[str, Any], *, evaluation: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
    """A fit's parts plus what scoring depends on: the eval split and label set, the task and its options."""
    return {**fit, "dataset": {**fit["dataset"], **evaluation}, "task": dict(task)}
