"""Codebook-VLP on the real MiniLM weights and MobileNetV2 tokens (pulled by `align assets pull`)."""

from __future__ import annotations

import pytest
import torch
from conftest import need_asset

from align.methods.codebook_vlp.aligner import CodebookVLPAligner, CodebookVLPCore, load_table, tokenize
from align.methods.codebook_vlp.layers import TextEncoder, bert_shape

pytestmark = pytest.mark.integration

MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
CAPTIONS = ["red apple", "grinning face with big eyes", "flag: united kingdom", "a photo of a cat"]


def test_text_tower_reproduces_minilm_exactly() -> None:
    """All six MiniLM layers copied into the hand-written BERT blocks give MiniLM's own hidden states,
    so the first one or two layers that Codebook-VLP starts from are MiniLM's, not an approximation."""
    need_asset("all-minilm-l6-v2")
    table = load_table(MINILM)
    lm = table.load_lm()
    shape = bert_shape(lm)
    tower = TextEncoder(table.vocab_size, shape["width"], shape["heads"], shape["ffn"], shape["layers"],
                        shape["positions"], lm).eval()
    ids, mask = tokenize(table, CAPTIONS, 32)
    with torch.no_grad():
        ours = tower(ids, mask)
        theirs = lm.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(ours[real], theirs[real], atol=1e-4), (ours[real] - theirs[real]).abs().max()


def test_model_starts_from_minilm_layers_and_keeps_words_frozen() -> None:
    need_asset("all-minilm-l6-v2")
    lm = load_table(MINILM).load_lm()
    torch.manual_seed(0)
    core = CodebookVLPCore(1280, 49, MINILM, text_layers=1, fusion_layers=1)
    layers = lm.bert.encoder.layer
    assert torch.equal(core.text_encoder.blocks[0].attn.query.weight, layers[0].attention.self.query.weight)
    assert torch.equal(core.fusion.blocks[0].fc1.weight, layers[1].intermediate.dense.weight)  # next layer
    assert not core.text_encoder.words.weight.requires_grad


def test_fit_on_mobilenet_tokens_of_emoji() -> None:
    """One short epoch on real tokens of a few emoji: finite losses, codes used, embeddings normalised."""
    need_asset("mobilenet_v2.imagenet1k_v1")
    need_asset("emoji-google")
    need_asset("all-minilm-l6-v2")
    from align.registry import DATASETS, VISION_ENCODERS

    split = DATASETS.create("emoji").load("anchors@48")
    encoder = VISION_ENCODERS.create("torchvision:mobilenet_v2.imagenet1k_v1")
    with torch.inference_mode():
        tokens = encoder.forward_tokens(torch.stack([encoder.preprocess(split.load_image(i))
                                                     for i in range(split.num_items)])).float().clone()
    assert tokens.shape == (48, 49, 1280)
    captions = [caps[0] for caps in split.captions]
    aligner = CodebookVLPAligner(max_epochs=1, batch_size=16, seed=0).fit_captions(tokens, captions)
    for key in ("itc", "itm", "mlm", "vq", "mim"):
        assert len(aligner.history[key]) == 1 and 0 < aligner.history[key][0] < float("inf")
    image, text = aligner.encode_image(tokens), aligner.encode_text_strings(captions)
    assert torch.allclose(image.norm(dim=1), torch.ones(48), atol=1e-5)
    assert text.shape == image.shape
    assert aligner.code_usage(tokens)["used_codes"] > 1


def test_the_shallow_heads_text_side_is_minilm_cut_after_its_first_layers() -> None:
    """The study's shallow baseline reads the arms' own text tower (benchmarks/_codebook_vlp_baseline.py); with
    all six layers its mean-pooled states are MiniLM's sentence embedding, so the two linear heads of the study
    differ only in how many pretrained layers their text side reads."""
    need_asset("all-minilm-l6-v2")
    import sys
    from pathlib import Path

    import yaml

    from align.registry import TEXT_ENCODERS

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import _codebook_vlp_baseline as baseline
    finally:
        sys.path.remove(str(root / "benchmarks"))
    hparams = yaml.safe_load((root / "configs" / "codebook_vlp" / "full.yaml").read_text())["hparams"]
    sentence = TEXT_ENCODERS.create(MINILM).encode_text(CAPTIONS)
    assert torch.allclose(baseline.first_layers_embedder(hparams, layers=6)(CAPTIONS), sentence, atol=1e-5)
    first = baseline.first_layers_embedder(hparams)(CAPTIONS)  # the arms' text_layers (1)
    assert first.shape == sentence.shape and not torch.allclose(first, sentence, atol=1e-2)
    assert torch.allclose(first.norm(dim=1), torch.ones(len(CAPTIONS)))
