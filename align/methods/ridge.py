"""Ridge regression from image features to text features: the simplest supervised alignment baseline.

The shared space is the text space: ``encode_image(x) = x W + b`` predicts a text embedding and
``encode_text`` is the identity, so text features embedded once can be reused as they are.

Scaling: both sides are centred, and the image features are divided by one scalar, the root of
their mean per-feature variance, before the solve (the scale is folded back into ``W``). The
objective is the *mean* squared error plus ``alpha * ||W||^2``:

    W = argmin (1/N) ||Yc - Xs W||^2 + alpha ||W||^2,   Xs = (X - mean_x) / s_x

so ``alpha`` means the same thing whatever the number of pairs and the overall scale of an encoder's
features (``alpha = 1`` shrinks as much as one average feature variance). A single scalar keeps the
solution equivariant to rotations of the image space, which per-feature standardisation would not.

``alpha="auto"`` picks alpha from a log grid by efficient leave-one-out error (scikit-learn's
``RidgeCV``, generalised cross-validation), so no seed and no pairs are held back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from align.errors import BadInputError
from align.methods.framework.base import Aligner, check_features, check_pairs
from align.methods.framework.hparams import HParams, param
from align.registry import ALIGNERS

AUTO_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-4, 3, 15))


def ridge_solve(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """``argmin (1/N)||y - x W||^2 + alpha ||W||^2`` for centred ``x [N, Di]``, ``y [N, Dt]``, in float64.

    Uses the primal system when N >= Di and the dual (kernel) one otherwise, so the matrix inverted is
    the smaller of ``Di x Di`` and ``N x N``; ``alpha = 0`` is the minimum-norm least-squares solution."""
    x, y = x.double(), y.double()
    n, d = x.shape
    if alpha == 0:
        return torch.linalg.pinv(x) @ y
    if n >= d:
        gram = x.T @ x + n * alpha * torch.eye(d, dtype=x.dtype)
        return torch.linalg.solve(gram, x.T @ y)
    kernel = x @ x.T + n * alpha * torch.eye(n, dtype=x.dtype)
    return x.T @ torch.linalg.solve(kernel, y)


def choose_alpha(x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float] = AUTO_ALPHAS) -> float:
    """Alpha (in this module's mean-loss units) with the least leave-one-out squared error over all
    text dimensions, for centred and scaled ``x``; scikit-learn's alpha is ``N`` times ours."""
    from sklearn.linear_model import RidgeCV

    n = x.shape[0]
    search = RidgeCV(alphas=[n * a for a in alphas], fit_intercept=False)
    search.fit(x.double().numpy(), y.double().numpy())
    return float(search.alpha_) / n


@dataclass(frozen=True)
class RidgeHParams(HParams):
    alpha: float | str = param(1.0, low=0, choices=("auto",), want="a number >= 0 or 'auto'")


@ALIGNERS.register(
    "ridge",
    description="Ridge regression (closed form) from image to text features; shared space = text space. "
    "alpha: L2 penalty relative to the mean image-feature variance, or 'auto' (leave-one-out).",
    citation="Hoerl & Kennard, Ridge regression: biased estimation for nonorthogonal problems, "
    "Technometrics 12(1), 1970",
)
class RidgeAligner(Aligner):
    """Closed-form ridge map image -> text; shared space = the text encoder's space."""

    name = "ridge"
    config_class = RidgeHParams
    config: RidgeHParams

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.alpha_: float | None = None  # the alpha actually used (differs from hparams when "auto")
        self.weight: torch.Tensor | None = None  # [Di, Dt], scale folded in
        self.bias: torch.Tensor | None = None  # [Dt]

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor) -> RidgeAligner:
        x, y = check_pairs(image_features, text_features, "ridge.fit")
        x, y = x.double(), y.double()
        mean_x, mean_y = x.mean(0), y.mean(0)
        xc, yc = x - mean_x, y - mean_y
        scale = float(xc.pow(2).mean().sqrt())
        if scale == 0:
            raise BadInputError("ridge.fit: image features are constant across all pairs; nothing to regress on")
        xs = xc / scale
        alpha = self.config.alpha
        self.alpha_ = choose_alpha(xs, yc) if alpha == "auto" else float(alpha)
        weight = ridge_solve(xs, yc, self.alpha_) / scale
        # contiguous, as safetensors stores it: a reloaded aligner then runs the same kernels bit for bit
        self.weight = weight.float().contiguous()
        self.bias = (mean_y - mean_x @ weight).float().contiguous()
        self.image_dim, self.text_dim = x.shape[1], y.shape[1]
        return self

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        image_dim, _ = self._require_fitted()
        x = check_features(image_features, "ridge.encode_image", image_dim)
        assert self.weight is not None and self.bias is not None
        return torch.addmm(self.bias, x, self.weight)

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        _, text_dim = self._require_fitted()
        return check_features(text_features, "ridge.encode_text", text_dim)

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._require_fitted()
        assert self.weight is not None and self.bias is not None and self.alpha_ is not None
        return {"weight": self.weight, "bias": self.bias, "alpha": torch.tensor(self.alpha_, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.weight, self.bias = state["weight"].float(), state["bias"].float()
        self.alpha_ = float(state["alpha"])
        self.image_dim, self.text_dim = self.weight.shape
