"""bfloat16 similarity search with exact float32 re-scoring, for the top-k and nearest-code kernels.

The big matmul (queries x anchors, or tokens x codebook) is where a search spends its time, and bf16
matrix units (AMX, AVX512-BF16, GPU tensor cores) run it several times faster than float32. bf16 keeps
8 bits of mantissa, so its scores can reorder candidates whose similarities differ by less than about
1% of their magnitude. So bf16 only *proposes*: each row's best ``keep = k + overfetch`` columns by
bf16 score are scored again exactly in float32, and the decision (top-k set, its values, the nearest
code) is taken on those exact scores. Results match float32 unless a true top-k member falls outside
the bf16 top-``keep``, which ``overfetch`` makes rare; values handed on are always exact float32.

On CPUs without bf16 units this is slower than float32; it is never a default.
"""

from __future__ import annotations

import torch

from align.errors import BadInputError

SEARCH_PRECISIONS = ("float32", "bfloat16")
DEFAULT_OVERFETCH = 16
_RESCORE_MB = 64  # bound on the gathered [rows, keep, D] float32 candidate block


def check_search_precision(value: object, what: str = "search") -> str:
    """``value`` if it is a known search precision, else a one-line error naming it."""
    if value not in SEARCH_PRECISIONS:
        raise BadInputError(f"{what}: unknown search_precision {value!r}; choose one of {', '.join(SEARCH_PRECISIONS)}")
    return str(value)


def check_overfetch(value: object, what: str = "search") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadInputError(f"{what}: overfetch must be an integer >= 0, got {value!r}")
    return value


def exact_scores(queries: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``[M, c]`` float32 dot products of each query with the rows ``columns[m]`` of ``rows [A, D]``,
    gathered in query blocks so the ``[block, c, D]`` copy stays within a fixed budget."""
    out = torch.empty(columns.shape, dtype=torch.float32, device=queries.device)
    per_query = max(1, columns.shape[1] * rows.shape[1] * 4)
    step = max(1, _RESCORE_MB * 2**20 // per_query)
    for q0 in range(0, queries.shape[0], step):
        cols = columns[q0:q0 + step]
        picked = rows[cols.reshape(-1)].view(*cols.shape, rows.shape[1])  # [b, c, D]
        out[q0:q0 + step] = torch.bmm(picked, queries[q0:q0 + step, :, None]).squeeze(2)
    return out


def rescored_block(queries: torch.Tensor, queries_low: torch.Tensor, rows: torch.Tensor, keep: int,
                   *, ascending: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates of ``queries [M, D]`` (float32; ``queries_low`` their bf16 copy) among ``rows [A, D]``:
    the ``keep`` best columns by bf16 score and their exact float32 scores, ``([M, c], [M, c])``.

    ``ascending`` sorts each row's columns by index, so an argmax over the exact scores returns the
    lowest index among equal scores (the float32 kernels' tie rule)."""
    keep = min(keep, rows.shape[0])
    if keep == rows.shape[0]:  # nothing to skip: score everything exactly
        columns = torch.arange(rows.shape[0], device=rows.device).expand(queries.shape[0], -1)
        return queries @ rows.T, columns
    approx = queries_low @ rows.to(torch.bfloat16).T
    columns = approx.topk(keep, dim=1, sorted=False).indices
    if ascending:
        columns = columns.sort(dim=1).values
    return exact_scores(queries, rows, columns), columns
