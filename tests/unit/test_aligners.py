"""Ridge and Procrustes aligners: planted maps recovered, invariances, save/load, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from align.errors import BadInputError
from align.eval.retrieval import evaluate_retrieval
from align.methods.framework.base import Aligner, load_aligner
from align.methods.procrustes import ProcrustesAligner
from align.methods.ridge import AUTO_ALPHAS, RidgeAligner
from align.registry import ALIGNERS

NAMES = ("ridge", "procrustes")


def gaussian(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def rotation(dim: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(ortho_group.rvs(dim, random_state=seed)).float()


def recall_at_1(aligner: Aligner, images: torch.Tensor, texts: torch.Tensor) -> float:
    """Text->image R@1 of one text per image (row i pairs with row i)."""
    image_emb, text_emb = aligner.encode_image(images), aligner.encode_text(texts)
    metrics = evaluate_retrieval(image_emb, text_emb, torch.arange(len(images)), ks=(1,))
    return metrics["image_retrieval_recall@1"]


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_metadata(name: str) -> None:
    assert name in ALIGNERS
    meta = ALIGNERS.meta(name)
    assert meta.description and meta.citation
    assert isinstance(ALIGNERS.create(name), Aligner)


# ---------------------------------------------------------------- ridge


def test_ridge_recovers_planted_linear_map() -> None:
    x = gaussian(200, 16, 0) * 5 + 3  # scale and offset must not matter
    a, c = gaussian(16, 12, 1), gaussian(1, 12, 2)
    aligner = RidgeAligner(alpha=1e-9).fit(x, x @ a + c)
    assert torch.allclose(aligner.weight, a, atol=1e-4)
    assert torch.allclose(aligner.bias, c[0], atol=1e-3)
    test = gaussian(300, 16, 3) * 5 + 3
    assert torch.allclose(aligner.encode_image(test), test @ a + c, atol=1e-3)
    assert recall_at_1(aligner, test, test @ a + c) == 1.0


@pytest.mark.parametrize("n", [80, 30])  # primal (N >= Di) and dual (N < Di) solves
@pytest.mark.parametrize("alpha", [0.0, 0.05, 2.0])
def test_ridge_matches_scikit_learn(n: int, alpha: float) -> None:
    from sklearn.linear_model import LinearRegression, Ridge

    x, y = gaussian(n, 40, 4).double() * 3, gaussian(n, 7, 5).double()
    aligner = RidgeAligner(alpha=alpha).fit(x, y)
    # our loss is mean-squared with x scaled by s; scikit-learn's is summed on raw x
    s = float((x - x.mean(0)).pow(2).mean().sqrt())
    reference = LinearRegression() if alpha == 0 else Ridge(alpha=n * alpha * s**2)
    reference.fit(x.numpy(), y.numpy())
    assert np.allclose(aligner.weight.numpy(), reference.coef_.T, atol=2e-4)
    assert np.allclose(aligner.bias.numpy(), reference.intercept_, atol=2e-4)


def test_ridge_auto_alpha_is_from_grid_and_saved(tmp_path: Path) -> None:
    x = gaussian(60, 10, 6)
    y = x @ gaussian(10, 5, 7) + 2.0 * gaussian(60, 5, 8)
    aligner = RidgeAligner(alpha="auto").fit(x, y)
    assert any(aligner.alpha_ == pytest.approx(a) for a in AUTO_ALPHAS)
    clean = RidgeAligner(alpha="auto").fit(x, x @ gaussian(10, 5, 7))
    assert clean.alpha_ < aligner.alpha_  # less noise, less shrinkage
    aligner.save(tmp_path / "auto")
    assert RidgeAligner.load(tmp_path / "auto").alpha_ == aligner.alpha_


# ---------------------------------------------------------------- procrustes


@pytest.mark.parametrize("text_dim", [8, 12])
def test_procrustes_recovers_planted_rotation(text_dim: int) -> None:
    x = gaussian(100, 8, 9) * torch.linspace(3, 0.5, 8)  # distinct variances: a well-defined PCA
    q = rotation(text_dim, 10)[:8]  # [8, text_dim] with orthonormal rows: an isometry
    offset = gaussian(1, text_dim, 11)
    aligner = ProcrustesAligner().fit(x, x @ q + offset)
    test = gaussian(50, 8, 12) * torch.linspace(3, 0.5, 8)
    assert torch.allclose(aligner.encode_image(test), aligner.encode_text(test @ q + offset), atol=1e-4)
    assert recall_at_1(aligner, test, test @ q + offset) == 1.0


def test_procrustes_invariant_to_rotating_text_space() -> None:
    x, a = gaussian(120, 10, 13), gaussian(10, 9, 14)
    y = x @ a + 0.5 * gaussian(120, 9, 15)
    r = rotation(9, 16)
    test_x, test_y = gaussian(40, 10, 17), gaussian(40, 10, 18) @ a
    plain = ProcrustesAligner().fit(x, y)
    rotated = ProcrustesAligner().fit(x, y @ r)

    def cosine(aligner: Aligner, texts: torch.Tensor) -> torch.Tensor:
        img = torch.nn.functional.normalize(aligner.encode_image(test_x), dim=-1)
        return img @ torch.nn.functional.normalize(aligner.encode_text(texts), dim=-1).T

    assert torch.allclose(cosine(plain, test_y), cosine(rotated, test_y @ r), atol=1e-4)


def test_procrustes_dimension_choice() -> None:
    x, y = gaussian(6, 10, 19), gaussian(6, 12, 20)
    assert ProcrustesAligner().fit(x, y).encode_image(x).shape == (6, 5)  # N - 1
    assert ProcrustesAligner(dim=3).fit(x, y).encode_text(y).shape == (6, 3)
    with pytest.raises(BadInputError, match="exceeds"):
        ProcrustesAligner(dim=6).fit(x, y)


# ---------------------------------------------------------------- both


@pytest.mark.parametrize("name", NAMES)
def test_beats_chance_on_noisy_planted_map(name: str) -> None:
    x, a = gaussian(400, 32, 21), gaussian(32, 24, 22)
    y = x @ a + 6.0 * gaussian(400, 24, 23)  # noise about as strong as the signal in every dimension
    aligner = ALIGNERS.create(name).fit(x, y)
    test_x = gaussian(200, 32, 24)
    r1 = recall_at_1(aligner, test_x, test_x @ a + 6.0 * gaussian(200, 24, 25))
    assert r1 > 0.2  # chance is 1/200 (measured: ridge 0.78, procrustes 0.41)


@pytest.mark.parametrize("name, hparams", [("ridge", {"alpha": 0.3}), ("procrustes", {"dim": 4})])
def test_save_load_round_trip_is_exact(tmp_path: Path, name: str, hparams: dict) -> None:
    x, y = gaussian(30, 6, 26), gaussian(30, 5, 27)
    aligner = ALIGNERS.create(name, **hparams).fit(x, y)
    aligner.save(tmp_path / "fitted")
    assert (tmp_path / "fitted.safetensors").exists() and (tmp_path / "fitted.json").exists()
    for loaded in (type(aligner).load(tmp_path / "fitted"), load_aligner(tmp_path / "fitted")):
        assert type(loaded) is type(aligner) and loaded.hparams == aligner.hparams
        assert (loaded.image_dim, loaded.text_dim) == (6, 5)
        probe_x, probe_y = gaussian(9, 6, 28), gaussian(9, 5, 29)
        assert torch.equal(loaded.encode_image(probe_x), aligner.encode_image(probe_x))
        assert torch.equal(loaded.encode_text(probe_y), aligner.encode_text(probe_y))


def _nan_row(rows: int, cols: int, seed: int) -> torch.Tensor:
    bad = gaussian(rows, cols, seed)
    bad[3, 1] = float("nan")
    return bad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("call, message", [
    (lambda a: a.fit(_nan_row(10, 4, 30), gaussian(10, 3, 31)), "row 3 contains NaN"),
    (lambda a: a.fit(gaussian(10, 4, 30), gaussian(9, 3, 31)), "10 image rows but 9 text rows"),
    (lambda a: a.fit(gaussian(1, 4, 30), gaussian(1, 3, 31)), "at least 2 pairs"),
    (lambda a: a.fit(gaussian(10, 4, 30)[0], gaussian(10, 3, 31)), "2-D"),
    (lambda a: a.fit(gaussian(10, 4, 30), gaussian(10, 3, 31)).encode_image(gaussian(2, 5, 32)),
     "dimension 5.*expects 4"),
    (lambda a: a.fit(gaussian(10, 4, 30), gaussian(10, 3, 31)).encode_text(_nan_row(5, 3, 33)), "NaN"),
])
def test_bad_inputs_are_one_line_errors(name: str, call, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as err:
        call(ALIGNERS.create(name))
    assert "\n" not in str(err.value) and name in str(err.value)


def test_bad_hparams_and_unfitted() -> None:
    with pytest.raises(BadInputError, match="alpha"):
        RidgeAligner(alpha=-1)
    with pytest.raises(BadInputError, match="alpha"):
        RidgeAligner(alpha="big")
    with pytest.raises(BadInputError, match="dim"):
        ProcrustesAligner(dim=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        RidgeAligner().encode_image(gaussian(2, 3, 34))
    with pytest.raises(BadInputError, match="constant"):
        RidgeAligner().fit(torch.ones(5, 3), gaussian(5, 2, 35))
