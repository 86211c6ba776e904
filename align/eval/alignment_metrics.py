"""How alike two representations of the same N items are, before any aligner is fitted.

Row i of ``a`` [N, Da] and of ``b`` [N, Db] describe the same item (an image and its caption). These
scores say which encoder pairs are worth aligning (issue 16); none of them fits anything.

- ``mutual_knn`` (Huh et al., "The Platonic Representation Hypothesis", ICML 2024): the mean over items
  of ``|kNN_a(i) ∩ kNN_b(i)| / k``, with cosine neighbours on l2-normalised rows and the item itself
  excluded. 1 for identical neighbourhoods; about ``k / (N - 1)`` for unrelated spaces.
- ``cknna`` (same paper, ``minyoungg/platonic-rep`` ``metrics.py``): CKA restricted to mutual
  neighbours. With ``K = â âᵀ``, ``L = b̂ b̂ᵀ`` (l2-normalised rows), ``M_XY[i, j] = 1`` when j is among
  the k nearest neighbours of i (self excluded) in both X and Y, and ``HSIC_u`` the unbiased HSIC of
  Song et al. (2012, eq. 5)::

      cknna = HSIC_u(M_ab ∘ K, M_ab ∘ L) / sqrt(HSIC_u(M_aa ∘ K, M_aa ∘ K) · HSIC_u(M_bb ∘ L, M_bb ∘ L))

  ``M_aa`` is a's own kNN mask. With ``k = N - 1`` the masks keep every off-diagonal pair and cknna is
  the debiased CKA of the l2-normalised rows. The masked kernels are sparse (k entries a row), so
  nothing N x N is stored; the reference's ``+ 1e-6`` in the denominator is left out, and a
  denominator that is not positive (unbiased HSIC can be negative at tiny N) gives NaN.
- ``linear_cka`` (Kornblith et al., ICML 2019) on the centred features:
  ``||AᵀB||²_F / (||AᵀA||_F ||BᵀB||_F)``. Its biased HSIC drifts upwards for unrelated features when D
  is not small against N (about 1000 fit pairs here), so ``debiased=True`` uses ``HSIC_u`` on the
  linear kernels instead (Nguyen et al. 2021 call this debiased CKA): about 0 for independent
  features. Both are computed from D x D products, never an N x N Gram matrix.

Sums run in float64 so that the debiased estimator's cancellations stay exact enough at N ~ 1000.
"""

from __future__ import annotations

import math

import torch

from align.errors import BadInputError

_CHUNK = 1024  # query rows of the kNN search at once: bounds memory to CHUNK x N similarities
METRICS = ("mutual_knn", "cknna", "cka", "cka_debiased")


