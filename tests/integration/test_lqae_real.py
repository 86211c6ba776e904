"""LQAE on the real frozen parts: MiniLM's 30,522-row WordPiece table and 6-layer BERT, Fashion-MNIST."""

from __future__ import annotations

import pytest
import torch

from conftest import need_asset

pytestmark = pytest.mark.integration


def test_lqae_on_minilm_writes_fashion_mnist_as_wordpiece_tokens() -> None:
    need_asset("all-minilm-l6-v2")
    need_asset("fashion-mnist")
    import align.data  # noqa: F401
    import align.text  # noqa: F401
    from align.methods.lqae.aligner import LQAE, load_table
    from align.data.pixels import images_tensor
    from align.registry import DATASETS

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = images_tensor(DATASETS.create("fashion_mnist").load("train@64"), size=32, channels=1)
        assert images.shape == (64, 1, 32, 32) and images[:, :, :2].abs().sum() == 0  # 28 px padded with black
        model = LQAE(encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
                     decoder_heads=2, max_epochs=2, batch_size=32).fit_images(images)
    finally:
        torch.set_num_threads(threads)
    table = load_table("hf:sentence-transformers/all-MiniLM-L6-v2")
    assert table.vocab_size == 30522 and table.embed_dim == 384
    codes = model.codes(images[:8])
    assert codes.shape == (8, 16) and codes.max() < 30522
    assert not set(codes.flatten().tolist()) & set(table.special_ids)  # no [CLS], [MASK], [unusedN], ...
    strings = model.token_strings(images[:8])
    assert all(s and "[" not in s for s in strings)  # real WordPiece words, no special tokens
    assert model.history["lm"][0] > 0 and model.history["rec"][-1] < model.history["rec"][0]
    assert model.features(images[:4])["bert"].shape == (4, 7 * 384)  # embeddings + 6 layers
