"""Orthogonal Procrustes between the PCA spaces of the two encoders.

Each side is centred and projected on its top ``d`` principal components (PCA by SVD, in float64),
then the orthogonal matrix ``R = argmin ||Zx R - Zy||_F`` (scipy's ``orthogonal_procrustes``) maps
image coordinates onto text coordinates. The shared space is the ``d``-dim PCA text space:

    encode_image(x) = (x - mean_x) Px R        encode_text(y) = (y - mean_y) Py

``d = dim`` or, by default, the largest meaningful value ``min(Di, Dt, N - 1)`` (centred data of N
pairs has rank at most N - 1). Nothing is whitened or rescaled: an orthogonal map cannot fix a
scale, and cosine similarity ignores a global one. Being orthogonal, the map preserves the geometry
of the image space and is unchanged by any rotation of either encoder's space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from scipy.linalg import orthogonal_procrustes

from align.errors import BadInputError
from align.methods.framework.base import Aligner, check_features, check_pairs
from align.methods.framework.hparams import MAX_WIDTH, HParams, param
from align.registry import ALIGNERS


def pca_basis(centred: torch.Tensor, dim: int) -> torch.Tensor:
    """``[D, dim]`` orthonormal top principal directions of centred rows (float64, signs as SVD gives)."""
    _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    return vh[:dim].T


@dataclass(frozen=True)
class ProcrustesHParams(HParams):
    dim: int | None = param(None, low=1, high=MAX_WIDTH)  # None: min(Di, Dt, N - 1)


@ALIGNERS.register(
    "procrustes",
    description="PCA on each side to a common dim, then orthogonal Procrustes image -> text; "
    "shared space = PCA text space. dim: common dimension (None = min(Di, Dt, pairs - 1)).",
    citation="Schönemann, A generalized solution of the orthogonal Procrustes problem, Psychometrika 31(1), 1966",
)
class ProcrustesAligner(Aligner):
    """PCA on each side, then the orthogonal map image -> text; shared space = PCA text space."""

    name = "procrustes"
    config_class = ProcrustesHParams
    config: ProcrustesHParams

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.image_mean: torch.Tensor | None = None  # [Di]
        self.image_weight: torch.Tensor | None = None  # [Di, d] = Px R
        self.text_mean: torch.Tensor | None = None  # [Dt]
        self.text_weight: torch.Tensor | None = None  # [Dt, d] = Py

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor) -> ProcrustesAligner:
        x, y = check_pairs(image_features, text_features, "procrustes.fit")
        n, di = x.shape
        dt = y.shape[1]
        largest = min(di, dt, n - 1)
        dim = self.config.dim
        if dim is not None and dim > largest:
            raise BadInputError(
                f"procrustes.fit: dim={dim} exceeds min(image dim {di}, text dim {dt}, pairs - 1 = {n - 1}) = {largest}"
            )
        d = largest if dim is None else dim
        x, y = x.double(), y.double()
        mean_x, mean_y = x.mean(0), y.mean(0)
        xc, yc = x - mean_x, y - mean_y
        px, py = pca_basis(xc, d), pca_basis(yc, d)
        rotation, _ = orthogonal_procrustes((xc @ px).numpy(), (yc @ py).numpy())
        # contiguous, as safetensors stores it: a reloaded aligner then runs the same kernels bit for bit
        self.image_mean, self.text_mean = mean_x.float().contiguous(), mean_y.float().contiguous()
        self.image_weight = (px @ torch.from_numpy(rotation)).float().contiguous()
        self.text_weight = py.float().contiguous()
        self.image_dim, self.text_dim = di, dt
        return self

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        image_dim, _ = self._require_fitted()
        x = check_features(image_features, "procrustes.encode_image", image_dim)
        assert self.image_mean is not None and self.image_weight is not None
        return (x - self.image_mean) @ self.image_weight

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        _, text_dim = self._require_fitted()
        y = check_features(text_features, "procrustes.encode_text", text_dim)
        assert self.text_mean is not None and self.text_weight is not None
        return (y - self.text_mean) @ self.text_weight

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._require_fitted()
        assert self.image_mean is not None and self.image_weight is not None
        assert self.text_mean is not None and self.text_weight is not None
        return {
            "image_mean": self.image_mean, "image_weight": self.image_weight,
            "text_mean": self.text_mean, "text_weight": self.text_weight,
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.image_mean, self.image_weight = state["image_mean"].float(), state["image_weight"].float()
        self.text_mean, self.text_weight = state["text_mean"].float(), state["text_weight"].float()
        self.image_dim, self.text_dim = self.image_weight.shape[0], self.text_weight.shape[0]