def check_paired(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("a", "b"), *,
                 k: int | None = None, min_rows: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as float64 [N, D] with the same N, finite; ``k`` (if given) in [1, N - 1]. One-line
    errors that name the input."""
    checked = []
    for x, name in zip((a, b), names):
        x = torch.as_tensor(x)
        if x.ndim != 2:
            raise BadInputError(f"{name}: expected features [N, D], got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.double()
        if not torch.isfinite(x).all():
            row = int((~torch.isfinite(x)).any(dim=1).nonzero()[0])
            raise BadInputError(f"{name}: NaN or inf in row {row}")
        checked.append(x.detach().to(torch.float64))
    x, y = checked
    if x.shape[0] != y.shape[0]:
        raise BadInputError(f"{names[0]} has {x.shape[0]} rows but {names[1]} has {y.shape[0]}: "
                            "row i of both must be the same pair")
    n = x.shape[0]
    if n < min_rows:
        raise BadInputError(f"{names[0]}/{names[1]}: {n} rows; this needs at least {min_rows}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n):
        raise BadInputError(f"k={k!r}: expected an integer from 1 to N - 1 = {n - 1} (self is excluded)")
    return x, y


def _unit_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise BadInputError(f"{name}: row {int((norms[:, 0] == 0).nonzero()[0])} is all zeros (no cosine neighbours)")
    return x / norms


def knn_indices(x: torch.Tensor, k: int, chunk: int = _CHUNK) -> torch.Tensor:
    """[N, k] indices of each row's k most cosine-similar other rows of unit-norm ``x``, searched
    ``chunk`` rows at a time (exact, in float64; ``topk`` picks among exact ties, e.g. duplicate rows)."""
    n = x.shape[0]
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, chunk):
        sims = x[start:start + chunk] @ x.T
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = -math.inf  # the item itself is never its own neighbour
        out[start:start + chunk] = sims.topk(k, dim=1).indices
    return out


def _overlap(knn_a: torch.Tensor, knn_b: torch.Tensor, chunk: int = _CHUNK) -> torch.Tensor:
    """[N, k] booleans: whether knn_a[i, j] is also among knn_b[i]."""
    parts = [(knn_a[s:s + chunk, :, None] == knn_b[s:s + chunk, None, :]).any(dim=2)
             for s in range(0, knn_a.shape[0], chunk)]
    return torch.cat(parts)


def mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int = 10, *, names: tuple[str, str] = ("a", "b")) -> float:
    """Mean over items of the share of their k cosine neighbours that both spaces agree on."""
    x, y = check_paired(a, b, names, k=k)
    knn_a = knn_indices(_unit_rows(x, names[0]), k)
    knn_b = knn_indices(_unit_rows(y, names[1]), k)
    return float(_overlap(knn_a, knn_b).sum(dim=1).double().div(k).mean())


def _hsic_sparse(rows: torch.Tensor, cols: torch.Tensor, kv: torch.Tensor, lv: torch.Tensor, n: int) -> float:
    """Unbiased HSIC (Song et al. 2012, eq. 5) of two N x N matrices that are zero off one support
    ``(rows, cols)`` (no diagonal entries) and hold ``kv`` and ``lv`` there:
    ``[tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))``."""
    keys = rows * n + cols
    order = keys.argsort()
    keys, kv_sorted = keys[order], kv[order]
    lv_sorted = lv[order]
    # tr(K̃L̃) = Σ K̃_ij L̃_ji: the entries whose transpose is on the support too
    transposed = cols[order] * n + rows[order]
    at = torch.searchsorted(keys, transposed).clamp(max=len(keys) - 1)
    found = keys[at] == transposed
    trace = (kv_sorted[found] * lv_sorted[at[found]]).sum()
    col_sum_k = torch.zeros(n, dtype=torch.float64).index_add_(0, cols, kv)
    row_sum_l = torch.zeros(n, dtype=torch.float64).index_add_(0, rows, lv)
    total = trace + kv.sum() * lv.sum() / ((n - 1) * (n - 2)) - 2 * (col_sum_k @ row_sum_l) / (n - 2)
    return float(total / (n * (n - 3)))


def _masked_hsic(x: torch.Tensor, y: torch.Tensor, knn_x: torch.Tensor, knn_y: torch.Tensor) -> float:
    """``HSIC_u(M ∘ xxᵀ, M ∘ yyᵀ)`` with M the pairs (i, j) where j is a neighbour of i in both."""
    n, k = knn_x.shape
    keep = _overlap(knn_x, knn_y)
    rows = torch.arange(n)[:, None].expand(n, k)[keep]
    cols = knn_x[keep]
    kv = (x[rows] * x[cols]).sum(dim=1)
    lv = (y[rows] * y[cols]).sum(dim=1)
    return _hsic_sparse(rows, cols, kv, lv, n)


def cknna(a: torch.Tensor, b: torch.Tensor, k: int = 10, *, names: tuple[str, str] = ("a", "b")) -> float:
    """CKA over mutual k-nearest-neighbour pairs only (formula in the module docstring); NaN when a
    self-similarity term is not positive."""
    x, y = check_paired(a, b, names, k=k, min_rows=4)
    x, y = _unit_rows(x, names[0]), _unit_rows(y, names[1])
    knn_a, knn_b = knn_indices(x, k), knn_indices(y, k)
    cross = _masked_hsic(x, y, knn_a, knn_b)
    self_a = _masked_hsic(x, x, knn_a, knn_a)
    self_b = _masked_hsic(y, y, knn_b, knn_b)
    if self_a <= 0 or self_b <= 0:
        return math.nan
    return cross / math.sqrt(self_a * self_b)


def _hsic_linear_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """``HSIC_u(xxᵀ, yyᵀ)`` from the features: every term of eq. 5 through D x D products and row norms."""
    n = x.shape[0]
    dx, dy = (x * x).sum(dim=1), (y * y).sum(dim=1)  # the Gram diagonals, which K̃ and L̃ zero out
    trace = (x.T @ y).square().sum() - dx @ dy
    sum_k, sum_l = x.sum(0).square().sum() - dx.sum(), y.sum(0).square().sum() - dy.sum()
    k1, l1 = x @ x.sum(0) - dx, y @ y.sum(0) - dy  # K̃1 and L̃1
    total = trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * (k1 @ l1) / (n - 2)
    return float(total / (n * (n - 3)))


def linear_cka(a: torch.Tensor, b: torch.Tensor, *, debiased: bool = False,
               names: tuple[str, str] = ("a", "b")) -> float:
    """Linear CKA of centred features; ``debiased`` swaps the biased HSIC for the unbiased one (needs
    N >= 4; NaN when a self term is not positive)."""
    x, y = check_paired(a, b, names, min_rows=4 if debiased else 2)
    for z, name in ((x, names[0]), (y, names[1])):
        if not (z - z.mean(0)).abs().max() > 1e-12 * z.abs().max():  # rounding of the mean aside
            raise BadInputError(f"{name}: every row is the same (no variance for CKA)")
    x, y = x - x.mean(0), y - y.mean(0)
    if debiased:
        cross, self_a, self_b = (_hsic_linear_unbiased(x, y), _hsic_linear_unbiased(x, x),
                                 _hsic_linear_unbiased(y, y))
        if self_a <= 0 or self_b <= 0:
            return math.nan
        return cross / math.sqrt(self_a * self_b)
    cross = (x.T @ y).square().sum()
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()))


def alignment_scores(a: torch.Tensor, b: torch.Tensor, k: int = 10, *,
                     names: tuple[str, str] = ("a", "b")) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one pair of paired feature sets."""
    x, y = check_paired(a, b, names, k=k, min_rows=4)
    return {"mutual_knn": mutual_knn(x, y, k, names=names), "cknna": cknna(x, y, k, names=names),
            "cka": linear_cka(x, y, names=names), "cka_debiased": linear_cka(x, y, debiased=True, names=names)}
