"""VLAP's assignment-prediction loss L_map (papers.md §3.3), as a plain torch function and module.

Both modalities are scored against the frozen word embeddings ``W [K, D]`` (cosines), each batch is
assigned to the words by entropic OT (:func:`align.kernels.sinkhorn.assign`, rows = word prior
``r``, columns = 1/B, no gradient), and each modality predicts the other's assignment:

    L_map = -(1/2B) Σ_b [ q^t_b · log softmax(s^v_b / τ) + q^v_b · log softmax(s^t_b / τ) ]

Where gradients flow (papers.md §3.3 and §3.6.6). Only the projected visual features ``v̄`` can carry
a gradient; ``t``, ``W`` and ``r`` are detached here even if they require grad (frozen LM, frozen
text features), and both targets ``q^v``, ``q^t`` are stop-gradient OT plans. Hence:

* term 1, ``q^t_b · log softmax(s^v_b/τ)``, is the ONLY source of gradient:
  ``∂L/∂s^v_b = (softmax(s^v_b/τ) - q^t_b) / (2Bτ)``, then through the cosine ``n(v̄_b)·n(W)ᵀ`` into
  ``v̄_b`` and on to the linear map. It is half a cross-entropy of the visual word predictions
  against the text's OT targets.
* term 2, ``q^v_b · log softmax(s^t_b/τ)``, depends on ``v̄`` only through ``q^v``, which is
  stop-gradient, and on nothing trainable otherwise: it adds to the loss VALUE but contributes no
  gradient (unlike SwAV, where both views come from the trained encoder). It is still computed,
  under ``no_grad``, so reported values match the paper's objective; ``loss_visual`` is the part
  that trains.

All scoring runs in float32 with autocast disabled: at τ = 0.01 a bfloat16 cosine (3 significant
digits) would move logits by ~0.4. Memory for K = 262,144 and B = 256: each ``[B, K]`` float32 tensor
is 268 MB and about eight live at the peak (scores, OT buffers, targets, logits), ~2 GB plus the
normalised ``W``; comfortable on a GPU, so no chunking over K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.kernels.sinkhorn import assign


@dataclass
class AssignmentOutput:
    """L_map and diagnostics; only ``loss`` and ``loss_visual`` carry gradient (to ``v̄``)."""

    loss: torch.Tensor  # L_map, both terms
    loss_visual: torch.Tensor  # -(1/2B) Σ q^t · log softmax(s^v/τ): the term with a gradient
    loss_text: torch.Tensor  # -(1/2B) Σ q^v · log softmax(s^t/τ): value only
    entropy_visual: torch.Tensor  # mean over the batch of H(q^v_b), nats (log K = uniform)
    entropy_text: torch.Tensor  # mean over the batch of H(q^t_b), nats
    words_visual: torch.Tensor  # distinct argmax words among the q^v_b
    words_text: torch.Tensor  # distinct argmax words among the q^t_b
    agreement: torch.Tensor  # fraction of pairs with argmax q^v_b == argmax q^t_b
    q_visual: torch.Tensor  # [B, K] OT targets of the visual side, rows sum to 1 (no grad)
    q_text: torch.Tensor  # [B, K] OT targets of the text side


def normalize_words(words: torch.Tensor) -> torch.Tensor:
    """Unit rows of the frozen word-embedding matrix (float32, detached; zero rows stay zero)."""
    if words.ndim != 2:
        raise BadInputError(f"assignment loss: word embeddings must be [K, D], got shape {tuple(words.shape)}")
    return F.normalize(words.detach().float(), dim=-1)


def _entropy(q: torch.Tensor) -> torch.Tensor:
    """Mean over samples of the entropy of each row of ``q [B, K]`` (rows sum to 1)."""
    return torch.special.entr(q).sum(-1).mean()


def assignment_loss(
    visual: torch.Tensor,
    text: torch.Tensor,
    words: torch.Tensor,
    prior: torch.Tensor,
    tau: float = 0.01,
    eps: float = 0.01,
    n_iter: int = 3,
    words_normalized: bool = False,
    text_targets: torch.Tensor | None = None,
) -> AssignmentOutput:
    """L_map for projected visual features ``visual [B, D]`` (differentiable) and frozen ``text [B, D]``.

    ``words [K, D]`` are the frozen word embeddings (pass :func:`normalize_words`'s output with
    ``words_normalized=True`` to skip re-normalising a big table every step), ``prior [K]`` the OT
    row marginal (sums to 1), ``tau`` the softmax temperature, ``eps`` and ``n_iter`` the Sinkhorn
    regularisation and iterations (VLAP's defaults: 0.01, 0.01, 3). ``text_targets [B, K]`` replaces
    the batch's text-side OT by targets solved over more columns (e.g. every fit caption at once)."""
    if visual.ndim != 2 or text.shape != visual.shape:
        raise BadInputError(
            f"assignment loss: visual and text features must both be [B, D], got {tuple(visual.shape)} "
            f"and {tuple(text.shape)}"
        )
    if not tau > 0:
        raise BadInputError(f"assignment loss: tau must be positive, got {tau!r}")
    unit_words = words.detach().float() if words_normalized else normalize_words(words)
    if unit_words.shape[1] != visual.shape[1]:
        raise BadInputError(
            f"assignment loss: features have width {visual.shape[1]}, word embeddings {unit_words.shape[1]}"
        )
    if prior.shape != (unit_words.shape[0],):
        raise BadInputError(f"assignment loss: prior must be [{unit_words.shape[0]}], got {tuple(prior.shape)}")
    batch = visual.shape[0]
    with torch.autocast(device_type=visual.device.type, enabled=False):
        scores_v = F.normalize(visual.float(), dim=-1) @ unit_words.T  # [B, K], differentiable
        with torch.no_grad():
            scores_t = F.normalize(text.detach().float(), dim=-1) @ unit_words.T  # [B, K], frozen
            prior = prior.detach()
            if text_targets is None:
                q_t = assign(scores_t.T, prior, eps, n_iter).T  # [B, K], rows sum to 1
            elif text_targets.shape != scores_t.shape:
                raise BadInputError(f"assignment loss: text targets must be {tuple(scores_t.shape)}, "
                                    f"got {tuple(text_targets.shape)}")
            else:
                q_t = text_targets.detach().float()
            q_v = assign(scores_v.detach().T, prior, eps, n_iter).T
            loss_text = -(q_v * torch.log_softmax(scores_t / tau, dim=-1)).sum() / (2 * batch)
            del scores_t
        loss_visual = -(q_t * torch.log_softmax(scores_v / tau, dim=-1)).sum() / (2 * batch)
    with torch.no_grad():
        best_v, best_t = q_v.argmax(-1), q_t.argmax(-1)
        stats = dict(
            entropy_visual=_entropy(q_v),
            entropy_text=_entropy(q_t),
            words_visual=torch.tensor(best_v.unique().numel(), device=best_v.device),
            words_text=torch.tensor(best_t.unique().numel(), device=best_t.device),
            agreement=(best_v == best_t).float().mean(),
        )
    return AssignmentOutput(
        loss=loss_visual + loss_text, loss_visual=loss_visual, loss_text=loss_text, q_visual=q_v, q_text=q_t, **stats
    )


class AssignmentLoss(nn.Module):
    """:func:`assignment_loss` with the normalised word table and prior kept as (unsaved) buffers.

    The buffers are not persistent: a checkpoint of a model holding this module does not store a
    copy of the LM's embedding table; rebuild the module from the LM instead."""

    def __init__(
        self, words: torch.Tensor, prior: torch.Tensor, tau: float = 0.01, eps: float = 0.01, n_iter: int = 3
    ) -> None:
        super().__init__()
        unit_words = normalize_words(words)
        prior = torch.as_tensor(prior).detach().float()
        if prior.shape != (unit_words.shape[0],):
            raise BadInputError(f"AssignmentLoss: prior must be [{unit_words.shape[0]}], got {tuple(prior.shape)}")
        self.register_buffer("unit_words", unit_words, persistent=False)
        self.register_buffer("prior", prior, persistent=False)
        self.tau, self.eps, self.n_iter = tau, eps, n_iter

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_targets: torch.Tensor | None = None) -> AssignmentOutput:
        return assignment_loss(visual, text, self.unit_words, self.prior, self.tau, self.eps, self.n_iter,
                               words_normalized=True, text_targets=text_targets)

    def extra_repr(self) -> str:
        return f"words={tuple(self.unit_words.shape)}, tau={self.tau}, eps={self.eps}, n_iter={self.n_iter}"
