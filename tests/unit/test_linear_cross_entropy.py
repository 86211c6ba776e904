"""The frozen-head cross-entropy: the loss and the hidden states' gradient of ``F.cross_entropy`` over
the full logits, without keeping them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align.kernels.linear_cross_entropy import frozen_head_cross_entropy


def _plain(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None,
           softcap: float | None = None) -> torch.Tensor:
    logits = F.linear(h, weight, bias)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, targets)


def _case(rows: int = 37, dim: int = 24, vocab: int = 501, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, dim, generator=g, dtype=torch.float64), torch.randn(vocab, dim, generator=g, dtype=torch.float64),
            torch.randint(vocab, (rows,), generator=g), torch.randn(vocab, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("chunk_rows", [1, 5, 37, 1000])
@pytest.mark.parametrize("with_bias, softcap", [(False, None), (True, None), (False, 3.0)])
def test_loss_and_gradient_equal_the_full_logits(chunk_rows: int, with_bias: bool, softcap: float | None) -> None:
    h, weight, targets, bias = _case()
    bias = bias if with_bias else None
    h1, h2 = h.clone().requires_grad_(), h.clone().requires_grad_()
    expected = _plain(h1, weight, targets, bias, softcap)
    expected.backward()
    got = frozen_head_cross_entropy(h2, weight, targets, bias=bias, softcap=softcap, chunk_rows=chunk_rows)
    (2 * got).backward()  # the upstream gradient scales the saved one
    assert torch.allclose(got, expected, rtol=1e-12)
    assert torch.allclose(h2.grad, 2 * h1.grad, rtol=1e-10, atol=1e-14)


def test_float32_is_at_least_as_close_to_float64_as_plain_cross_entropy() -> None:
    """A wide vocabulary in float32: the chunked loss keeps (or beats) the plain one's accuracy."""
    h, weight, targets, _ = _case(rows=64, dim=64, vocab=200_000, seed=1)
    exact = float(_plain(h, weight, targets))
    plain = float(_plain(h.float(), weight.float(), targets))
    fused = float(frozen_head_cross_entropy(h.float(), weight.float(), targets))
    assert abs(fused - exact) <= abs(plain - exact) + 1e-6 * abs(exact)


def test_only_a_frozen_head_and_well_shaped_inputs() -> None:
    h, weight, targets, _ = _case()
    with pytest.raises(ValueError, match="frozen"):
        frozen_head_cross_entropy(h, weight.clone().requires_grad_(), targets)
    with pytest.raises(ValueError, match=r"\[M, D\]"):
        frozen_head_cross_entropy(h, weight, targets[:-1])
    with pytest.raises(ValueError, match="chunk_rows"):
        frozen_head_cross_entropy(h, weight, targets, chunk_rows=0)
