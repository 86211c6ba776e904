"""VLAP's assignment loss (targets, finiteness at eps = 0.01, where gradients go, a planted case that
gradient descent solves) and the word-frequency priors feeding it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.methods.vlap.assignment import AssignmentLoss, assignment_loss, normalize_words
from align.kernels.sinkhorn import assign
from align.methods.vlap.word_prior import (
    clean_token, frequent_subset, is_special, prior_from_frequencies, token_frequencies, uniform_prior,
)


def planted(k: int = 16, dim: int = 12, image_dim: int = 20, batch: int = 64, seed: int = 0):
    """Words ``W``, pair word ids, text features near their word, visual features = a linear image of them."""
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(k, dim, generator=g)
    ids = torch.arange(batch) % k
    text = words[ids] + 0.1 * torch.randn(batch, dim, generator=g)
    mixing = torch.randn(dim, image_dim, generator=g)
    visual = text @ mixing + 0.05 * torch.randn(batch, image_dim, generator=g)
    return words, ids, text, visual


def test_targets_are_columns_summing_to_one_with_rows_near_the_prior() -> None:
    g = torch.Generator().manual_seed(3)
    text, words = torch.randn(64, 12, generator=g), torch.randn(16, 12, generator=g)
    scores = F.normalize(text, dim=1) @ normalize_words(words).T  # [B, K] cosines, as early in training
    prior = torch.softmax(torch.randn(16, generator=g), 0)
    batch = scores.shape[0]
    q3 = assign(scores.T, prior, eps=0.1, n_iter=3)  # VLAP: 3 iterations
    assert torch.allclose(q3.sum(0), torch.ones(batch), atol=1e-5)
    softmax_rows = torch.softmax(scores / 0.1, dim=1).sum(0)  # no OT: where the mass would go
    assert (q3.sum(1) - batch * prior).abs().sum() < 0.3 * (softmax_rows - batch * prior).abs().sum()
    q = assign(scores.T, prior, eps=0.1, n_iter=500, stop_thr=1e-7)
    assert torch.allclose(q.sum(1), batch * prior, atol=1e-4, rtol=1e-4)
    out = assignment_loss(torch.randn(batch, 12, generator=g), text, words, prior, eps=0.1, n_iter=3)
    assert out.q_text.shape == (batch, 16)
    assert torch.allclose(out.q_text, q3.T, atol=1e-6)


def test_loss_finite_at_eps_001_with_cosines_near_one() -> None:
    words, ids, text, _ = planted()
    visual = words[ids] + 1e-3 * torch.randn(64, 12)  # cosines ~1: exp(s / 0.01) overflows float32
    out = assignment_loss(visual, text, words, uniform_prior(16).float())
    for value in (out.loss, out.loss_visual, out.loss_text, out.entropy_visual, out.entropy_text):
        assert torch.isfinite(value)
    assert torch.isfinite(out.q_visual).all() and torch.isfinite(out.q_text).all()
    assert out.words_text == 16 and out.agreement == 1.0  # each pair lands on its own word
    assert 0 <= out.entropy_text <= torch.log(torch.tensor(16.0))


def test_gradient_reaches_only_the_visual_features() -> None:
    words, _, text, visual = planted()
    visual = (visual[:, :12] * 1.0).requires_grad_(True)
    text = text.clone().requires_grad_(True)
    words = words.clone().requires_grad_(True)
    prior = uniform_prior(16).float().requires_grad_(True)
    out = assignment_loss(visual, text, words, prior)
    assert not out.loss_text.requires_grad  # q^v is stop-gradient and s^t is frozen: value only
    assert not out.q_visual.requires_grad and not out.q_text.requires_grad
    out.loss.backward()
    assert visual.grad is not None and torch.isfinite(visual.grad).all() and visual.grad.abs().sum() > 0
    assert text.grad is None and words.grad is None and prior.grad is None


def test_gradient_is_half_the_cross_entropy_gradient() -> None:
    """dL/ds^v_b = (softmax(s^v_b / tau) - q^t_b) / (2 B tau), with unit visual rows (cosine = dot)."""
    words, _, text, visual = planted(batch=8)
    unit = normalize_words(words)
    v = F.normalize(visual[:, :12], dim=1).requires_grad_(True)
    out = assignment_loss(v, text, unit, uniform_prior(16).float(), tau=0.1, eps=0.05, words_normalized=True)
    out.loss.backward()
    with torch.no_grad():
        scores = v @ unit.T
        grad_scores = (torch.softmax(scores / 0.1, dim=1) - out.q_text) / (2 * 8 * 0.1)
        expected = grad_scores @ unit  # through s = n(v) W^T, projected on the tangent space of n(v)
        expected = expected - (expected * v).sum(1, keepdim=True) * v
    assert torch.allclose(v.grad, expected, atol=1e-5)


def test_gradient_descent_on_a_linear_map_finds_the_paired_words() -> None:
    words, ids, text, visual = planted()
    torch.manual_seed(1)
    projection = torch.nn.Linear(visual.shape[1], words.shape[1])
    criterion = AssignmentLoss(words, uniform_prior(16))
    optimizer = torch.optim.Adam(projection.parameters(), lr=0.03)

    def accuracy() -> float:
        with torch.no_grad():
            scores = F.normalize(projection(visual), dim=1) @ criterion.unit_words.T
            return float((scores.argmax(1) == ids).float().mean())

    before, losses = accuracy(), []
    for _ in range(50):
        out = criterion(projection(visual), text)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.1 * losses[0]
    assert before < 0.3 and accuracy() > 0.95


def test_module_keeps_no_state_and_matches_the_function() -> None:
    words, _, text, visual = planted()
    criterion = AssignmentLoss(words, uniform_prior(16), tau=0.05, eps=0.05, n_iter=5)
    assert criterion.state_dict() == {}
    visual = visual[:, :12]
    a = criterion(visual, text)
    b = assignment_loss(visual, text, words, uniform_prior(16).float(), tau=0.05, eps=0.05, n_iter=5)
    assert torch.allclose(a.loss, b.loss)


def test_bf16_autocast_does_not_lower_the_scoring_precision() -> None:
    words, _, text, visual = planted()
    visual = visual[:, :12]
    reference = assignment_loss(visual, text, words, uniform_prior(16).float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = assignment_loss(visual, text, words, uniform_prior(16).float())
    assert under.loss.dtype == torch.float32 and torch.allclose(under.loss, reference.loss)


def test_bad_shapes_are_reported() -> None:
    words, _, text, visual = planted()
    with pytest.raises(BadInputError, match="width"):
        assignment_loss(visual, visual, words, uniform_prior(16).float())
    with pytest.raises(BadInputError, match="both be"):
        assignment_loss(visual[:, :12], text[:5], words, uniform_prior(16).float())
    with pytest.raises(BadInputError, match="prior"):
        assignment_loss(visual[:, :12], text, words, uniform_prior(15).float())


# ---------------------------------------------------------------- word priors


def test_token_cleaning_and_special_tokens() -> None:
    assert [clean_token(t) for t in ("▁the", "Ġthe", "##ing", "the</w>", "▁▁", "cat")] == [
        "the", "the", "ing", "the", "", "cat"
    ]
    assert all(is_special(t) for t in ("[CLS]", "[unused3]", "<pad>", "</s>", "<0x0A>", "<|endoftext|>"))
    assert not any(is_special(t) for t in ("<", "[]", "the", "a<b"))


def test_prior_recipes() -> None:
    f = torch.tensor([0.05, 0.01, 0.001, 0.0], dtype=torch.float64)
    for recipe in ("normalized", "softmax_log", "softmax_freq"):
        p = prior_from_frequencies(f, recipe=recipe)
        assert p.dtype == torch.float64 and torch.isclose(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(prior_from_frequencies(f), f / f.sum())
    assert torch.allclose(prior_from_frequencies(f, "softmax_log", 0.25), f**4 / (f**4).sum())
    assert torch.allclose(prior_from_frequencies(f, "softmax_log", 1.0), f / f.sum())
    assert torch.allclose(prior_from_frequencies(1000 * f, "softmax_log"), prior_from_frequencies(f, "softmax_log"))
    assert prior_from_frequencies(f, "softmax_log")[3] == 0
    zipf = 1 / torch.arange(1, 30_001, dtype=torch.float64)  # an English-like 30k vocabulary
    soft = prior_from_frequencies(zipf, "softmax_freq", 0.25)  # probabilities at T = 0.25: near uniform
    assert soft.max() / soft.min() < 1.5
    assert torch.equal(uniform_prior(4), torch.full((4,), 0.25, dtype=torch.float64))
    with pytest.raises(BadInputError):
        prior_from_frequencies(f, "counts")  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        prior_from_frequencies(torch.zeros(3))


def test_wordfreq_frequencies_and_frequent_subset() -> None:
    wordfreq = pytest.importorskip("wordfreq")
    vocab = ["<pad>", "[CLS]", "▁the", "the", "▁The", "▁cat", "s", "▁1999", "▁zzqxj", "▁dog", ",", "▁of"]
    freqs = token_frequencies(vocab, special_ids=[1])
    the = wordfreq.word_frequency("the", "en")
    assert freqs[2] == freqs[3] == freqs[4] == the
    assert freqs[0] == freqs[1] == freqs[8] == freqs[10] == 1e-9  # special, unknown, punctuation: floor
    assert freqs[5] == wordfreq.word_frequency("cat", "en")
    ids = frequent_subset(vocab, 3, frequencies=freqs)
    assert [vocab[i] for i in ids] == ["▁the", "▁of", "s"]  # one token per word, word-start form
    everything = [vocab[i] for i in frequent_subset(vocab, 100, frequencies=freqs)]
    assert everything == ["▁the", "▁of", "s", "▁dog", "▁cat"]  # no specials, numbers, unknown words
    wordpiece = ["[PAD]", "the", "##the", "cat"]
    assert [wordpiece[i] for i in frequent_subset(wordpiece, 2)] == ["the", "cat"]
