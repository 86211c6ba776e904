"""LQAE's bidirectional denoiser with a head trained on text (``mlm_head="text"``, issue 31 item 3):
the head is the one :mod:`align.text.mlm_head` trains, it scores the codes exactly as it scores words,
and LQAE's training never moves it (the paper's frozen, pretrained BERT head)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import align.methods.lqae.aligner as lqae_aligner
from align.methods.lqae.aligner import LQAECore
from align.text import mlm_head as M

TINY = dict(table="toy:table-masked", image_size=16, patch_size=4, in_chans=1, encoder_width=32, encoder_depth=1,
            encoder_heads=2, decoder_width=32, decoder_depth=1, decoder_heads=2, lm_weight=1.0,
            codebook_rows="words", codebook_size=100)
HEAD = M.HeadSettings(steps=30, batch_size=8, seq_len=16, lr=3e-2, warmup=3, eval_fraction=0.25)
DOCS = {f"doc{d}": " ".join(f"the cat is red . the dog is blue . {d}" for _ in range(20)) for d in range(6)}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture()
def text_head(monkeypatch: pytest.MonkeyPatch) -> list[M.MLMHead]:
    """LQAE's text head trained on a small corpus in seconds (the real one reads Python's docs for minutes);
    the heads handed to LQAE are recorded."""
    given: list[M.MLMHead] = []

    def small(table: Any) -> tuple[M.MLMHead, dict]:
        head, info = M.pretrained_head(table, HEAD, docs=DOCS)
        given.append(head)
        return head, info

    monkeypatch.setattr(lqae_aligner, "pretrained_head", small)
    return given


def core(**kw: Any) -> LQAECore:
    torch.manual_seed(0)
    return LQAECore(**{**TINY, **kw})


def test_the_text_head_scores_codes_as_it_scores_words(text_head: list[M.MLMHead]) -> None:
    model = core(mlm_head="text")
    (head,) = text_head
    states = torch.randn(5, model.table.embed_dim)
    with torch.no_grad():
        words = head(states)[:, model.search_ids]
        codes = model.lm_logits(states)
    torch.testing.assert_close(codes, words, rtol=1e-5, atol=1e-5)
    untrained = core(mlm_head="frozen")
    with torch.no_grad():
        assert not torch.allclose(untrained.lm_logits(states), words, atol=1e-3)  # not the random head


def test_training_never_moves_the_text_head(text_head: list[M.MLMHead]) -> None:
    model = core(mlm_head="text")
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("mlm_")}
    encoder_before = model.encoder.patch_embed.proj.weight.detach().clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in (*model.mlm_transform.parameters(), model.mlm_bias))
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        optimizer.zero_grad()
        model(images).backward()
        optimizer.step()
    assert model.parts["lm"] > 0
    for name, value in model.state_dict().items():
        if name.startswith("mlm_"):
            torch.testing.assert_close(value, head_before[name], rtol=0, atol=0)
    assert not torch.equal(model.encoder.patch_embed.proj.weight, encoder_before)


def test_the_head_is_saved_with_the_model_so_a_reload_scores_the_same(text_head: list[M.MLMHead]) -> None:
    model = core(mlm_head="text")
    reloaded = core(mlm_head="frozen")  # a random head, until the saved state replaces it
    states = torch.randn(3, model.table.embed_dim)
    with torch.no_grad():
        assert not torch.allclose(reloaded.lm_logits(states), model.lm_logits(states), atol=1e-3)
        reloaded.load_state_dict(model.state_dict())
        torch.testing.assert_close(reloaded.lm_logits(states), model.lm_logits(states), rtol=0, atol=0)


def test_loading_a_saved_model_never_trains_the_head_again(
        text_head: list[M.MLMHead], monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """On a machine without the cached head, training it takes minutes, and a saved model holds it already:
    loading builds it untrained for the saved state to replace."""
    from align.methods.framework.base import load_aligner
    from align.methods.lqae.aligner import LQAE
    from toy_pixels import squares as toy_images  # tests/unit/toy_pixels.py

    images = toy_images(8)
    model = LQAE(**TINY, mlm_head="text", max_epochs=1, batch_size=8).fit_images(images)
    model.save(tmp_path / "lqae")
    monkeypatch.setattr(lqae_aligner, "pretrained_head", lambda table: pytest.fail("loading trained the head"))
    loaded = load_aligner(tmp_path / "lqae")
    states = torch.randn(3, model.core.table.embed_dim)
    with torch.no_grad():
        torch.testing.assert_close(loaded.core.lm_logits(states), model.core.lm_logits(states), rtol=0, atol=0)
    assert torch.equal(loaded.codes(images), model.codes(images))
    with pytest.raises(pytest.fail.Exception, match="loading trained"):  # a new model does train (here: fails)
        core(mlm_head="text")
