"""A learned visual codebook: vector quantisation of image tokens (VQ-VAE), for Codebook-VLP's MIM targets.

Each token ``z_i`` is assigned ``k*_i = argmin_k ||z_i - c_k||²`` and the loss is VQ-VAE's

    L_vq = ||sg[z] - c_k*||²  +  β ||z - sg[c_k*]||²       (β = ``commitment``, 0.25 as VQ-VAE)

``update`` picks how the codes learn:

- ``"ema"`` (default, VQ-VAE-2 / Sonnet): codes are exponential moving averages of the tokens assigned
  to them (decay 0.99, Laplace-smoothed counts); the first term is dropped, only the commitment term
  reaches the encoder. EMA codebooks collapse less than gradient-trained ones at small batch sizes.
- ``"loss"``: codes are parameters trained by the first term (straight-through, VQ-VAE-1).
- ``"frozen"``: a fixed random codebook (the "random codes as MIM targets" ablation of papers.md §7.5).

``cosine=True`` (default) quantises L2-normalised tokens against L2-normalised codes (ViT-VQGAN): the
distance then ignores token norms, which otherwise let a few large-norm codes win every assignment.

Dead codes (codebook collapse): ``usage`` is an EMA of how many tokens each code wins per batch.
Two restart rules (Jukebox; facebookresearch/multimodal PR #53), applied after each training update:

- ``restart_window`` > 0: a code that won no token in the last ``restart_window`` training steps is
  moved onto a random token of the current batch. Why a window of steps: the EMA rule below needs
  ``log(share) / log(decay)`` steps (hundreds at decay 0.99) before a code that stopped winning falls
  under the threshold, longer than a CPU-scale fit lasts, so it never fired.
- ``restart_window`` = 0 (fits saved before it existed): codes whose EMA usage fell below
  ``restart_threshold`` are restarted.

Initialisation: :meth:`VisualCodebook.initialise` takes centres from :func:`kmeans` on the fit data
(codes then start on the data's clusters, so each code means one kind of token); without it the first
training batch's random tokens are taken. :func:`codebook_health` says whether a set of assignments
has collapsed onto a few codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

UPDATES = ("ema", "loss", "frozen")


@dataclass
class Quantized:
    """What quantising a batch gives: straight-through codes, their indices, the loss, and usage."""

    quantized: torch.Tensor  # [..., dim]: z + sg(c_k* - z), so gradients reach z
    indices: torch.Tensor  # [...] long: k* of every token
    loss: torch.Tensor  # scalar L_vq
    perplexity: torch.Tensor  # exp(entropy) of this batch's code histogram


def perplexity(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """``exp(H(p))`` of the code histogram ``p``: the number of equally used codes it is worth."""
    counts = torch.bincount(indices.flatten(), minlength=num_codes).float()
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def code_usage(indices: torch.Tensor, num_codes: int) -> dict[str, float]:
    """Perplexity, used and dead (never chosen) codes over a set of assignments."""
    counts = torch.bincount(indices.flatten(), minlength=num_codes)
    used = int((counts > 0).sum())
    return {"perplexity": float(perplexity(indices, num_codes)), "used_codes": used,
            "dead_codes": num_codes - used, "num_codes": num_codes}


def codebook_health(indices: torch.Tensor, num_codes: int, max_share: float = 0.5,
                    min_perplexity: float = 2.0) -> dict[str, Any]:
    """:func:`code_usage` plus ``top_share`` (the most used code's fraction of the tokens) and
    ``collapsed``: one code takes more than ``max_share`` of the tokens, or the perplexity is below
    ``min_perplexity``. MIM targets that are almost all one code teach little; note that a dominant code
    can also be the data's own (a blank background), which MIM's frequency weighting is for."""
    counts = torch.bincount(indices.flatten(), minlength=num_codes)
    usage: dict[str, Any] = dict(code_usage(indices, num_codes))
    usage["top_share"] = float(counts.max()) / max(1, int(counts.sum()))
    usage["collapsed"] = usage["top_share"] > max_share or usage["perplexity"] < min_perplexity
    return usage


def collapsed(indices: torch.Tensor, num_codes: int, max_share: float = 0.5, min_perplexity: float = 2.0) -> bool:
    """Whether these assignments have collapsed (:func:`codebook_health`)."""
    return bool(codebook_health(indices, num_codes, max_share, min_perplexity)["collapsed"])


def kmeans(x: torch.Tensor, k: int, iters: int = 10, cosine: bool = True, max_rows: int = 65536) -> torch.Tensor:
    """``[k, dim]`` centres by Lloyd's algorithm on the rows of ``x`` (spherical when ``cosine``: rows
    and centres L2-normalised, as the codebook compares them), seeded by k-means++ (a random start can
    leave two centres in one cluster and merge two others). An empty cluster is re-seeded on the row
    farthest from its centre. Draws from the global torch RNG (seeded per fit); at most ``max_rows``
    random rows are used, plenty for k centres."""
    x = x.detach().reshape(-1, x.shape[-1]).float()
    if len(x) > max_rows:
        x = x[torch.randperm(len(x), device=x.device)[:max_rows]]
    if cosine:
        x = F.normalize(x, dim=-1)
    if len(x) < k:
        raise ValueError(f"k-means needs at least {k} rows, got {len(x)}")

    def distances(centres: torch.Tensor) -> torch.Tensor:
        return (x.pow(2).sum(1, keepdim=True) - 2 * x @ centres.T + centres.pow(2).sum(1)).clamp_min(0)

    centres = x[torch.randint(len(x), (1,), device=x.device)]
    nearest = distances(centres)[:, 0]
    for _ in range(k - 1):  # k-means++: the next centre drawn in proportion to the squared distance
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
        chosen = x[torch.multinomial(weights, 1)]
        centres = torch.cat([centres, chosen])
        nearest = torch.minimum(nearest, distances(chosen)[:, 0])
    for _ in range(iters):
        nearest, assigned = distances(centres).min(1)
        counts = torch.bincount(assigned, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assigned, x)
        empty = (counts == 0).nonzero().flatten()
        centres = sums / counts.clamp_min(1)[:, None]
        if len(empty):
            centres[empty] = x[nearest.topk(len(empty)).indices]
        if cosine:
            centres = F.normalize(centres, dim=-1)
    return centres


class VisualCodebook(nn.Module):
    """``num_codes`` codes of width ``dim``; ``forward(z)`` quantises ``z [..., dim]``."""

    def __init__(self, num_codes: int, dim: int, update: str = "ema", commitment: float = 0.25,
                 decay: float = 0.99, cosine: bool = True, restart_threshold: float = 1.0,
                 restart_window: int = 0, eps: float = 1e-5) -> None:
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"codebook update must be one of {UPDATES}, got {update!r}")
        self.num_codes, self.dim, self.update = num_codes, dim, update
        self.commitment, self.decay, self.cosine = commitment, decay, cosine
        self.restart_threshold, self.restart_window, self.eps = restart_threshold, restart_window, eps
        self.codes = nn.Parameter(torch.randn(num_codes, dim), requires_grad=update == "loss")
        self.register_buffer("usage", torch.zeros(num_codes))  # EMA of tokens won per batch
        self.register_buffer("code_sum", torch.zeros(num_codes, dim))  # EMA numerator ("ema" only)
        self.register_buffer("initialised", torch.tensor(update == "frozen"))
        if restart_window > 0:  # training steps since each code last won a token (a saved state)
            self.register_buffer("idle", torch.zeros(num_codes, dtype=torch.long))
        # this epoch's training assignments and restarts (for the history; reset by epoch_stats)
        self.register_buffer("epoch_counts", torch.zeros(num_codes), persistent=False)
        self.restarts = 0  # codes restarted so far (this process)
        self.epoch_restarts = 0

    def _prepare(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=-1) if self.cosine else z

    def normalised_codes(self) -> torch.Tensor:
        return self._prepare(self.codes)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Code index of every row of ``z [..., dim]`` (nearest code; no state changes)."""
        flat = self._prepare(z.reshape(-1, self.dim))
        codes = self.normalised_codes()
        distance = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.T + codes.pow(2).sum(1)
        return distance.argmin(1).view(z.shape[:-1])

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = self._prepare(z.reshape(-1, self.dim))
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach())
        codes = self.normalised_codes()
        distance = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.T + codes.pow(2).sum(1)
        indices = distance.argmin(1)
        chosen = codes[indices]
        loss = self.commitment * F.mse_loss(flat, chosen.detach())
        if self.update == "loss":
            loss = loss + F.mse_loss(chosen, flat.detach())
        if self.training:
            self._track(flat.detach(), indices)
        quantized = flat + (chosen - flat).detach()
        return Quantized(quantized.view(*z.shape[:-1], self.dim), indices.view(z.shape[:-1]), loss,
                         perplexity(indices, self.num_codes))

    # ------------------------------------------------------------------ training-time state

    @torch.no_grad()
    def initialise(self, centres: torch.Tensor, z: torch.Tensor, tokens_per_batch: float) -> None:
        """Codes = ``centres`` (e.g. :func:`kmeans` of the fit data's tokens ``z``); the EMA usage starts
        at each code's share of ``z`` times ``tokens_per_batch``, so the first EMA steps refine the
        centres rather than replace them by one batch's means."""
        self.codes.data.copy_(self._prepare(centres.to(self.codes)))
        shares = torch.bincount(self.assign(z).flatten(), minlength=self.num_codes).float()
        self.usage.copy_(shares / shares.sum().clamp_min(1) * tokens_per_batch)
        self.code_sum.copy_(self.codes.data * self.usage[:, None])
        self.initialised.fill_(True)

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        """Codes = random tokens of the first batch; usage = an even share of that batch."""
        rows = torch.randint(len(flat), (self.num_codes,), device=flat.device)
        self.codes.data.copy_(flat[rows])
        self.usage.fill_(len(flat) / self.num_codes)
        self.code_sum.copy_(self.codes.data * self.usage[:, None])
        self.initialised.fill_(True)

    @torch.no_grad()
    def _track(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA usage (every mode but frozen), EMA code update ("ema"), then dead-code restarts."""
        onehot = F.one_hot(indices, self.num_codes).type(flat.dtype)
        counts = onehot.sum(0)
        self.epoch_counts.add_(counts)
        if self.update == "frozen":
            return
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.restart_window > 0:
            self.idle.add_(1).masked_fill_(counts > 0, 0)
        if self.update == "ema":
            self.code_sum.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
            total = self.usage.sum()
            smoothed = (self.usage + self.eps) / (total + self.num_codes * self.eps) * total
            self.codes.data.copy_(self.code_sum / smoothed[:, None])
        self.restart_dead(flat)

    def dead(self) -> torch.Tensor:
        """Indices of the codes the restart rule calls dead (see the module docstring)."""
        if self.restart_window > 0:
            return (self.idle >= self.restart_window).nonzero().flatten()
        return (self.usage < self.restart_threshold).nonzero().flatten()

    @torch.no_grad()
    def restart_dead(self, flat: torch.Tensor) -> int:
        """Move every dead code onto a random row of ``flat`` (tokens of the current batch); it restarts
        with the usage of an even share of a batch (the window rule) or the threshold's (the EMA rule).
        Returns how many moved."""
        if self.update == "frozen":
            return 0
        dead = self.dead()
        if len(dead) == 0:
            return 0
        rows = torch.randint(len(flat), (len(dead),), device=flat.device)
        self.codes.data[dead] = self._prepare(flat[rows])
        share = len(flat) / self.num_codes if self.restart_window > 0 else self.restart_threshold
        self.usage[dead] = share
        self.code_sum[dead] = self.codes.data[dead] * share
        if self.restart_window > 0:
            self.idle[dead] = 0
        self.restarts += len(dead)
        self.epoch_restarts += len(dead)
        return len(dead)

    def epoch_stats(self) -> dict[str, float]:
        """Code perplexity, dead codes (won no training token) and restarts since the last call; resets them."""
        counts = self.epoch_counts
        p = counts / counts.sum().clamp_min(1)
        stats = {"code_perplexity": float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())),
                 "dead_codes": float((counts == 0).sum()), "code_restarts": float(self.epoch_restarts)}
        self.epoch_counts.zero_()
        self.epoch_restarts = 0
        return stats
