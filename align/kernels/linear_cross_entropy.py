"""Cross-entropy through a frozen output layer without keeping the logits: ``mean_i CE(h_i W^T + b, y_i)``.

A frozen LM's head over a large vocabulary (Gemma-3: 262k rows) turns a few hundred hidden states into
a logit matrix of hundreds of megabytes; autograd then keeps it, writes a gradient of the same size,
zero-fills it and reads both again. Since the head is frozen, the only gradient wanted is the one for
the hidden states, and it is known as soon as the softmax is: ``(softmax(z) - onehot(y)) W / M``. So
the forward pass computes it chunk by chunk of rows and keeps only that ``[M, D]`` gradient; the
backward pass scales it. Same arithmetic (two matrix products), a fraction of the memory traffic.

Under autocast the products run in the autocast dtype, as ``nn.Linear`` would; the softmax is float32.
The optional soft-capping (``cap * tanh(z / cap)``, Gemma-2's final logits) is applied before the
softmax and differentiated through.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# Rows per chunk: large, because each chunk streams (and the BLAS packs) the whole [V, D] head again; a
# VLAP batch's few hundred caption positions are one chunk. Memory: chunk x V floats.
DEFAULT_CHUNK_ROWS = 1024


def _chunk_loss_and_grad(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                         softcap: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss of one chunk of rows, and d(summed loss)/d(h) ``[m, D]``."""
    logits = F.linear(h, weight, bias)
    if logits.dtype in (torch.float16, torch.bfloat16):  # the softmax is float32 (or wider)
        logits = logits.float()
    if softcap:
        capped = torch.tanh(logits / softcap)
        logits = capped * softcap
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    rows = torch.arange(len(targets), device=targets.device)
    loss = (lse.squeeze(1) - logits[rows, targets]).sum()
    grad = logits.sub_(lse).exp_()  # softmax, written over the logits
    grad[rows, targets] -= 1
    if softcap:
        grad.mul_(1 - capped.square())
    return loss, grad.to(weight.dtype) @ weight  # under autocast in its dtype, as the logits were


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                softcap: float | None, chunk_rows: int) -> torch.Tensor:
        total = h.new_zeros((), dtype=torch.promote_types(h.dtype, torch.float32))
        grads = []
        with torch.no_grad():
            for start in range(0, len(h), chunk_rows):
                loss, grad = _chunk_loss_and_grad(h[start:start + chunk_rows], weight, bias,
                                                  targets[start:start + chunk_rows], softcap)
                total += loss
                grads.append(grad)
        count = max(len(h), 1)
        ctx.save_for_backward((torch.cat(grads) / count).to(h.dtype))
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad_h,) = ctx.saved_tensors
        return grad_h * grad_output, None, None, None, None, None


def frozen_head_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                              bias: torch.Tensor | None = None, softcap: float | None = None,
                              chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """Mean cross-entropy of ``h [M, D] @ weight[V, D]^T (+ bias)`` against ``targets [M]``; the gradient
    reaches ``h`` only (``weight`` and ``bias`` must not require one: use plain ``F.cross_entropy`` to
    train a head)."""
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        raise ValueError("frozen_head_cross_entropy: the output layer must be frozen (no requires_grad)")
    if h.ndim != 2 or targets.shape != h.shape[:1]:
        raise ValueError(f"frozen_head_cross_entropy: h must be [M, D] and targets [M], got {tuple(h.shape)} "
                         f"and {tuple(targets.shape)}")
    if chunk_rows < 1:
        raise ValueError(f"frozen_head_cross_entropy: chunk_rows must be >= 1, got {chunk_rows}")
    return _FrozenHeadCrossEntropy.apply(h, weight, bias, targets, softcap, chunk_rows)
