"""The torch Sinkhorn against POT's log-domain solver (float64 numpy, POT warnings as errors): plans,
marginals, iterates, batches, zero-mass entries, eps = 0.01 on cosines in float32, no gradient."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

import align.kernels.sinkhorn as sk
from align.errors import BadInputError
from align.kernels.sinkhorn import assign, default_stop_thr, sinkhorn_log


def pot_plan(a, b, M, reg: float, stop_thr: float = 1e-12, iters: int = 20_000, exact_iters: bool = False):
    """POT's float64 log-domain plan; its warnings (non-convergence, log of zero) are errors.

    ``exact_iters`` runs exactly ``iters`` iterations (no stopping, convergence warning off)."""
    a, b, M = (np.asarray(x, dtype=np.float64) for x in (a, b, M))
    a, b = a / a.sum(), b / b.sum()  # float32 marginals cast up are off by ~1e-8: POT would stall there
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if exact_iters:
            return ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", numItermax=iters, stopThr=0.0, warn=False)
        return ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", numItermax=iters, stopThr=stop_thr)


def rel_diff(plan: torch.Tensor, reference: np.ndarray) -> float:
    """Max abs difference relative to the reference plan's scale."""
    return float(np.abs(plan.double().numpy() - reference).max() / reference.max())


def problem(k: int, n: int, seed: int, uniform: bool = False):
    rng = np.random.default_rng(seed)
    M = rng.random((k, n))
    if uniform:
        return np.full(k, 1 / k), np.full(n, 1 / n), M
    return rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(n)), M


def cosines(k: int, n: int, dim: int, seed: int) -> torch.Tensor:
    """``[k, n]`` cosines with one near-duplicate per column, so some exceed 0.887 (exp(S/0.01) overflows)."""
    g = torch.Generator().manual_seed(seed)
    words = F.normalize(torch.randn(k, dim, generator=g), dim=1)
    feats = F.normalize(words[torch.arange(n) % k] + 0.2 * torch.randn(n, dim, generator=g) / dim**0.5, dim=1)
    return words @ feats.T


def t64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("reg", [0.1, 0.02])
def test_converged_plan_matches_pot(uniform: bool, reg: float) -> None:
    a, b, M = problem(40, 25, seed=1, uniform=uniform)
    reference = pot_plan(a, b, M, reg)
    plan, log = sinkhorn_log(t64(a), t64(b), t64(M), reg, num_iter_max=100_000, stop_thr=1e-12, log=True)
    assert log["converged"] and log["err"][-1] < 1e-12
    assert rel_diff(plan, reference) < 1e-8
    assert torch.allclose(plan.sum(1), t64(a), atol=1e-12, rtol=0)  # rows exact (last projection)
    assert torch.allclose(plan.sum(0), t64(b), atol=1e-11, rtol=0)


@pytest.mark.parametrize("reg", [0.05, 0.002])
def test_same_iterates_as_pot(reg: float) -> None:
    """After n iterations both solvers hold the same plan; reg = 0.002 on costs in [0, 1] forces
    the exp-domain scalings out of range, so the log-domain fallback is exercised too."""
    a, b, M = problem(30, 20, seed=2)
    for n in (1, 2, 3, 10, 37):
        plan = sinkhorn_log(t64(a), t64(b), t64(M), reg, num_iter_max=n, stop_thr=0.0, warn=False)
        assert rel_diff(plan, pot_plan(a, b, M, reg, iters=n, exact_iters=True)) < 1e-10, n


