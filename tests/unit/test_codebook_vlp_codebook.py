"""The visual codebook of Codebook-VLP: EMA / straight-through / frozen updates, dead-code restarts, usage."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align.methods.codebook_vlp.codebook import VisualCodebook, code_usage, perplexity


def _clusters(n_per: int = 64, k: int = 4, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` tight clusters around orthogonal directions, and the cluster of each row."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:k] * 3
    labels = torch.arange(k).repeat_interleave(n_per)
    return centres[labels] + 0.05 * torch.randn(len(labels), dim, generator=g), labels


def test_perplexity_counts_equally_used_codes() -> None:
    assert perplexity(torch.tensor([0, 1, 2, 3]), 8).item() == pytest.approx(4.0)
    assert perplexity(torch.tensor([5, 5, 5]), 8).item() == pytest.approx(1.0)
    usage = code_usage(torch.tensor([[0, 0], [1, 7]]), 8)
    assert usage["used_codes"] == 3 and usage["dead_codes"] == 5 and usage["num_codes"] == 8


def test_first_training_batch_initialises_codes_on_data() -> None:
    torch.manual_seed(0)
    z, _ = _clusters()
    book = VisualCodebook(16, 8).train()
    book(z)
    unit = F.normalize(z, dim=1)
    nearest = (F.normalize(book.codes.data, dim=1) @ unit.T).max(1).values
    assert bool(book.initialised) and nearest.min() > 0.99  # every code sits on a data point


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_codebook_separates_clusters_and_vq_loss_falls(update: str) -> None:
    torch.manual_seed(0)
    z, labels = _clusters(k=4)
    book = VisualCodebook(4, 8, update=update, decay=0.9).train()
    opt = torch.optim.SGD([book.codes], lr=0.5) if update == "loss" else None
    losses = []
    for _ in range(30):
        out = book(z + 0.05 * torch.randn_like(z))
        losses.append(float(out.loss.detach()))
        if opt is not None:
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    codes = book.eval().assign(z)
    # one code per cluster: the cluster -> code map is a bijection
    assert len({int(codes[labels == c].mode().values) for c in range(4)}) == 4
    assert code_usage(codes, 4)["dead_codes"] == 0


def test_restart_moves_only_dead_codes_onto_batch_tokens() -> None:
    torch.manual_seed(0)
    z, _ = _clusters()
    book = VisualCodebook(8, 8, restart_threshold=1.0).train()
    book(z)
    before = book.codes.data.clone()
    book.usage[:3] = 0.0  # three dead codes
    book.usage[3:] = 50.0
    moved = book.restart_dead(z)
    assert moved == 3
    assert torch.equal(book.codes.data[3:], before[3:])
    unit = F.normalize(z, dim=1)
    for code in book.codes.data[:3]:
        assert torch.isclose(unit @ code, torch.tensor(1.0), atol=1e-5).any()  # exactly a batch token
    assert torch.all(book.usage[:3] == 1.0)


def test_collapsed_codebook_recovers_through_restarts() -> None:
    """Codes stranded far from the data never win an assignment; restarts bring them back into use."""
    torch.manual_seed(0)
    z, _ = _clusters(k=4)
    book = VisualCodebook(8, 8, decay=0.5, restart_threshold=1.0).train()
    book(z)
    book.codes.data[4:] = -torch.ones(4, 8)  # far from every (positive) token: dead
    book.code_sum.data[4:] = -torch.ones(4, 8) * book.usage[4:, None]
    assert code_usage(book.assign(z), 8)["dead_codes"] >= 4
    for _ in range(10):
        book(z)
    assert book.restarts >= 4
    assert (F.normalize(book.codes.data[4:], dim=1) @ F.normalize(z, dim=1).T).max(1).values.min() > 0.9


def test_without_restarts_the_stranded_codes_stay_dead() -> None:
    """The control for the test above: the same set-up with restarts disabled keeps the dead codes."""
    torch.manual_seed(0)
    z, _ = _clusters(k=4)
    book = VisualCodebook(8, 8, decay=0.5, restart_threshold=0.0).train()
    book(z)
    book.codes.data[4:] = -torch.ones(4, 8)
    book.code_sum.data[4:] = -torch.ones(4, 8) * book.usage[4:, None]
    for _ in range(10):
        book(z)
    assert book.restarts == 0
    assert code_usage(book.assign(z), 8)["dead_codes"] >= 4


def test_frozen_codebook_never_changes() -> None:
    torch.manual_seed(0)
    z, _ = _clusters()
    book = VisualCodebook(8, 8, update="frozen").train()
    before = book.codes.data.clone()
    for _ in range(3):
        book(z)
    assert torch.equal(book.codes.data, before) and book.restarts == 0
    assert not book.codes.requires_grad


@pytest.mark.parametrize("update", ["ema", "loss"])
@pytest.mark.parametrize("cosine", [True, False])
def test_straight_through_hands_the_quantized_gradient_to_the_tokens(update: str, cosine: bool) -> None:
    """A loss on the quantised output alone (no commitment, no codebook term) reaches the tokens as the
    gradient at the code, passed back through what the quantiser does to ``z`` before the lookup: with
    ``cosine`` the L2 normalisation, whose Jacobian is ``(I - u u^T) / ||z||`` (``u = z / ||z||``), else
    the identity. Protects against losing the straight-through path (``quantized = codes[k*]``: the tokens
    get no gradient, or only the commitment term's, which the test leaves out) and against a path that
    passes the gradient at the wrong point or skips the normalisation's Jacobian."""
    torch.manual_seed(0)
    z = (3 * torch.randn(10, 8)).requires_grad_()
    target = torch.randn(10, 8)
    book = VisualCodebook(4, 8, update=update, cosine=cosine).train()
    book(z.detach())  # initialises the codes on the batch
    codes = book.normalised_codes().detach().clone()  # the codes this step quantises to (EMA moves them after)
    out = book(z)

    def loss(q: torch.Tensor) -> torch.Tensor:  # nonlinear, so its gradient depends on where it is taken
        return ((q - target) ** 2 * torch.arange(1, 9)).sum()

    chosen = codes[out.indices]
    assert torch.allclose(out.quantized, chosen)  # the forward value is the code itself
    assert out.quantized.requires_grad, "no gradient path from the quantised output back to the tokens"
    (grad_z,) = torch.autograd.grad(loss(out.quantized), z, allow_unused=True)
    assert grad_z is not None, "the tokens get no gradient from a loss on the quantised output"

    at_code = chosen.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss(at_code), at_code)  # dL/dq at the code
    if cosine:
        norm = z.detach().norm(dim=1, keepdim=True)
        u = z.detach() / norm
        expected = (g - (g * u).sum(1, keepdim=True) * u) / norm
    else:
        expected = g
    assert torch.allclose(grad_z, expected, atol=1e-5), (grad_z - expected).abs().max()
    assert out.indices.shape == (10,)


def test_unknown_update_is_refused() -> None:
    with pytest.raises(ValueError, match="update"):
        VisualCodebook(4, 8, update="kmeans")
