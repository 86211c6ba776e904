"""LQAE's causal-LM path on the real Gemma-3 270M (the table benchmarks/lqae_study.py uses): code rows fed
the way LQAE feeds them are read by the LM exactly as the same tokens fed as ids after ``<bos>``, and the
searchable rows of ``codebook_rows="words"`` (1024, as the study) are whole English words, never a
control token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from conftest import need_asset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GEMMA = "gguf:gemma-3-270m.q4_k_m"
WORDS = 8  # tokens of the probe sequence


@pytest.fixture(scope="module")
def core() -> Iterator[Any]:
    need_asset("gemma-3-270m.q4_k_m")
    from align.methods.lqae.aligner import LQAECore

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # ~1 min: transformers dequantises the whole GGUF; a tiny encoder and decoder beside it
        yield LQAECore(table=GEMMA, codebook_rows="words", codebook_size=1024, image_size=32, patch_size=8,
                       encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
                       decoder_heads=2)
    finally:
        torch.set_num_threads(threads)


def _spread_ids(core: Any) -> list[int]:
    """A few searchable rows spread over the frequency ranks (a probe sequence of whole words)."""
    return [int(i) for i in core.search_ids[torch.linspace(0, 1023, WORDS).long()]]


def test_codes_are_read_as_their_token_ids_after_bos(core: Any) -> None:
    """Feeding code rows through ``run_lm`` (raw table rows, as the quantizer hands them on) equals
    feeding ``[<bos>, ids]`` as ids: the same hidden state at every code's position, and the same
    next-code logits over the searchable rows. Protects against a missing or misplaced ``<bos>``, a
    missing or doubled sqrt(640) input scale (Gemma applies it inside its embedding module, which
    ``inputs_embeds`` bypasses) and an off-by-one between the states the decoder reads and the ones
    that predict."""
    lm, table = core.lm(), core.table
    assert core.lm_kind == "causal" and core.bos_id == table.tokenizer.bos_token_id
    assert core.input_scale == pytest.approx(640 ** 0.5, rel=1e-3)
    assert torch.equal(core.quantizer.codebook, lm.get_input_embeddings().weight.float())  # the codes' rows
    ids = _spread_ids(core)
    rows = core.quantizer.codebook[torch.tensor(ids)][None]  # [1, T, 640] raw rows, as FrozenCodebookQuantizer
    with torch.no_grad():
        run = core.run_lm(rows)
        out = lm(input_ids=torch.tensor([[core.bos_id, *ids]]), output_hidden_states=True)
        states = out.hidden_states[-1]
        spread = float(states.std())
        assert float((run.states - states[:, 1:]).abs().max()) < 1e-3 * spread  # each code's own position
        assert float((run.predict - states[:, :-1]).abs().max()) < 1e-3 * spread  # code i from position i - 1
        logits = out.logits[:, :-1, core.search_ids]
        assert torch.allclose(core.lm_logits(run.predict), logits, atol=1e-3 * float(logits.std()))
        no_bos = lm(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
        assert float((run.states - no_bos).abs().max()) > 0.1 * spread  # <bos> matters: the check can fail
        core.input_scale, scale = 1.0, core.input_scale
        try:
            unscaled = core.run_lm(rows).states
        finally:
            core.input_scale = scale
        assert float((unscaled - states[:, 1:]).abs().max()) > 0.1 * spread  # so does the scale


def test_searchable_rows_are_whole_words_and_never_special(core: Any) -> None:
    """The 1024 ``codebook_rows="words"`` rows: distinct, each a word-initial SentencePiece piece that is
    alphabetic, that the tokenizer writes back as exactly that row, and none a special or control token
    (``<mask>``, ``<unk>``, ``<start_of_image>``, ``<unusedN>``, ...); codes of any encoder output stay
    within them. Protects against a codebook that lets images be written in control tokens or word pieces."""
    table = core.table
    ids = core.search_ids.tolist()
    assert len(ids) == len(set(ids)) == 1024 == core.quantizer.num_codes
    tokens = [table.tokens[i] for i in ids]
    assert not [t for t in tokens if not (t.startswith("▁") and t[1:].isalpha())]
    assert len({t.lower() for t in tokens}) == 1024
    special = set(table.special_ids) | set(table.tokenizer.all_special_ids)
    assert not set(ids) & special
    controls = [i for i, t in enumerate(table.tokens) if t.startswith("<") and t.endswith(">")]
    assert len(controls) > 100 and not set(ids) & set(controls)  # Gemma's <unusedN>, <start_of_image>, ...
    assert core.bos_id not in ids and table.tokenizer.convert_tokens_to_ids("<mask>") not in ids
    assert [table.encode_ids(" " + t[1:]) for t in tokens] == [[i] for i in ids]  # a whole word, one row
    z = torch.randn(64, 16, table.embed_dim, generator=torch.Generator().manual_seed(0))
    assert set(core.quantize(z).codes.flatten().tolist()) <= set(ids)
