"""Entropic optimal transport (Sinkhorn) in torch: log-domain safe, float32, batched, no gradient.

Why not POT's exp-domain solver or a plain ``exp(S / eps)``: with VLAP's eps = 0.01 on cosine scores,
``exp(S / eps)`` overflows float32 as soon as a cosine exceeds ~0.887, and POT's exp-domain solver then
returns garbage with only a warning (conventions.md §4.1, papers.md §3.6.3). Here nothing is
exponentiated before the log-potentials have been applied:

    log P = log_kernel + f[.., :, None] + g[.., None, :]

The potentials ``f``, ``g`` start at 0 and are updated by log-sum-exp projections, exactly POT's
``sinkhorn_log`` (same order, same iterates). For speed the iterations then continue on the absorbed
kernel ``exp(log P)`` (entries <= 1, so it cannot overflow) with exp-domain scalings, which costs two
mat-vecs per iteration instead of two exps over ``[K, B]``; a scaling that grows beyond ``e^±15``
sends that half-step back to the log domain (see :func:`_solve`). The iterates are the same as the
pure log-domain ones up to float rounding.

Two conventions, stated once:

* ``sinkhorn_log(a, b, M, reg)`` follows POT: ``M`` is a COST, the plan is ``∝ exp(-M / reg)``; each
  iteration projects onto the columns then the rows, so on return the rows match ``a`` exactly and
  the reported error is the columns'.
* ``assign(scores, prior, eps)`` follows SwAV / VLAP: ``scores`` are SIMILARITIES, the plan is
  ``∝ exp(+scores / eps)`` (the same as ``M = -scores``), rows (words) sum to ``prior``, columns
  (batch items) to ``1/B``; the column projection comes last so every returned column
  ``q_b = B * Q[:, b]`` sums to 1, while the rows are only ≈ ``B * prior`` after VLAP's 3 iterations.

Stopping rule (``sinkhorn_log``): POT's marginal error, the L2 norm of (column sums - b), per problem;
the solve stops when the largest over the batch is below ``stop_thr`` (default 1e-6 in float32, 1e-9
in float64; POT's default 1e-9 is below float32 resolution and never triggers there). The column sums
of the current plan are what the next column projection computes anyway, so the check costs no pass
over ``[K, B]`` and runs every iteration by default (``check_every``); it only reads back one number
(as does the range check of each exp-domain half-step).

No gradient: both functions run under ``torch.no_grad()`` and return a plan without history: the
stop-gradient on SwAV / VLAP targets (papers.md §3.3). To differentiate through a plan, use POT.

Zero entries of ``a`` or ``b`` give exactly zero rows / columns (log-potential -inf, no NaN). The
masses of ``a`` and ``b`` must agree to 1e-4 (relative); ``b`` (in ``assign``: the prior) is then
rescaled to ``a``'s mass, so float32 rounding of a big marginal cannot stall the error. ``M``
must be finite; ``reg`` is in the units of ``M``, so scale costs (e.g. divide by the max) before
picking ``reg``. Inputs in float64 are solved in float64, everything else in float32.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from align.errors import BadInputError

#: Default ``stop_thr`` by compute dtype (POT's 1e-9 cannot be reached in float32).
DEFAULT_STOP_THR: dict[torch.dtype, float] = {torch.float32: 1e-6, torch.float64: 1e-9}

_MASS_RTOL = 1e-4  # relative gap allowed between the masses of a and b (float32 sums stay far inside)
_ABSORB_LOG = 15.0  # exp-domain scalings beyond e^±15 are folded back and redone in the log domain


def default_stop_thr(dtype: torch.dtype) -> float:
    """POT-style marginal tolerance reachable in ``dtype``'s compute precision (1e-6 / 1e-9)."""
    return DEFAULT_STOP_THR[_compute_dtype(dtype)]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; float32 and the half types compute in float32."""
    if not dtype.is_floating_point:
        raise BadInputError(f"sinkhorn: expected a floating-point matrix, got dtype {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


def _lse_(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``logsumexp`` along ``dim`` that overwrites ``x`` (a scratch buffer) instead of allocating.

    An all -inf slice gives -inf, not NaN (its max is replaced by 0 before subtracting)."""
    top = x.amax(dim=dim, keepdim=True)
    top.masked_fill_(~torch.isfinite(top), 0.0)
    x.sub_(top).exp_()
    return x.sum(dim=dim).log_().add_(top.squeeze(dim))


