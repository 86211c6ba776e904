"""The hand-written quantizers: exact chunked search, raw rows out, straight-through gradients, a
frozen codebook that no gradient reaches and a learned one that trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align.kernels.quantizer import FrozenCodebookQuantizer, LearnedCodebookQuantizer, nearest_codes


def gaussian(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_chunked_search_equals_brute_force_argmax(chunk: int) -> None:
    rows, queries = F.normalize(gaussian(300, 16, seed=0), dim=-1), F.normalize(gaussian(50, 16, seed=1), dim=-1)
    expected = (queries @ rows.T).argmax(1)
    assert torch.equal(nearest_codes(queries, rows, chunk=chunk, query_chunk=13), expected)


def test_ties_go_to_the_first_row_across_chunks() -> None:
    rows = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert nearest_codes(torch.tensor([[1.0, 0.0]]), rows, chunk=1).tolist() == [1]


def test_frozen_quantizer_returns_raw_rows_of_the_cosine_nearest_allowed_id() -> None:
    table = gaussian(100, 8, seed=2) * torch.linspace(0.1, 5, 100)[:, None]  # row norms differ
    allowed = torch.arange(10, 100)
    quantizer = FrozenCodebookQuantizer(table, allowed)
    z = gaussian(4, 6, 8, seed=3)
    out = quantizer(z)
    cosine = F.normalize(z, dim=-1) @ F.normalize(table[allowed], dim=-1).T
    assert torch.equal(out.codes, allowed[cosine.argmax(-1)])
    assert out.codes.min() >= 10  # excluded rows are never picked
    assert torch.equal(out.raw, table[out.codes])  # the raw, un-normalised row is passed on
    assert torch.allclose(out.st, table[out.codes], atol=1e-6)
    assert torch.allclose(out.loss, ((z - table[out.codes]) ** 2).mean())


def test_raw_l2_search_when_not_normalising() -> None:
    table, z = gaussian(200, 8, seed=4), gaussian(30, 8, seed=5)
    out = FrozenCodebookQuantizer(table, l2_normalize=False, chunk=17)(z)
    assert torch.equal(out.codes, torch.cdist(z, table).argmin(1))


def test_gradient_reaches_z_by_straight_through_and_never_the_frozen_table() -> None:
    table = gaussian(50, 8, seed=6)
    quantizer = FrozenCodebookQuantizer(table)
    assert list(quantizer.parameters()) == []  # a buffer: no optimiser can see it
    assert "codebook" not in quantizer.state_dict()  # rebuilt from the table, never saved
    z = gaussian(5, 8, seed=7).requires_grad_()
    out = quantizer(z)
    weights = gaussian(5, 8, seed=8)
    (out.st * weights).sum().backward()
    assert torch.equal(z.grad, weights)  # identity gradient through the straight-through path
    assert not quantizer.codebook.requires_grad and quantizer.codebook.grad is None
    assert torch.equal(quantizer.codebook, table)


def test_commitment_gradient_pulls_z_towards_its_code() -> None:
    quantizer = FrozenCodebookQuantizer(gaussian(50, 8, seed=9))
    z = gaussian(5, 8, seed=10).requires_grad_()
    out = quantizer(z)
    out.loss.backward()
    assert torch.allclose(z.grad, 2 * (z - out.raw).detach() / z.numel())


def test_learned_codebook_gets_the_codebook_loss_gradient() -> None:
    quantizer = LearnedCodebookQuantizer(40, 8, beta=0.25)
    z = gaussian(6, 8, seed=11).requires_grad_()
    out = quantizer(z)
    (out.loss + out.st.sum()).backward()
    used = out.codes.unique()
    grad_rows = quantizer.codebook.grad.abs().sum(1) > 0
    assert grad_rows[used].all() and grad_rows.sum() == len(used)  # only the selected rows move
    assert torch.equal(out.codes, (F.normalize(z, dim=-1) @ F.normalize(quantizer.codebook, dim=-1).T).argmax(1))


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must be"):
        nearest_codes(torch.zeros(3, 4), torch.zeros(5, 6))


def test_learned_codebook_loss_uses_the_search_distance() -> None:
    """With cosine search the VQ loss is taken on l2-normalised vectors: rescaling a code or an encoding
    changes neither the code chosen nor the loss; without normalisation it is the raw-vector loss."""
    quantizer = LearnedCodebookQuantizer(40, 8, beta=0.25)
    z = gaussian(6, 8, seed=12)
    out = quantizer(z)
    unit_z, unit_q = F.normalize(z, dim=-1), F.normalize(quantizer.codebook[out.codes], dim=-1)
    assert torch.allclose(out.loss, 1.25 * F.mse_loss(unit_q, unit_z))
    with torch.no_grad():
        quantizer.codebook.mul_(7.0)
    scaled = quantizer(3 * z)
    assert torch.equal(scaled.codes, out.codes) and torch.allclose(scaled.loss, out.loss, atol=1e-6)
    assert torch.equal(scaled.raw, quantizer.codebook[out.codes])  # the raw row is still passed on
    raw = LearnedCodebookQuantizer(40, 8, beta=0.25, l2_normalize=False)
    out = raw(z)
    assert torch.allclose(out.loss, 1.25 * F.mse_loss(raw.codebook[out.codes], z))


def test_usage_entropy_is_minus_log_k_when_vectors_sit_on_k_distinct_rows_and_zero_on_one() -> None:
    from align.kernels.quantizer import usage_entropy

    rows = torch.eye(8)  # orthonormal rows: at a low temperature each vector's assignment is one-hot
    spread = usage_entropy(rows[:4].clone(), rows, temperature=0.01)
    collapsed = usage_entropy(rows[[0, 0, 0, 0]].clone(), rows, temperature=0.01)
    assert spread == pytest.approx(-torch.log(torch.tensor(4.0)).item(), abs=1e-3)
    assert collapsed == pytest.approx(0.0, abs=1e-3)


def test_usage_entropy_gradient_spreads_a_collapsed_batch_over_more_codes() -> None:
    """Planted collapse: 64 vectors all nearest to row 0; gradient steps on the usage term alone must
    move some of them onto other rows (and reach a learned codebook's rows)."""
    from align.kernels.quantizer import usage_entropy

    rows = F.normalize(gaussian(16, 8, seed=4), dim=-1)
    z = (rows[0] + 0.3 * gaussian(64, 8, seed=5)).requires_grad_(True)
    before = nearest_codes(F.normalize(z.detach(), dim=-1), rows).unique().numel()
    optimizer = torch.optim.SGD([z], lr=0.5)
    for _ in range(100):
        optimizer.zero_grad()
        usage_entropy(z, rows, temperature=0.1).backward()
        optimizer.step()
    after = nearest_codes(F.normalize(z.detach(), dim=-1), rows).unique().numel()
    assert after >= before + 4
    learned = LearnedCodebookQuantizer(16, 8)
    usage_entropy(z.detach(), learned.unit_rows(), temperature=0.1).backward()
    assert learned.codebook.grad is not None and learned.codebook.grad.abs().sum() > 0
