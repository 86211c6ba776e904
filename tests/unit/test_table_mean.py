"""``table:<name>`` text encoders: the mean raw word embedding of a text's non-special tokens."""

from __future__ import annotations

import torch

from align.registry import EMBEDDING_TABLES, TEXT_ENCODERS


def test_mean_of_rows_by_hand_and_special_tokens_skipped() -> None:
    table = EMBEDDING_TABLES.create("toy:table-causal")
    encoder = TEXT_ENCODERS.create("table:toy:table-causal")
    ids = table.encode_ids("a red apple")
    assert encoder.name == "table:toy:table-causal" and encoder.embed_dim == table.embed_dim
    expected = table.weight[ids].mean(0)
    assert torch.allclose(encoder.encode_text(["a red apple"])[0], expected, atol=1e-6)
    special = table.special_ids[0]
    token = table.tokens[special]
    with_special = encoder.encode_text([f"{token} a red apple"])[0]
    assert table.encode_ids(f"{token} a red apple")[0] == special  # the tokenizer keeps it as one row
    assert torch.allclose(with_special, expected, atol=1e-6)


def test_batches_agree_with_single_texts() -> None:
    encoder = TEXT_ENCODERS.create("table:toy:table-causal")
    texts = ["a cat", "two red dogs and a bird", "moon"]
    together = encoder.encode_text(texts, batch_size=2)
    alone = torch.cat([encoder.encode_text([t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-6)


def test_packaged_gemma_entry_names_its_asset() -> None:
    meta = TEXT_ENCODERS.meta("table:gguf:gemma-3-270m.q4_k_m")
    assert meta.weights == "gemma-3-270m.q4_k_m" and meta.embed_dim == 640