class _Solution:
    """Result of :func:`_solve`: ``plan = exp(log_kernel + f + g)`` and its bookkeeping."""

    def __init__(
        self, plan: torch.Tensor, f: torch.Tensor, g: torch.Tensor, niter: int, err: list[float], converged: bool
    ) -> None:
        self.plan, self.f, self.g, self.niter, self.err, self.converged = plan, f, g, niter, err, converged


def _solve(
    log_kernel: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    n_iter: int,
    stop_thr: float | None,
    check_every: int,
) -> _Solution:
    """Sinkhorn on ``exp(log_kernel [.., N, M])`` (contiguous) with row marginal ``a``, column ``b``.

    Each iteration projects onto the columns then the rows (POT's order). The first half-steps are
    exact log-domain projections; after a row projection the current plan is materialised as
    ``kern = exp(log_kernel + f + g)`` (entries <= max a, no overflow) and later iterations only
    rescale it: ``v = b / (kernᵀ u)``, ``u = a / (kern v)``. A scaling outside ``[e^-15, e^15]`` or
    not finite (e.g. a column whose kernel entries all underflowed) is folded into the potentials
    and its half-step redone in the log domain. ``kern`` is floored at the dtype's smallest normal
    number (no slow denormals); what that adds or drops is below ``tiny * e^30`` per entry, far under
    any tolerance. The column error of the current plan comes for free from the sums the next column
    projection needs. The plan is returned in ``kern``'s memory: peak memory is two ``[N, M]``
    tensors (``log_kernel`` and one buffer)."""
    batch = log_kernel.shape[:-2]
    n, m = log_kernel.shape[-2:]
    a, b = log_a.exp(), log_b.exp()
    a_pos, b_pos = a > 0, b > 0
    f = log_kernel.new_zeros(batch + (n,))
    g = log_kernel.new_zeros(batch + (m,))
    buffer = torch.empty_like(log_kernel)  # log-domain scratch, or the absorbed kernel
    floor = math.log(torch.finfo(log_kernel.dtype).tiny)
    low, high = math.exp(-_ABSORB_LOG), math.exp(_ABSORB_LOG)

    def row_lse(col_pot: torch.Tensor) -> torch.Tensor:  # log sum_m exp(K + g)  -> [.., N]
        torch.add(log_kernel, col_pot.unsqueeze(-2), out=buffer)
        return _lse_(buffer, -1)

    def col_lse(row_pot: torch.Tensor) -> torch.Tensor:  # log sum_n exp(K + f)  -> [.., M]
        torch.add(log_kernel, row_pot.unsqueeze(-1), out=buffer)
        return _lse_(buffer, -2)

    def absorb() -> torch.Tensor:  # exp(K + f + g) into the buffer
        torch.add(log_kernel, f.unsqueeze(-1), out=buffer)
        return buffer.add_(g.unsqueeze(-2)).clamp_(min=floor).exp_()

    def col_sums(kern: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # column sums of diag(u) kern
        return (u.unsqueeze(-2) @ kern).squeeze(-2)

    def fine(scale: torch.Tensor, pos: torch.Tensor) -> bool:
        bad = ~torch.isfinite(scale) | (pos & ((scale < low) | (scale > high)))
        return not bool(bad.any())

    kern: torch.Tensor | None = None  # valid only together with the scalings u, v
    u = v = log_kernel.new_ones(())  # set at the first absorb
    errors: list[float] = []
    for it in range(n_iter):
        if kern is None:
            lse = col_lse(f)
            marginal = (g + lse).exp()
        else:
            sums = col_sums(kern, u)
            marginal = v * sums
        if stop_thr is not None and it > 0 and it % check_every == 0:
            errors.append(float(torch.linalg.vector_norm(marginal - b, dim=-1).max()))
            if errors[-1] < stop_thr:
                return _finish(log_kernel, buffer, kern, f, g, u, v, it, errors, True)
        # column projection
        if kern is not None:
            v_new = torch.where(b_pos, b / sums, 0.0)
            if fine(v_new, b_pos):
                v = v_new
            else:
                f, kern = f + u.log(), None
                lse = col_lse(f)
        if kern is None:
            g = log_b - lse
        # row projection
        if kern is not None:
            u_new = torch.where(a_pos, a / (kern @ v.unsqueeze(-1)).squeeze(-1), 0.0)
            if fine(u_new, a_pos):
                u = u_new
                continue
            g, kern = g + v.log(), None
        f = log_a - row_lse(g)
        kern = absorb()
        u, v = a_pos.to(kern.dtype), b_pos.to(kern.dtype)  # 1, or 0 on zero-mass rows / columns (floored)
    converged = False
    if stop_thr is not None:  # where the last iteration left the error
        marginal = (g + col_lse(f)).exp() if kern is None else v * col_sums(kern, u)
        errors.append(float(torch.linalg.vector_norm(marginal - b, dim=-1).max()))
        converged = errors[-1] < stop_thr
    return _finish(log_kernel, buffer, kern, f, g, u, v, n_iter, errors, converged)


def _finish(
    log_kernel: torch.Tensor,
    buffer: torch.Tensor,
    kern: torch.Tensor | None,
    f: torch.Tensor,
    g: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    niter: int,
    errors: list[float],
    converged: bool,
) -> _Solution:
    """The plan (in the buffer: ``diag(u) kern diag(v)`` or ``exp(K + f + g)``) and the folded potentials."""
    if kern is None:
        torch.add(log_kernel, f.unsqueeze(-1), out=buffer)
        return _Solution(buffer.add_(g.unsqueeze(-2)).exp_(), f, g, niter, errors, converged)
    plan = kern.mul_(u.unsqueeze(-1)).mul_(v.unsqueeze(-2))
    return _Solution(plan, f + u.log(), g + v.log(), niter, errors, converged)


def _check_matrix(M: Any, what: str) -> torch.Tensor:
    """The matrix detached, in its compute dtype, finite, at least 2-D."""
    M = torch.as_tensor(M)
    if M.ndim < 2:
        raise BadInputError(f"{what}: expected a [.., K, B] matrix, got shape {tuple(M.shape)}")
    M = M.detach().to(_compute_dtype(M.dtype))
    if not torch.isfinite(M).all():
        raise BadInputError(f"{what}: the matrix contains NaN or inf")
    return M


def _log_marginal(m: Any, shape: torch.Size, what: str, like: torch.Tensor) -> torch.Tensor:
    """``log`` of a non-negative marginal broadcast to ``shape`` (zeros -> -inf)."""
    m = torch.as_tensor(m, device=like.device).detach().to(like.dtype)
    if not torch.isfinite(m).all() or (m < 0).any():
        raise BadInputError(f"{what} must be finite and non-negative")
    try:
        return m.expand(shape).log()
    except RuntimeError as err:
        raise BadInputError(f"{what} of shape {tuple(m.shape)} does not fit {tuple(shape)}") from err


def _match_mass(log_a: torch.Tensor, log_b: torch.Tensor, what: str) -> torch.Tensor:
    """``log_b`` rescaled to ``a``'s total mass, per problem, after checking they agree to ``_MASS_RTOL``.

    Rounding leaves float32 marginals of 262k entries unequal by ~1e-6, and with unequal masses
    the column error stalls at the gap, so a float32 ``stop_thr`` could never be met."""
    mass_a, mass_b = log_a.double().exp().sum(-1), log_b.double().exp().sum(-1)
    if (mass_a <= 0).any() or (mass_b <= 0).any():
        raise BadInputError(f"{what}: a marginal has zero total mass")
    gap = ((mass_a - mass_b).abs() / torch.maximum(mass_a, mass_b)).max()
    if gap > _MASS_RTOL:
        raise BadInputError(f"{what}: the marginals' masses differ (relative gap {float(gap):.2e}); normalise them")
    return log_b + (mass_a.log() - mass_b.log()).to(log_b.dtype).unsqueeze(-1)


def _scaled(matrix: torch.Tensor, scale: float, shape: torch.Size) -> torch.Tensor:
    """``matrix * scale`` broadcast to ``shape``, in a new contiguous tensor (never aliasing the input)."""
    out = torch.empty(shape, dtype=matrix.dtype, device=matrix.device)
    return torch.mul(matrix.expand(shape), scale, out=out)


@torch.no_grad()
def sinkhorn_log(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    reg: float,
    num_iter_max: int = 1000,
    stop_thr: float | None = None,
    log: bool = False,
    check_every: int = 1,
    warn: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
    """Entropic OT plan for the COST ``M [.., K, B]`` (plan ∝ exp(-M/reg)), in POT's conventions.

    ``a [.., K]`` and ``b [.., B]`` (``None`` or empty = uniform) broadcast against ``M``'s leading
    batch dims; each problem's marginals must have equal mass. Returns the plan (float64 if ``M`` is
    float64, else float32; no gradient) and, with ``log=True``, a dict: ``niter`` (iterations that
    made the returned plan; POT's ``niter`` counts one less), ``err`` (max-over-batch column error at
    each check), ``converged``, and the log-potentials ``log_u [.., K]``, ``log_v [.., B]``.
    ``stop_thr=None`` picks :func:`default_stop_thr`; a ``RuntimeWarning`` says when it was missed."""
    what = "sinkhorn_log"
    M = _check_matrix(M, what)
    if not reg > 0:
        raise BadInputError(f"{what}: reg must be positive, got {reg!r}")
    if num_iter_max < 1 or check_every < 1:
        raise BadInputError(f"{what}: num_iter_max and check_every must be >= 1")
    k, n = M.shape[-2:]
    a = M.new_full((k,), 1.0 / k) if a is None or torch.as_tensor(a).numel() == 0 else a
    b = M.new_full((n,), 1.0 / n) if b is None or torch.as_tensor(b).numel() == 0 else b
    batch = torch.broadcast_shapes(M.shape[:-2], torch.as_tensor(a).shape[:-1], torch.as_tensor(b).shape[:-1])
    log_a = _log_marginal(a, batch + (k,), f"{what}: a", M)
    log_b = _log_marginal(b, batch + (n,), f"{what}: b", M)
    log_b = _match_mass(log_a, log_b, what)
    thr = default_stop_thr(M.dtype) if stop_thr is None else float(stop_thr)
    sol = _solve(_scaled(M, -1.0 / reg, batch + (k, n)), log_a, log_b, num_iter_max, thr, check_every)
    if warn and not sol.converged:
        warnings.warn(
            f"sinkhorn_log did not reach stop_thr={thr:g} in {num_iter_max} iterations "
            f"(column error {sol.err[-1]:.3e}); raise num_iter_max or reg",
            RuntimeWarning,
            stacklevel=2,
        )
    if not log:
        return sol.plan
    return sol.plan, {"niter": sol.niter, "err": sol.err, "converged": sol.converged, "log_u": sol.f, "log_v": sol.g}


@torch.no_grad()
def assign(
    scores: torch.Tensor, prior: torch.Tensor, eps: float, n_iter: int = 3, stop_thr: float | None = None
) -> torch.Tensor:
    """VLAP / SwAV soft targets ``q [.., K, B]`` for SIMILARITY ``scores``; each column sums to 1.

    ``Q`` maximises ``Tr(Qᵀ S) + eps·H(Q)`` over plans whose rows sum to ``prior [.., K]`` and columns
    to ``1/B``, so ``Q ∝ exp(+scores / eps)`` (= ``sinkhorn_log(prior, 1/B, -scores, eps)``), and
    ``q_b = B * Q[:, b]``. Runs ``n_iter`` iterations, each a row (prior) then a column (1/B)
    projection (VLAP: 3, no stopping rule; with ``stop_thr`` it stops once the rows' L2 error is
    below it). Columns are exact on return; rows only ≈ ``B * prior`` after few iterations. No
    gradient. ``q`` is the transposed view of a contiguous ``[.., B, K]`` tensor (``q.mT``), the
    layout of per-sample logits."""
    what = "assign"
    S = _check_matrix(scores, what)
    if not eps > 0:
        raise BadInputError(f"{what}: eps must be positive, got {eps!r}")
    if n_iter < 1:
        raise BadInputError(f"{what}: n_iter must be >= 1, got {n_iter}")
    k, n = S.shape[-2:]
    batch = torch.broadcast_shapes(S.shape[:-2], torch.as_tensor(prior).shape[:-1])
    log_prior = _log_marginal(prior, batch + (k,), f"{what}: prior", S)
    log_col = S.new_full(batch + (n,), -math.log(n))
    log_prior = _match_mass(log_col, log_prior, f"{what} (the prior must sum to 1)")
    # solved transposed: batch items are the rows, so their projection comes last and is exact
    sol = _solve(_scaled(S.mT, 1.0 / eps, batch + (n, k)), log_col, log_prior, n_iter, stop_thr, 1)
    return sol.plan.mul_(n).mT
