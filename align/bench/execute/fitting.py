"""Fitting an aligner for the runner: reuse a saved fit only when it verifies and is the same fit, and
name a fit that diverged instead of letting its NaN surface later as "scores contain NaN".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from align.atomic import atomic_path
from align.errors import AlignError, BadInputError

if TYPE_CHECKING:
    from align.methods.framework.base import Aligner


class FitTexts:
    """The fit captions, as strings and (computed on first use, from the cache) as text-encoder features."""

    def __init__(self, captions: list[str], features: Callable[[], torch.Tensor]) -> None:
        self.captions = captions
        self._make, self._features = features, None

    def for_aligner(self, aligner: Aligner) -> torch.Tensor | list[str] | None:
        if aligner.text_input == "none":
            return None
        if aligner.text_input == "strings":
            return self.captions
        if self._features is None:
            self._features = self._make()
        return self._features


def divergence(aligner: Aligner) -> str | None:
    """Why a fitted ``aligner`` is unusable (a non-finite training loss, NaN in its fitted tensors), or None."""
    losses = aligner.history.get("train_loss", [])
    for epoch, loss in enumerate(losses, 1):
        if not math.isfinite(loss):
            return f"loss {loss} at epoch {epoch}"
    try:
        state = aligner.state_dict()
    except NotImplementedError:
        return None
    for name, tensor in state.items():
        if tensor.is_floating_point() and torch.isnan(tensor).any():
            return f"NaN in its fitted {name!r}"
    return None


def check_fit(aligner: Aligner, display: str, where: str, seed: int) -> None:
    """A one-line error naming the aligner and the data if its fit diverged."""
    why = divergence(aligner)
    if why is not None:
        raise BadInputError(f"fit of {display} on {where} (seed {seed}) diverged ({why}); "
                            "lower its learning rate or change its hyper-parameters")


def saved_state(path: Path, identity: str) -> tuple[str, str]:
    """``("ok" | "missing" | "stale" | "damaged", why)`` of the fit saved at ``path`` for a fit of
    identity sha256 ``identity`` (checked on the verified JSON; tensors hashed against it). A fit saved
    without its checksums is "damaged": nothing ties the tensors beside it to the fit its JSON names, so
    it is never reused (an explicit ``load_aligner`` of such a file still loads it, with a warning)."""
    from align.methods.framework.base import saved_meta

    if not path.with_suffix(".json").exists() and not path.with_suffix(".safetensors").exists():
        return "missing", ""
    try:
        meta = saved_meta(path, require_checksums=True)
    except AlignError as err:
        return "damaged", str(err)
    found = meta.get("provenance", {}).get("identity", {}).get("sha256") if isinstance(
        meta.get("provenance"), dict) and isinstance(meta["provenance"].get("identity"), dict) else None
    if found != identity:
        return "stale", f"{path}: the saved fit is of other settings or data"
    return "ok", ""


def fit_or_reuse(aligner: Aligner, fit_inputs: Callable[[Aligner], tuple[Any, Any]], *, path: Path | None, reuse: bool,
                 identity: dict[str, Any], display: str, where: str, seed: int,
                 echo: Callable[[str], None], curves: Path | None = None) -> Aligner:
    """``aligner`` fitted on ``fit_inputs(aligner)``, or (``reuse``) the verified fit of the same identity
    saved at ``path`` (``None``: neither reused nor saved). A fit made here is checked for divergence and
    saved with its identity when ``path`` is given. An aligner that logs curves (``log_dir``, the trained
    ones) leaves them in ``curves`` with a ``fit.json`` naming the fit, also when it diverged."""
    from align.methods.framework.base import load_aligner

    if path is not None and reuse:
        state, why = saved_state(path, identity["sha256"])
        if state == "ok":
            try:
                reused = load_aligner(path, require_checksums=True)
            except AlignError as err:
                state, why = "damaged", str(err)
            else:
                echo(f"reusing the fitted aligner {path}")
                return reused
        if why:
            echo(f"{why}; fitting again")
    logs = curves is not None and aligner.logs_curves
    if logs:
        aligner.log_dir = curves
    try:
        aligner.fit(*fit_inputs(aligner)) if aligner.fits_on_pairs else aligner.fit()  # nothing to learn: no features
    finally:
        if logs:
            aligner.log_dir = None
    if logs and curves.is_dir():  # YAML, like Lightning's hparams.yaml beside it (and no *.json among results)
        with atomic_path(curves / "fit.yaml") as tmp:
            tmp.write_text(yaml.safe_dump({"aligner": display, "fit": where, "seed": seed, "identity": identity["sha256"],
                                           "diverged": divergence(aligner)}, sort_keys=False))
    check_fit(aligner, display, where, seed)
    if path is not None:
        history = aligner.history  # per-epoch training curves, for plots of saved fits
        aligner.save(path, provenance={"identity": identity, **({"history": history} if history else {})})
    return aligner