def test_both_paths_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Easy problem: log-sum-exps only in the first iteration; hard one: the fallback fires."""
    calls = []
    original = sk._lse_
    monkeypatch.setattr(sk, "_lse_", lambda x, dim: calls.append(dim) or original(x, dim))
    a, b, M = problem(30, 20, seed=3)
    sinkhorn_log(t64(a), t64(b), t64(M), 0.5, num_iter_max=20, stop_thr=0.0, warn=False)
    assert len(calls) == 2
    calls.clear()
    sinkhorn_log(t64(a), t64(b), t64(M), 0.002, num_iter_max=20, stop_thr=0.0, warn=False)
    assert len(calls) > 2


def test_batched_problems_match_pot_one_by_one() -> None:
    problems = [problem(20, 12, seed=s) for s in range(3)]
    a = torch.stack([t64(p[0]) for p in problems])
    b = torch.stack([t64(p[1]) for p in problems])
    M = torch.stack([t64(p[2]) for p in problems])
    plans = sinkhorn_log(a, b, M, 0.05, stop_thr=1e-12, num_iter_max=100_000)
    assert plans.shape == (3, 20, 12)
    for plan, (pa, pb, pm) in zip(plans, problems):
        assert rel_diff(plan, pot_plan(pa, pb, pm, 0.05)) < 1e-8


def test_marginals_broadcast_over_a_shared_cost() -> None:
    (a1, b, M), (a2, _, _) = problem(15, 10, seed=4), problem(15, 10, seed=5)
    plans = sinkhorn_log(torch.stack([t64(a1), t64(a2)]), t64(b), t64(M), 0.1, stop_thr=1e-12)
    assert plans.shape == (2, 15, 10)
    assert rel_diff(plans[1], pot_plan(a2, b, M, 0.1)) < 1e-8
    uniform = sinkhorn_log(None, torch.empty(0), t64(M), 0.1, stop_thr=1e-12)
    assert rel_diff(uniform, pot_plan(np.full(15, 1 / 15), np.full(10, 0.1), M, 0.1)) < 1e-8


def test_eps_001_on_cosines_in_float32() -> None:
    """The case that breaks exp-domain float32: cosines above 0.887 at eps = 0.01."""
    S = cosines(300, 64, dim=32, seed=6)
    assert S.max() > 0.887 and torch.isinf(torch.exp(S / 0.01)).any()
    r = torch.softmax(0.3 * torch.randn(300, generator=torch.Generator().manual_seed(7)), 0)
    b = torch.full((64,), 1 / 64)
    plan, log = sinkhorn_log(r, b, -S, 0.01, num_iter_max=5000, log=True)
    assert plan.dtype == torch.float32 and torch.isfinite(plan).all()
    assert log["converged"] and log["err"][-1] < default_stop_thr(torch.float32)
    assert (plan.sum(1) - r).abs().max() < 1e-6 and (plan.sum(0) - b).abs().max() < 1e-6
    reference = pot_plan(r, b, -S.double(), 0.01, stop_thr=1e-9)
    assert rel_diff(plan, reference) < 3e-4  # stopped at 1e-6, the reference at 1e-9
    q = assign(S, r, 0.01, n_iter=3)
    assert torch.isfinite(q).all()


def test_zero_mass_rows_and_columns() -> None:
    a, b, M = problem(20, 10, seed=8)
    a[[0, 7, 19]] = 0.0
    b[[3]] = 0.0
    a, b = a / a.sum(), b / b.sum()
    for dtype in (torch.float32, torch.float64):
        plan = sinkhorn_log(t64(a).to(dtype), t64(b).to(dtype), t64(M).to(dtype), 0.05, num_iter_max=10_000)
        assert torch.isfinite(plan).all()
        assert (plan[[0, 7, 19]] == 0).all() and (plan[:, 3] == 0).all()
        rows, cols = a > 0, b > 0
        reference = pot_plan(a[rows], b[cols], M[np.ix_(rows, cols)], 0.05)
        atol = 1e-5 if dtype == torch.float32 else 1e-8
        assert rel_diff(plan[torch.from_numpy(rows)][:, torch.from_numpy(cols)], reference) < atol
    prior = torch.tensor([0.5, 0.0, 0.5])
    q = assign(torch.randn(3, 4), prior, 0.1, n_iter=5)
    assert torch.isfinite(q).all() and (q[1] == 0).all()


def test_float32_agrees_with_float64() -> None:
    a, b, M = problem(50, 30, seed=9)
    p64 = sinkhorn_log(t64(a), t64(b), t64(M), 0.02, num_iter_max=10_000)
    p32 = sinkhorn_log(t64(a).float(), t64(b).float(), t64(M).float(), 0.02, num_iter_max=10_000)
    assert p64.dtype == torch.float64 and p32.dtype == torch.float32
    assert rel_diff(p32, p64.numpy()) < 5e-5


def test_no_gradient_through_the_plan() -> None:
    M = torch.rand(6, 5, requires_grad=True)
    plan = sinkhorn_log(None, None, M, 0.1)
    assert not plan.requires_grad and plan.grad_fn is None
    S = torch.rand(6, 5, requires_grad=True)
    q = assign(S * 2, torch.full((6,), 1 / 6), 0.1)
    assert not q.requires_grad and q.grad_fn is None


def test_log_stopping_rule_and_warning() -> None:
    a, b, M = problem(20, 10, seed=10)
    assert default_stop_thr(torch.float32) == 1e-6 and default_stop_thr(torch.float64) == 1e-9
    assert default_stop_thr(torch.bfloat16) == 1e-6
    plan, log = sinkhorn_log(t64(a), t64(b), t64(M), 0.1, log=True)
    assert {"niter", "err", "converged", "log_u", "log_v"} <= set(log)
    assert log["converged"] and 0 < log["niter"] < 1000 and log["err"][-1] < 1e-9
    assert torch.allclose(plan, (-t64(M) / 0.1 + log["log_u"][:, None] + log["log_v"][None, :]).exp())
    _, every = sinkhorn_log(t64(a), t64(b), t64(M), 0.1, log=True, check_every=10)
    assert every["niter"] % 10 == 0 and every["niter"] >= log["niter"]
    with pytest.warns(RuntimeWarning, match="did not reach"):
        sinkhorn_log(t64(a), t64(b), t64(M), 0.01, num_iter_max=2)


@pytest.mark.parametrize("n_iter", [1, 3])
def test_assign_iterates_match_pot(n_iter: int) -> None:
    """assign = POT on the transposed problem (prior projected first, batch last), scaled by B."""
    S = cosines(40, 16, dim=8, seed=11).double()
    r = torch.softmax(torch.randn(40, generator=torch.Generator().manual_seed(12), dtype=torch.float64), 0)
    q = assign(S, r, 0.05, n_iter=n_iter)
    reference = pot_plan(np.full(16, 1 / 16), r, -S.T, 0.05, iters=n_iter, exact_iters=True).T * 16
    assert rel_diff(q, reference) < 1e-10
    assert torch.allclose(q.sum(0), torch.ones(16, dtype=torch.float64), atol=1e-12)


def test_assign_targets_converge_to_the_ot_plan() -> None:
    S = cosines(60, 32, dim=16, seed=13)
    r = torch.softmax(torch.randn(60, generator=torch.Generator().manual_seed(14)), 0)
    q = assign(S, r, 0.05, n_iter=2000, stop_thr=1e-7)
    assert torch.allclose(q.sum(0), torch.ones(32), atol=1e-5)
    assert (q.sum(1) / 32 - r).abs().max() < 1e-6
    reference = pot_plan(r, np.full(32, 1 / 32), -S.double(), 0.05, stop_thr=1e-10) * 32
    assert rel_diff(q, reference) < 1e-5


def test_bad_inputs_are_reported() -> None:
    a, b, M = (t64(x) for x in problem(5, 4, seed=15))
    with pytest.raises(BadInputError, match="mass"):
        sinkhorn_log(a, b * 2, M, 0.1)
    with pytest.raises(BadInputError, match="non-negative"):
        sinkhorn_log(-a, b, M, 0.1)
    with pytest.raises(BadInputError, match="NaN"):
        sinkhorn_log(a, b, M.clone().fill_(float("nan")), 0.1)
    with pytest.raises(BadInputError, match="reg"):
        sinkhorn_log(a, b, M, 0.0)
    with pytest.raises(BadInputError, match="prior must sum to 1"):
        assign(M, a * 3, 0.1)
    with pytest.raises(BadInputError, match="floating"):
        sinkhorn_log(None, None, torch.ones(3, 3, dtype=torch.long), 0.1)


@pytest.mark.parametrize("iters", [1, 2])
def test_zero_mass_rows_are_exactly_zero_after_few_iterations(iters: int) -> None:
    a, b, M = problem(12, 8, seed=16)
    a[[2, 5]] = 0.0
    a = a / a.sum()
    plan = sinkhorn_log(t64(a).float(), t64(b).float(), t64(M).float(), 0.05, num_iter_max=iters, warn=False)
    assert (plan[[2, 5]] == 0).all() and torch.isfinite(plan).all()


def test_assign_batched_equals_one_by_one() -> None:
    S = torch.stack([cosines(20, 8, dim=6, seed=s) for s in (17, 18)])
    priors = torch.softmax(torch.randn(2, 20, generator=torch.Generator().manual_seed(19)), -1)
    q = assign(S, priors, 0.05, n_iter=4)
    assert q.shape == (2, 20, 8)
    for i in range(2):
        assert torch.allclose(q[i], assign(S[i], priors[i], 0.05, n_iter=4), atol=1e-6)
