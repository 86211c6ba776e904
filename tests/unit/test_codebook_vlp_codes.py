"""Codebook-VLP version 2 (issue 15): codes that carry meaning and stay used, MIM on the evaluated image
encoder, ITM negatives at the contrastive temperature and ITM re-ranking. Tiny models built in code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.eval.retrieval import evaluate_retrieval_scores
from align.methods.codebook_vlp.aligner import CodebookVLPAligner, CodebookVLPCore, load_table, tokenize
from align.methods.codebook_vlp.codebook import VisualCodebook, codebook_health, collapsed, kmeans
from align.methods.codebook_vlp.objectives import IGNORE, drop_top_weights, hard_negatives, inverse_frequency_weights
from align.methods.codebook_vlp.rerank import rerank

TABLE = "toy:table-masked"
WORDS = "cat dog bird fish horse cow sheep car".split()
SMALL = dict(table=TABLE, image_width=16, image_heads=2, embed_dim=16, num_codes=8, code_dim=8, queue_size=32)
LEGACY = {k: v for k, v in CodebookVLPAligner.legacy_hparams.items() if k != "rerank_k"}  # core arguments


def _clustered(n: int = 48, tokens: int = 16, dim: int = 8, k: int = 8, seed: int = 0,
               ) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Images whose tokens come from ``k`` planted clusters (equally often), captions naming the first
    token's cluster, and the cluster of every token."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(k, dim, generator=g)
    labels = torch.randint(k, (n, tokens), generator=g)
    x = centres[labels] + 0.1 * torch.randn(n, tokens, dim, generator=g)
    return x, [f"a {WORDS[int(row[0]) % len(WORDS)]}" for row in labels], labels


def _core(**kw: object) -> tuple[CodebookVLPCore, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, caps, labels = _clustered()
    ids, mask = tokenize(load_table(TABLE), caps, 16)
    torch.manual_seed(0)
    args = {k: v for k, v in SMALL.items() if k != "table"} | kw
    return CodebookVLPCore(x.shape[2], x.shape[1], TABLE, **args).train(), x, ids, mask, labels


def _one_code_per_cluster(codes: torch.Tensor, labels: torch.Tensor, k: int) -> bool:
    return len({int(codes[labels == c].mode().values) for c in range(k)}) == k


# ---------------------------------------------------------------------- (a) collapse is detected, k-means passes


def test_health_flags_a_codebook_where_one_code_takes_most_tokens() -> None:
    """The version-1 emoji pattern: one (background) code takes 84% of the tokens."""
    torch.manual_seed(0)
    indices = torch.where(torch.rand(5000) < 0.84, torch.tensor(3), torch.randint(64, (5000,)))
    health = codebook_health(indices, 64)
    assert health["collapsed"] and collapsed(indices, 64) and health["top_share"] > 0.8
    even = torch.arange(64).repeat(50)
    assert not collapsed(even, 64) and codebook_health(even, 64)["perplexity"] == pytest.approx(64, rel=1e-4)
    assert collapsed(torch.zeros(100, dtype=torch.long), 64)  # every token on one code


def test_kmeans_on_clustered_tokens_finds_the_planted_clusters() -> None:
    x, _, labels = _clustered()
    torch.manual_seed(0)
    book = VisualCodebook(8, 8).train()
    z = x.reshape(-1, 8) - x.reshape(-1, 8).mean(0)
    book.initialise(kmeans(z, 8), z, tokens_per_batch=256)
    codes = book.assign(z)
    health = codebook_health(codes, 8)
    assert not health["collapsed"] and health["perplexity"] > 0.9 * 8
    assert _one_code_per_cluster(codes, labels.flatten(), 8)
    assert torch.isclose(book.usage.sum(), torch.tensor(256.0))  # shares of a batch


def test_token_codes_start_on_the_clusters_and_stay_there_through_training() -> None:
    """Version 2's default: codes of the frozen tokens, k-means initialised; training every objective
    cannot move the tokens, so the codes keep meaning one cluster each."""
    core, x, ids, mask, labels = _core()
    core.prepare(x, tokens_per_batch=x.shape[0] * x.shape[1])
    assert core.code_proj is None and torch.allclose(core.token_mean, x.reshape(-1, 8).mean(0))
    assert _one_code_per_cluster(core.code_indices(x), labels, 8)
    opt = torch.optim.Adam([p for p in core.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(20):
        opt.zero_grad()
        core(x, ids, mask).backward()
        opt.step()
    codes = core.eval().code_indices(x)
    assert _one_code_per_cluster(codes, labels, 8) and codebook_health(codes, 8)["perplexity"] > 0.9 * 8
    stats = core.training_epoch_compute()
    assert stats["code_perplexity"] > 0.9 * 8 and stats["dead_codes"] == 0
    assert core.codebook.epoch_counts.sum() == 0  # reset for the next epoch


# ---------------------------------------------------------------------- (b) ITM hard negatives


def test_hard_negatives_follow_softmax_of_similarity_over_temperature() -> None:
    torch.manual_seed(0)
    b, temperature, draws = 6, 0.07, 4000
    image, text = F.normalize(torch.randn(b, 8), dim=1), F.normalize(torch.randn(b, 8), dim=1)
    similarity = image @ text.T
    keys = torch.arange(b)
    counts = torch.zeros(b, b)
    rows = torch.arange(b)
    for _ in range(draws):
        neg_text, _ = hard_negatives(similarity, keys, temperature)
        counts[rows, neg_text] += 1
    expected = F.softmax((similarity / temperature).masked_fill(torch.eye(b, dtype=torch.bool), float("-inf")), dim=1)
    assert (counts.diagonal() == 0).all()
    assert torch.allclose(counts / draws, expected, atol=0.03)
    hardest = expected.argmax(1)
    assert (counts[rows, hardest] / draws > 2.5 / (b - 1)).all()  # far above uniform over the b - 1 others
    raw = torch.zeros(b, b)  # for contrast: raw cosines (version 1) draw nearly uniformly
    for _ in range(draws):
        raw[rows, hard_negatives(similarity, keys)[0]] += 1
    assert (raw[rows, hardest] / draws < 2.0 / (b - 1)).all()


def test_the_core_draws_negatives_at_its_contrastive_temperature(monkeypatch: pytest.MonkeyPatch) -> None:
    import align.methods.codebook_vlp.core as core_module

    seen: list[float] = []
    original = core_module.hard_negatives
    monkeypatch.setattr(core_module, "hard_negatives",
                        lambda s, k, t=1.0: (seen.append(float(t)), original(s, k, t))[1])
    for tempered, wanted in ((True, 0.07), (False, 1.0)):
        core, x, ids, mask, _ = _core(hard_negative_temperature=tempered, mlm=False)
        core(x, ids, mask)
        assert seen[-1] == pytest.approx(wanted)


# ---------------------------------------------------------------------- (c) dead codes restart


def test_codes_idle_for_the_window_restart_onto_batch_tokens() -> None:
    torch.manual_seed(0)
    x, _, _ = _clustered(k=4)
    z = x.reshape(-1, 8)
    book = VisualCodebook(8, 8, restart_window=3).train()
    book.initialise(kmeans(z, 4).repeat(2, 1), z, tokens_per_batch=len(z))
    book.codes.data[4:] = -10 * book.codes.data[4:]  # stranded: they never win a token
    book.code_sum.data[4:] = book.codes.data[4:] * book.usage[4:, None]
    book(z)
    book(z)
    assert book.restarts == 0 and (book.idle[4:] == 2).all() and (book.idle[:4] == 0).all()
    book(z)  # third idle step: restarted
    assert book.restarts >= 4 and (book.idle == 0).all()
    unit = F.normalize(z, dim=1)
    assert ((F.normalize(book.codes.data[4:], dim=1) @ unit.T).max(1).values > 0.999).all()  # on batch tokens
    stats = book.epoch_stats()
    assert stats["code_restarts"] == book.restarts and stats["dead_codes"] >= 4


def test_fit_history_logs_code_perplexity_and_dead_codes_per_epoch() -> None:
    x, caps, _ = _clustered()
    aligner = CodebookVLPAligner(**SMALL, max_epochs=2, batch_size=16, seed=0).fit_captions(x, caps)
    for key in ("code_perplexity", "dead_codes", "code_restarts"):
        assert len(aligner.history[key]) == 2
    assert aligner.history["code_perplexity"][-1] > 0.9 * 8
    usage = aligner.code_usage(x)
    assert not usage["collapsed"] and usage["perplexity"] > 0.9 * 8


# ---------------------------------------------------------------------- (d) MIM reaches the evaluated encoder


def _mim_gradients(core: CodebookVLPCore, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> set[str]:
    core.zero_grad()
    codes = core.code_indices(x)
    loss = core._mim(x, core.image_encoder.embed(x), codes, core.text_encoder(ids, mask), mask)
    loss.backward()
    return {name for name, p in core.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_mim_gradients_reach_the_image_encoder_that_evaluation_uses() -> None:
    core, x, ids, mask, _ = _core()
    core.prepare(x, tokens_per_batch=256)
    assert not hasattr(core, "image_fusion")
    touched = _mim_gradients(core, x, ids, mask)
    assert any(name.startswith("image_encoder.blocks.") for name in touched)
    assert {"image_encoder.proj.weight", "image_encoder.mask_token"} <= touched
    assert all(name.split(".")[0] in ("image_encoder", "mim_head") for name in touched)
    # encode_image reads those very states: its output moves when only they change
    before = core.encode_image(x).detach()
    with torch.no_grad():
        for name, p in core.named_parameters():
            if name in touched and name.startswith("image_encoder."):
                p.add_(0.1 * p.grad.sign())
    assert not torch.allclose(core.encode_image(x), before)


def test_version_1_mim_trained_a_fusion_branch_instead() -> None:
    core, x, ids, mask, _ = _core(**LEGACY)
    touched = _mim_gradients(core, x, ids, mask)
    assert any(name.startswith("image_fusion.") for name in touched)


def test_mim_weights_shrink_a_background_code_share() -> None:
    torch.manual_seed(0)
    targets = torch.where(torch.rand(2000) < 0.84, torch.tensor(0), torch.randint(1, 8, (2000,)))
    targets[::10] = IGNORE
    weights = inverse_frequency_weights(targets, 8)
    chosen = targets != IGNORE
    assert (weights[~chosen] == 0).all() and weights[chosen].mean() == pytest.approx(1.0, rel=1e-5)
    background = weights[targets == 0].sum() / weights.sum()
    assert background < 0.5  # from 84% of the loss to under half
    dropped = drop_top_weights(targets, 8)
    assert (dropped[targets == 0] == 0).all() and (dropped[chosen & (targets != 0)] == 1).all()


def test_reconstruction_gives_the_state_projection_a_gradient_besides_commitment() -> None:
    core, x, ids, mask, _ = _core(code_source="states", reconstruction=1.0, itc=False, itm=False, mlm=False,
                                  mim=False)
    core.zero_grad()
    core(x, ids, mask).backward()
    assert core.parts["rec"] > 0 and core.decoder.weight.grad.abs().sum() > 0
    assert core.code_proj.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------- (e) ITM re-ranking


def test_rerank_orders_the_top_k_by_the_planted_matching_score() -> None:
    similarity = torch.tensor([[0.9, 0.8, 0.7, 0.1],
                               [0.2, 0.9, 0.3, 0.8],
                               [0.5, 0.4, 0.6, 0.0]])
    planted = torch.tensor([[0.0, 1.0, 5.0, 9.0],  # text 3 scores best but is not among image 0's top 3
                            [0.0, 0.0, 0.0, 3.0],
                            [2.0, 0.0, 0.0, 0.0]])
    calls: list[int] = []

    def score(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return planted[images, texts]

    i2t, t2i = rerank(similarity, 3, score)
    # 3 images x top 3 and 4 texts x top 3: 21 candidate pairs, of which 9 distinct pairs are in both
    both = {(i, t) for i in range(3) for t in similarity[i].topk(3).indices.tolist()}
    both &= {(i, t) for t in range(4) for i in similarity[:, t].topk(3).indices.tolist()}
    assert calls == [21 - len(both)]  # one call, each distinct pair once
    assert i2t[0].argsort(descending=True).tolist() == [2, 1, 0, 3]  # ITM order, then the rest by similarity
    assert i2t[1].argsort(descending=True).tolist()[0] == 3
    assert similarity[2].argmax() == 2 and i2t[2].argmax() == 0
    assert t2i[:, 0].argmax() == 2  # text 0: image 2 has the highest matching score among its top 3
    assert (t2i[:, 3].argsort(descending=True)[:3].sort().values == torch.tensor([0, 1, 2])).all()
    assert rerank(similarity, 1, score)[0].argmax(1).tolist() == similarity.argmax(1).tolist()  # k=1: no change


def test_retrieval_scores_follow_the_itm_head(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _, _ = _clustered(n=8)
    caps = [f"a {word}" for word in WORDS]  # 8 distinct captions
    aligner = CodebookVLPAligner(**SMALL, rerank_k=4, max_epochs=1, batch_size=8, seed=0).fit_captions(x, caps)
    plain = CodebookVLPAligner(**SMALL, max_epochs=1, batch_size=8, seed=0).fit_captions(x, caps)
    assert plain.retrieval_scores(x, caps) is None  # rerank_k=0: retrieval by cosine
    core = aligner.core
    with torch.no_grad():
        images = core.image_states(x).flatten(1)
        texts = core.text_encoder(*tokenize(load_table(TABLE), caps, 32)).flatten(1)

    def planted(text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The ITM head made to prefer caption j for image (j + 1) % 8 (pairs recognised by their states)."""
        i = torch.cdist(image.flatten(1), images).argmin(1)
        j = torch.cdist(text.flatten(1), texts).argmin(1)
        return (i == (j + 1) % len(x)).float()

    monkeypatch.setattr(core, "itm_logit", planted)
    i2t, t2i = aligner.retrieval_scores(x, caps)
    assert i2t.shape == t2i.shape == (8, 8)
    similarity = aligner.encode_image(x) @ aligner.encode_text_strings(caps).T
    top_texts, top_images = similarity.topk(4, dim=1).indices, similarity.topk(4, dim=0).indices
    hits = 0
    for i in range(8):
        assert set(i2t[i].topk(4).indices.tolist()) == set(top_texts[i].tolist())  # candidates stay the top k
        if (i - 1) % 8 in top_texts[i].tolist():
            assert int(i2t[i].argmax()) == (i - 1) % 8
            hits += 1
        if (i + 1) % 8 in top_images[:, i].tolist():
            assert int(t2i[:, i].argmax()) == (i + 1) % 8
            hits += 1
    assert hits >= 4  # the planted pairs were candidates often enough for the check to mean something


def test_retrieval_metrics_read_each_direction_from_its_own_matrix() -> None:
    owner = torch.arange(3)
    right, wrong = torch.eye(3), 1 - torch.eye(3)
    both = evaluate_retrieval_scores(right, wrong, owner, ks=(1,))
    assert both["text_retrieval_recall@1"] == 1.0 and both["image_retrieval_recall@1"] == 0.0
    with pytest.raises(BadInputError, match="one shape"):
        evaluate_retrieval_scores(right, wrong[:2], owner)


# ---------------------------------------------------------------------- bad settings


@pytest.mark.parametrize("bad, match", [
    (dict(rerank_k=8, itm=False), "rerank_k=8 needs itm"),
    (dict(reconstruction=1.0), "reconstruction=1.0 needs code_source='states'"),
    (dict(itc=False, itm=False, mlm=False, mim=False), "codebook alone trains no weights"),
    (dict(code_source="pixels"), "code_source"),
    (dict(mim_weighting="idf"), "mim_weighting"),
    (dict(restart_window=-1), "restart_window"),
])
def test_bad_version_2_settings_are_refused(bad: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        CodebookVLPAligner(**(SMALL | bad))
