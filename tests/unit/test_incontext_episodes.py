"""In-context episodes with several queries per support set (align.eval.incontext): the draws, the
label-shuffled control, and the cached support pass giving the same scores as reading the whole prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from align.errors import BadInputError
from align.eval.incontext import (LETTERS, draw_episodes, letter_scores, query_prompt, score_episodes,
                                  support_prompt)
from incontext_fakes import BOS, CharTokenizer, CopyReader


def test_episodes_are_seeded_draws_with_support_and_queries_apart() -> None:
    labels = np.repeat(np.arange(6), 10)
    episodes = draw_episodes(labels, n_way=3, k_shot=2, episodes=30, queries=5, seed=7)
    assert episodes == draw_episodes(labels, n_way=3, k_shot=2, episodes=30, queries=5, seed=7)
    assert episodes != draw_episodes(labels, n_way=3, k_shot=2, episodes=30, queries=5, seed=8)
    for e in episodes:
        assert len(e.support) == 6 and len(e.queries) == 5 and not set(e.support) & set(e.queries)
        assert len(set(e.queries)) == 5 and sorted(e.support_letters) == ["A", "A", "B", "B", "C", "C"]
        class_of = {x: labels[r] for r, x in zip(e.support, e.support_letters)}
        assert len(set(class_of.values())) == 3  # one class a letter
        assert all(labels[q] == class_of[a] for q, a in zip(e.queries, e.answers))
    with pytest.raises(BadInputError, match="fewer than"):
        draw_episodes(np.repeat(np.arange(3), 3), n_way=2, k_shot=2, episodes=1, queries=3, seed=0)


def test_the_shuffled_control_keeps_the_rows_and_letter_counts_and_breaks_the_binding() -> None:
    labels = np.repeat(np.arange(5), 12)
    plain = draw_episodes(labels, 2, 3, 200, 4, seed=1)
    shuffled = draw_episodes(labels, 2, 3, 200, 4, seed=1, shuffle_labels=True)
    assert [e.support for e in plain] == [e.support for e in shuffled]
    assert all(sorted(a.support_letters) == sorted(b.support_letters) for a, b in zip(plain, shuffled))
    assert sum(a.support_letters != b.support_letters for a, b in zip(plain, shuffled)) > 150


def test_a_reader_of_the_binding_scores_one_and_falls_to_chance_when_letters_are_shuffled() -> None:
    labels = np.repeat(np.arange(6), 10)
    texts = [f"class {c}" for c in labels]  # items of a class share their text
    tok = CharTokenizer()
    lm = CopyReader(tok)
    correct = score_episodes(lm, tok, texts, draw_episodes(labels, 3, 2, 40, 5, seed=0), n_way=3)
    assert correct.shape == (40, 5) and correct.all()
    assert lm.passes == 40 * (1 + 5)  # one support pass an episode, one pass a query
    shuffled = score_episodes(lm, tok, texts, draw_episodes(labels, 2, 3, 300, 4, seed=0, shuffle_labels=True),
                              n_way=2)
    assert 0.4 < shuffled.mean() < 0.6


def tiny_gemma() -> nn.Module:
    """A random 3-layer Gemma-3 whose sliding window (8) is shorter than the prompts, with full attention
    in the middle layer: a cache mishandled at the window's edge changes the scores."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    layers = ["sliding_attention", "full_attention", "sliding_attention"]
    config = Gemma3TextConfig(vocab_size=1100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                              sliding_window=8, layer_types=layers,
                              pad_token_id=0, bos_token_id=BOS, eos_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


def test_cached_support_gives_the_scores_of_the_whole_prompt_read_at_once() -> None:
    labels = np.repeat(np.arange(4), 6)
    texts = [f"w{r} c{c}" for r, c in enumerate(labels)]
    tok, lm = CharTokenizer(), tiny_gemma()
    letters = list(LETTERS[:3])
    ids = [1000 + ord(x) for x in letters]
    for episode in draw_episodes(labels, 3, 2, 3, 4, seed=3):
        cached = letter_scores(lm, tok, texts, episode, 3)
        support = tok(support_prompt(texts, episode, letters))["input_ids"]
        for q, row in enumerate(episode.queries):
            whole = torch.tensor([support + tok(query_prompt(texts[row]), add_special_tokens=False)["input_ids"]])
            assert whole.shape[1] > 8 * 4  # well past the sliding window
            with torch.no_grad():
                expected = lm(input_ids=whole).logits[0, -1, ids]
            torch.testing.assert_close(cached[q], expected, atol=1e-5, rtol=1e-5)
