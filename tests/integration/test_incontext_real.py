"""In-context scoring on the real Gemma-3 270M: a 5-way 5-shot prompt is longer than Gemma's 512-token
sliding window, so the support's cached keys and values must give each query the letter scores of the
whole prompt read at once, or every number of the in-context study (benchmarks/lqae_incontext.py) is off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import need_asset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GEMMA = "gguf:gemma-3-270m.q4_k_m"


def test_cached_support_matches_the_whole_prompt_past_the_sliding_window() -> None:
    need_asset("gemma-3-270m.q4_k_m")
    import align.text  # noqa: F401  (registers the tables)
    from align.eval.incontext import LETTERS, draw_episodes, letter_ids, letter_scores, query_prompt, support_prompt
    from align.registry import EMBEDDING_TABLES

    table = EMBEDDING_TABLES.create(GEMMA)
    lm, tok = table.load_lm().eval(), table.tokenizer
    words = [t[1:] for t in table.tokens[1000:5000] if t.startswith("▁") and t[1:].isalpha()]
    labels = np.repeat(np.arange(5), 8)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words[c * 100:(c + 1) * 100], size=16)) for c in labels]  # 16 words an image
    episode = draw_episodes(labels, 5, 5, episodes=1, queries=2, seed=0)[0]
    support = tok(support_prompt(texts, episode, LETTERS[:5]), return_tensors="pt")["input_ids"]
    assert support.shape[1] > lm.config.sliding_window, support.shape
    cached = letter_scores(lm, tok, texts, episode, 5)
    ids = letter_ids(tok, list(LETTERS[:5]))
    for q, row in enumerate(episode.queries):
        query = tok(query_prompt(texts[row]), add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            whole = lm(input_ids=torch.cat([support, query], 1), logits_to_keep=1).logits[0, -1, ids].float()
        assert float((cached[q] - whole).abs().max()) < 1e-3 * float(whole.abs().max() + 1), (cached[q], whole)
