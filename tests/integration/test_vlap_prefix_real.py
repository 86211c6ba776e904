"""VLAP's soft prefix on the real Gemma-3 270M: a token's raw (unscaled) table row, fed the way VLAP feeds
``g``'s output, must be that token to the LM; and greedy captions lose Gemma's control tokens."""

from __future__ import annotations

import pytest
import torch
from conftest import need_asset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GEMMA = "gguf:gemma-3-270m.q4_k_m"


@pytest.fixture(scope="module")
def core():
    need_asset("gemma-3-270m.q4_k_m")
    from align.methods.vlap.aligner import VLAPCore

    return VLAPCore(8, GEMMA)  # ~1 min with the LM: transformers dequantises the whole GGUF


def test_a_tokens_raw_row_as_prefix_gives_that_tokens_logits(core) -> None:
    """``[<bos>] + row(cat) + "A picture of"`` through VLAP's context equals feeding the ids: the same
    logits at the prefix's position and after it. Without Gemma's sqrt(640) input scale they differ."""
    lm, table = core.lm(), core.table
    tok = table.tokenizer
    assert core.embed_scale(lm) == pytest.approx(640**0.5, rel=1e-3)
    word = table.encode_ids(" cat")
    prompt = tok(core.prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[tok.bos_token_id, *word, *prompt]])
    prefix = table.weight[word][None]  # [1, 1, 640], the raw row
    with torch.no_grad():
        expected = lm(input_ids=ids).logits[0, 1:]
        got = lm(inputs_embeds=core._context(lm, prefix)).logits[0, 1:]
        core.embed_scale = lambda lm: 1.0
        try:
            unscaled = lm(inputs_embeds=core._context(lm, prefix)).logits[0, 1:]
        finally:
            del core.embed_scale
    spread = float(expected.std())
    assert float((got - expected).abs().max()) < 1e-3 * spread, float((got - expected).abs().max())
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    assert float((unscaled - expected).abs().max()) > 0.1 * spread


def test_greedy_captions_lose_gemmas_control_tokens(core) -> None:
    """What README's caption tables showed: ``<start_of_image>`` repeated inside greedy captions."""
    from align.methods.vlap.aligner import decode_captions

    table = core.table
    image = table.tokens.index("<start_of_image>")
    words = table.encode_ids(" a dog on a boat")
    newline = table.tokens.index("\n")
    out = torch.tensor([[*words[:2], image, image, *words[2:], newline, image]])
    assert "<start_of_image>" in table.tokenizer.decode(out[0], skip_special_tokens=True)  # the old decoding
    assert decode_captions(table, out) == ["a dog on a boat"]
