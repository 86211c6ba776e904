"""Hand-written vector quantizers for LQAE: a frozen language codebook and a learned VQ-VAE codebook.

Written by hand rather than taken from a VQ library because the libraries' "frozen codebook" switches
have been unreliable (vector-quantize-pytorch #68, #93, PR #209: a flag silently unused, a freeze that
breaks the backward pass). Here a frozen codebook is a *buffer*, so no optimiser can ever see it.

- :func:`nearest_codes`: exact cosine nearest neighbour, chunked over the codebook with a running
  maximum, so a 262,144 x 640 table (Gemma) never needs a ``tokens x V`` score matrix in memory.
- :class:`FrozenCodebookQuantizer`: LQAE's quantizer (papers.md §4.3): search on l2-normalised
  vectors, hand on the *raw* row (pitfall 1), straight-through estimator, commitment loss
  ``mean ||z - sg(q)||^2``; the caller weights it (LQAE: 2 x 0.005, pitfall 2).
- :class:`LearnedCodebookQuantizer`: the VQ-VAE baseline, a trainable codebook with the usual
  codebook + commitment loss ``||sg(z) - e||^2 + beta ||z - sg(e)||^2``, taken on l2-normalised
  vectors when the search is by cosine (so search and loss use one distance).
- :func:`usage_entropy`: the code-usage entropy term of MAGVIT-v2 / LFQ (Yu et al. 2023), which keeps
  many codes in use when another loss (LQAE's LM loss) rewards a few.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from align.kernels.low_precision import DEFAULT_OVERFETCH, check_overfetch, check_search_precision, rescored_block

# Scores are computed in blocks of QUERY_CHUNK x DEFAULT_CHUNK floats (8 MB): small enough to stay in cache
# while the max is taken (measured: 0.8x the time of the full float32 matmul on a 30,522-row table,
# against 1.9x with 1024 x 8192 blocks; benchmarks/quantizer_speed.py).
DEFAULT_CHUNK = 2048
QUERY_CHUNK = 1024


@torch.no_grad()
def nearest_codes(queries: torch.Tensor, unit_codebook: torch.Tensor, chunk: int = DEFAULT_CHUNK,
                  query_chunk: int = QUERY_CHUNK, *, search_precision: str = "float32",
                  overfetch: int = DEFAULT_OVERFETCH) -> torch.Tensor:
    """Index of the row of ``unit_codebook [K, D]`` with the largest dot product for each row of
    ``queries [N, D]`` (cosine when both are l2-normalised). Exact; the first index wins ties.

    Scores are computed ``query_chunk x chunk`` at a time and reduced at once, so peak scratch memory
    is bounded whatever K is. ``search_precision="bfloat16"`` scores each chunk in bf16, then takes
    the max of the exact float32 scores of its ``1 + overfetch`` best rows
    (:mod:`align.kernels.low_precision`)."""
    if queries.ndim != 2 or unit_codebook.ndim != 2 or queries.shape[1] != unit_codebook.shape[1]:
        raise ValueError(f"nearest_codes: queries {tuple(queries.shape)} and codebook "
                         f"{tuple(unit_codebook.shape)} must be [N, D] and [K, D]")
    low = check_search_precision(search_precision, "nearest_codes") != "float32"
    keep = 1 + check_overfetch(overfetch, "nearest_codes")
    out = torch.empty(len(queries), dtype=torch.long, device=queries.device)
    queries = queries.to(unit_codebook.dtype)
    if low:
        queries = queries.float()
    for q0 in range(0, len(queries), query_chunk):
        block = queries[q0:q0 + query_chunk]
        block_low = block.to(torch.bfloat16) if low else block
        best = torch.full((len(block),), float("-inf"), dtype=block.dtype, device=block.device)
        best_idx = torch.zeros(len(block), dtype=torch.long, device=block.device)
        for k0 in range(0, len(unit_codebook), chunk):
            if low:
                scores, columns = rescored_block(block, block_low, unit_codebook[k0:k0 + chunk].float(), keep,
                                                 ascending=True)
                value, where = scores.max(dim=1)
                idx = columns.gather(1, where[:, None]).squeeze(1)
            else:
                value, idx = (block @ unit_codebook[k0:k0 + chunk].T).max(dim=1)
            better = value > best  # strict: an earlier chunk keeps a tie
            best = torch.where(better, value, best)
            best_idx = torch.where(better, idx + k0, best_idx)
        out[q0:q0 + query_chunk] = best_idx
    return out


@dataclass
class Quantized:
    """What a quantizer returns for ``z [..., D]``."""

    st: torch.Tensor  # straight-through output: forward value = codebook row, gradient = identity to z
    codes: torch.Tensor  # [...] long: row ids of the full table / codebook
    loss: torch.Tensor  # scalar: commitment (frozen) or codebook + beta * commitment (learned)
    raw: torch.Tensor  # the selected rows themselves (no gradient path to z)


class FrozenCodebookQuantizer(nn.Module):
    """Nearest row of a frozen table (cosine on l2-normalised vectors by default), STE, commitment.

    ``allowed_ids`` restricts the search to a subset of rows (e.g. the table without special tokens);
    returned codes are always ids of the *full* table, so ``table.tokens[code]`` is the token."""

    def __init__(self, table: torch.Tensor, allowed_ids: torch.Tensor | None = None, *, l2_normalize: bool = True,
                 chunk: int = DEFAULT_CHUNK, search_precision: str = "float32") -> None:
        super().__init__()
        self.search_precision = check_search_precision(search_precision, "FrozenCodebookQuantizer")
        table = table.detach().float()
        ids = torch.arange(len(table)) if allowed_ids is None else torch.as_tensor(allowed_ids, dtype=torch.long)
        if ids.numel() == 0:
            raise ValueError("FrozenCodebookQuantizer: no codebook rows allowed")
        self.l2_normalize, self.chunk = l2_normalize, chunk
        # non-persistent buffers: rebuilt from the table name, never trained, never in a checkpoint
        self.register_buffer("codebook", table.clone(), persistent=False)
        self.register_buffer("allowed_ids", ids, persistent=False)
        rows = table[ids]
        self.register_buffer("search_rows", F.normalize(rows, dim=-1) if l2_normalize else rows, persistent=False)

    @property
    def num_codes(self) -> int:
        return int(self.allowed_ids.numel())

    def unit_rows(self) -> torch.Tensor:
        """The searchable rows, l2-normalised ``[K, D]`` (for :func:`usage_entropy`)."""
        return self.search_rows if self.l2_normalize else F.normalize(self.search_rows, dim=-1)

    def search(self, z: torch.Tensor) -> torch.Tensor:
        """Full-table code ids ``[...]`` of ``z [..., D]``."""
        flat = z.detach().reshape(-1, z.shape[-1])
        if self.l2_normalize:
            local = nearest_codes(F.normalize(flat, dim=-1), self.search_rows, self.chunk,
                                  search_precision=self.search_precision)
        else:  # nearest in l2: argmax of z.e - |e|^2 / 2
            local = _nearest_l2(flat, self.search_rows, self.chunk, self.search_precision)
        return self.allowed_ids[local].view(z.shape[:-1])

    def forward(self, z: torch.Tensor) -> Quantized:
        codes = self.search(z)
        q = self.codebook[codes]  # raw rows: a buffer, so no gradient can reach the table
        commitment = F.mse_loss(z, q)
        return Quantized(st=z + (q - z).detach(), codes=codes, loss=commitment, raw=q)


class LearnedCodebookQuantizer(nn.Module):
    """VQ-VAE quantizer with a trainable ``[K, D]`` codebook (the baseline against a frozen table).

    Search is the same cosine nearest neighbour as the frozen quantizer (so the two differ only in
    where the codebook comes from); the loss is van den Oord et al.'s ``||sg(z) - e||^2 + beta ||z -
    sg(e)||^2`` (beta 0.25, LQAE's ``vqae.py`` default), on l2-normalised ``z`` and ``e`` when
    ``l2_normalize`` (the distance the search uses: a raw-vector loss would pull codes and encodings
    together in a distance the assignment ignores). The raw row is passed on either way."""

    def __init__(self, num_codes: int, dim: int, *, beta: float = 0.25, init_std: float = 1.0,
                 l2_normalize: bool = True, chunk: int = DEFAULT_CHUNK, search_precision: str = "float32") -> None:
        super().__init__()
        self.search_precision = check_search_precision(search_precision, "LearnedCodebookQuantizer")
        self.codebook = nn.Parameter(torch.randn(num_codes, dim) * init_std)
        self.beta, self.l2_normalize, self.chunk = beta, l2_normalize, chunk

    @property
    def num_codes(self) -> int:
        return int(self.codebook.shape[0])

    def unit_rows(self) -> torch.Tensor:
        """The codebook, l2-normalised ``[K, D]`` (trainable: :func:`usage_entropy` reaches it)."""
        return F.normalize(self.codebook, dim=-1)

    def search(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.detach().reshape(-1, z.shape[-1])
        rows = self.codebook.detach()
        if self.l2_normalize:
            codes = nearest_codes(F.normalize(flat, dim=-1), F.normalize(rows, dim=-1), self.chunk,
                                  search_precision=self.search_precision)
        else:
            codes = _nearest_l2(flat, rows, self.chunk, self.search_precision)
        return codes.view(z.shape[:-1])

    def forward(self, z: torch.Tensor) -> Quantized:
        codes = self.search(z)
        q = self.codebook[codes]
        zl, ql = (F.normalize(z, dim=-1), F.normalize(q, dim=-1)) if self.l2_normalize else (z, q)
        loss = F.mse_loss(ql, zl.detach()) + self.beta * F.mse_loss(zl, ql.detach())
        return Quantized(st=z + (q - z).detach(), codes=codes, loss=loss, raw=q.detach())


def usage_entropy(z: torch.Tensor, unit_rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """``mean_i H(p_i) - H(mean_i p_i)`` with ``p_i = softmax(cos(z_i, rows) / temperature)`` over the
    searchable rows (Yu et al. 2023, "Language Model Beats Diffusion", entropy penalty): low when each
    vector is close to one code and the batch as a whole spreads over many. Differentiable in ``z``
    (and in learned rows); ``unit_rows [K, D]`` l2-normalised."""
    flat = F.normalize(z.reshape(-1, z.shape[-1]), dim=-1)
    logp = F.log_softmax(flat @ unit_rows.T / temperature, dim=-1)
    p = logp.exp()
    per_vector = -(p * logp).sum(-1).mean()
    mean_p = p.mean(0)
    batch = -(mean_p * mean_p.clamp_min(1e-12).log()).sum()
    return per_vector - batch


@torch.no_grad()
def _nearest_l2(queries: torch.Tensor, rows: torch.Tensor, chunk: int,
                search_precision: str = "float32") -> torch.Tensor:
    """Nearest row in Euclidean distance: append a column so one max-dot-product search does it
    (``argmax z.e - |e|^2/2``)."""
    q = torch.cat([queries, torch.ones(len(queries), 1, dtype=queries.dtype, device=queries.device)], dim=1)
    r = torch.cat([rows, -0.5 * rows.pow(2).sum(1, keepdim=True)], dim=1)
    return nearest_codes(q, r, chunk, search_precision=search_precision)
