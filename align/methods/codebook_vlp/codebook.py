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

Dead codes (codebook collapse): ``usage`` is an EMA of how many tokens each code wins per batch. After
each training update, codes whose usage fell below ``restart_threshold`` are moved onto random tokens
of the current batch (Jukebox; facebookresearch/multimodal PR #53). The codebook is initialised from
the first training batch the same way, so no code starts far from the data.
"""

from __future__ import annotations

from dataclasses import dataclass

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


class VisualCodebook(nn.Module):
    """``num_codes`` codes of width ``dim``; ``forward(z)`` quantises ``z [..., dim]``."""

    def __init__(self, num_codes: int, dim: int, update: str = "ema", commitment: float = 0.25,
                 decay: float = 0.99, cosine: bool = True, restart_threshold: float = 1.0,
                 eps: float = 1e-5) -> None:
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"codebook update must be one of {UPDATES}, got {update!r}")
        self.num_codes, self.dim, self.update = num_codes, dim, update
        self.commitment, self.decay, self.cosine = commitment, decay, cosine
        self.restart_threshold, self.eps = restart_threshold, eps
        self.codes = nn.Parameter(torch.randn(num_codes, dim), requires_grad=update == "loss")
        self.register_buffer("usage", torch.zeros(num_codes))  # EMA of tokens won per batch
        self.register_buffer("code_sum", torch.zeros(num_codes, dim))  # EMA numerator ("ema" only)
        self.register_buffer("initialised", torch.tensor(update == "frozen"))
        self.restarts = 0  # codes restarted so far (this process)

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
        if self.update == "frozen":
            return
        onehot = F.one_hot(indices, self.num_codes).type(flat.dtype)
        counts = onehot.sum(0)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.update == "ema":
            self.code_sum.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
            total = self.usage.sum()
            smoothed = (self.usage + self.eps) / (total + self.num_codes * self.eps) * total
            self.codes.data.copy_(self.code_sum / smoothed[:, None])
        self.restart_dead(flat)

    @torch.no_grad()
    def restart_dead(self, flat: torch.Tensor) -> int:
        """Move every code whose usage is below ``restart_threshold`` onto a random row of ``flat``
        (tokens of the current batch) and give it the threshold's usage; returns how many moved."""
        if self.update == "frozen":
            return 0
        dead = (self.usage < self.restart_threshold).nonzero().flatten()
        if len(dead) == 0:
            return 0
        rows = torch.randint(len(flat), (len(dead),), device=flat.device)
        self.codes.data[dead] = self._prepare(flat[rows])
        self.usage[dead] = self.restart_threshold
        self.code_sum[dead] = self.codes.data[dead] * self.restart_threshold
        self.restarts += len(dead)
        return len(dead)
