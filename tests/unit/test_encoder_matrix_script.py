"""benchmarks/encoder_matrix.py's statistics (no encoder is run): the exact permutation p of Spearman's
rho enumerates every ordering, so it equals a brute-force count and is the same on every call."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats

from bench_scripts import load_benchmark

script = load_benchmark("encoder_matrix")


def test_exact_permutation_p_equals_a_brute_force_count_with_ties() -> None:
    a, b = np.array([3.0, 1, 4, 1.5, 5, 9]), np.array([2.0, 7, 1, 8, 2, 8.5])  # b has a tie
    observed = abs(stats.spearmanr(a, b).statistic)
    brute = np.mean([abs(stats.spearmanr(a, np.array(order)).statistic) >= observed - 1e-12
                     for order in itertools.permutations(b)])
    assert script.exact_permutation_p(a, b) == brute


def test_a_perfect_ranking_of_five_has_p_two_in_120_on_every_call() -> None:
    x, y = [0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0]
    first = script.spearman(x, y)
    assert abs(first[0] - 1) < 1e-12 and first[2] == 2 / 120  # the identity and the reversal reach |rho| = 1
    assert script.spearman(x, y) == first
