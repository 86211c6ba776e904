"""Alignment metrics before fitting: maxima, invariances, chance levels, hand-worked cases, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from align.errors import BadInputError
from align.eval.alignment_metrics import alignment_scores, cknna, knn_indices, linear_cka, mutual_knn


def circle(degrees: list[float]) -> torch.Tensor:
    angles = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def hsic_unbiased_dense(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al. (2012) eq. 5, written out on dense matrices: the reference for the sparse versions."""
    n = k.shape[0]
    k, l = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)
    ones = torch.ones(n, dtype=k.dtype)
    return (torch.trace(k @ l) + k.sum() * l.sum() / ((n - 1) * (n - 2))
            - 2 * ones @ k @ l @ ones / (n - 2)) / (n * (n - 3))


def cknna_dense(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    a = torch.nn.functional.normalize(a.double(), dim=1)
    b = torch.nn.functional.normalize(b.double(), dim=1)
    gram_a, gram_b = a @ a.T, b @ b.T

    def mask(gram: torch.Tensor) -> torch.Tensor:
        scores = gram.clone().fill_diagonal_(-math.inf)
        return torch.zeros_like(gram).scatter_(1, scores.topk(k, dim=1).indices, 1.0)

    m_a, m_b = mask(gram_a), mask(gram_b)
    cross = hsic_unbiased_dense(m_a * m_b * gram_a, m_a * m_b * gram_b)
    return float(cross / torch.sqrt(hsic_unbiased_dense(m_a * gram_a, m_a * gram_a)
                                    * hsic_unbiased_dense(m_b * gram_b, m_b * gram_b)))


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two related spaces: b is a noisy linear image of a in another dimension."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(120, 12, generator=gen, dtype=torch.float64)
    b = a @ torch.randn(12, 20, generator=gen, dtype=torch.float64) + 0.8 * torch.randn(120, 20, generator=gen,
                                                                                         dtype=torch.float64)
    return a, b


def test_identical_spaces_score_the_maximum(pair) -> None:
    a, _ = pair
    scores = alignment_scores(a, a.clone(), k=5)
    assert scores == pytest.approx({"mutual_knn": 1.0, "cknna": 1.0, "cka": 1.0, "cka_debiased": 1.0}, abs=1e-9)


def test_rotation_and_isotropic_scaling_change_neither_cka_nor_mutual_knn(pair) -> None:
    a, b = pair
    rotation, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    moved = 3.5 * a @ rotation
    assert mutual_knn(a, moved, k=7) == 1.0
    assert linear_cka(a, moved) == pytest.approx(1.0, abs=1e-12)
    for debiased in (False, True):
        assert linear_cka(moved, b, debiased=debiased) == pytest.approx(linear_cka(a, b, debiased=debiased), abs=1e-12)
    assert mutual_knn(moved, b, k=7) == mutual_knn(a, b, k=7)
    assert cknna(moved, b, k=7) == pytest.approx(cknna(a, b, k=7), abs=1e-12)


def test_independent_features_give_chance_mutual_knn_and_near_zero_debiased_cka() -> None:
    gen = torch.Generator().manual_seed(2)
    n, k = 1000, 10
    a, b = torch.randn(n, 64, generator=gen), torch.randn(n, 48, generator=gen)
    assert mutual_knn(a, b, k=k) == pytest.approx(k / (n - 1), abs=0.006)
    debiased, biased = linear_cka(a, b, debiased=True), linear_cka(a, b)
    assert abs(debiased) < 0.01
    assert biased > 0.02 and biased > 3 * abs(debiased)  # the bias that debiasing removes at this N and D


def test_mutual_knn_on_five_points_worked_by_hand() -> None:
    """Angles (degrees) on the unit circle; neighbours by angular distance.

    a: 0, 10, 30, 100, 180 -> 2-NN {1,2} {0,2} {0,1} {2,4} {2,3}
    b: 0, 100, 20, 110, 205 -> 2-NN {1,2} {2,3} {0,1} {1,2} {1,3}
    shared: 2, 1, 2, 1, 1 of 2 -> 7 / 10; 1-NN: a 1,0,1,2,3 and b 2,3,0,1,3 share only item 4 -> 1 / 5.
    """
    a, b = circle([0, 10, 30, 100, 180]), circle([0, 100, 20, 110, 205])
    assert sorted(knn_indices(a, 2)[3].tolist()) == [2, 4]
    assert mutual_knn(a, b, k=2) == pytest.approx(0.7)
    assert mutual_knn(a, b, k=1) == pytest.approx(0.2)


def test_linear_cka_of_one_feature_is_the_squared_correlation() -> None:
    """a = 1,2,3,4 and b = 1,3,2,4: centred -1.5,-.5,.5,1.5 and -1.5,.5,-.5,1.5; dot 4, norms² 5 and 5,
    so r = 0.8 and CKA = r² = 0.64."""
    a = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    b = torch.tensor([[1.0], [3.0], [2.0], [4.0]])
    assert linear_cka(a, b) == pytest.approx(0.64)


def test_debiased_cka_matches_the_dense_unbiased_hsic(pair) -> None:
    a, b = pair
    a = a + 5.0  # not centred: the estimator does not depend on a shift of the features
    dense = hsic_unbiased_dense(a @ a.T, b @ b.T) / torch.sqrt(
        hsic_unbiased_dense(a @ a.T, a @ a.T) * hsic_unbiased_dense(b @ b.T, b @ b.T))
    assert linear_cka(a, b, debiased=True) == pytest.approx(float(dense), abs=1e-10)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_cknna_matches_the_dense_reference_formula(pair, k: int) -> None:
    a, b = pair
    assert cknna(a, b, k=k) == pytest.approx(cknna_dense(a, b, k), abs=1e-10)


def test_cknna_with_every_neighbour_is_debiased_cka_of_unit_rows(pair) -> None:
    a, b = pair
    unit_a, unit_b = (torch.nn.functional.normalize(x, dim=1) for x in pair)
    assert cknna(a, b, k=len(a) - 1) == pytest.approx(linear_cka(unit_a, unit_b, debiased=True), abs=1e-10)


def test_knn_search_in_chunks_equals_one_block(pair) -> None:
    unit = torch.nn.functional.normalize(pair[1], dim=1)
    assert torch.equal(knn_indices(unit, 6, chunk=7), knn_indices(unit, 6))


@pytest.mark.parametrize(("call", "message"), [
    (lambda a, b: mutual_knn(a, b[:-1], names=("image", "text")), "image has 120 rows but text has 119"),
    (lambda a, b: mutual_knn(a, b, k=120), "k=120: expected an integer from 1 to N - 1 = 119"),
    (lambda a, b: cknna(a, b, k=0), "k=0"),
    (lambda a, b: linear_cka(a, b.index_fill(0, torch.tensor([4]), math.nan), names=("image", "text")),
     "text: NaN or inf in row 4"),
    (lambda a, b: linear_cka(a[0], b), "a: expected features [N, D]"),
    (lambda a, b: mutual_knn(a.index_fill(0, torch.tensor([2]), 0.0), b), "a: row 2 is all zeros"),
    (lambda a, b: linear_cka(torch.ones_like(a), b), "a: every row is the same"),
    (lambda a, b: linear_cka(a[:3], b[:3], debiased=True), "at least 4"),
])
def test_bad_input_is_a_one_line_error_naming_it(pair, call, message: str) -> None:
    with pytest.raises(BadInputError, match=None) as info:
        call(*pair)
    assert message in str(info.value) and "\n" not in str(info.value)
