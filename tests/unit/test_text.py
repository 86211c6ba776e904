"""Text encoders and embedding tables, on the tiny random toy parts (no weights, no network)."""

from __future__ import annotations

import math

import pytest
import torch

from align.errors import BadInputError
from align.registry import EMBEDDING_TABLES, TEXT_ENCODERS
from align.text import EmbeddingTable, TextEncoder

TEXTS = ["a photo of a cat", "a kitten", "a red truck!", "Two dogs playing in the snow"]
TINY_CLIP = "open_clip:align-tiny-clip"  # random 32-d CLIP from align/encoders/configs
ENCODERS = [*TEXT_ENCODERS.list("toy:*"), TINY_CLIP]
TABLES = EMBEDDING_TABLES.list("toy:*")


def test_toys_are_registered() -> None:
    assert TEXT_ENCODERS.list("toy:*") == ["toy:text"]
    assert TABLES == ["toy:table-causal", "toy:table-masked"]


@pytest.fixture(scope="module", params=ENCODERS)
def encoder(request: pytest.FixtureRequest) -> TextEncoder:
    return TEXT_ENCODERS.create(request.param)


@pytest.fixture(scope="module", params=TABLES)
def table(request: pytest.FixtureRequest) -> EmbeddingTable:
    return EMBEDDING_TABLES.create(request.param)


# ---- sentence encoders ---------------------------------------------------------------------------

def test_encoder_shape_dtype_and_norm(encoder: TextEncoder) -> None:
    out = encoder.encode_text(TEXTS)
    assert out.shape == (len(TEXTS), encoder.embed_dim)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
    assert TEXT_ENCODERS.meta(encoder.name).embed_dim in (None, encoder.embed_dim)


def test_encoder_is_deterministic_and_batch_independent(encoder: TextEncoder) -> None:
    full = encoder.encode_text(TEXTS)
    again = TEXT_ENCODERS.create(encoder.name).encode_text(TEXTS, batch_size=1)
    assert torch.allclose(full, again, atol=1e-6)
    assert torch.allclose(encoder(TEXTS[:1]), full[:1], atol=1e-6)


def test_encoder_related_texts_are_closer() -> None:
    out = TEXT_ENCODERS.create("toy:text").encode_text(["a photo of a cat", "a photo of cats", "red truck"])
    assert out[0] @ out[1] > out[0] @ out[2]


def test_encoder_without_normalisation() -> None:
    out = TEXT_ENCODERS.create("toy:text", normalize=False).encode_text(TEXTS)
    assert not torch.allclose(out.norm(dim=-1), torch.ones(len(TEXTS)))


def test_encoder_seed_changes_weights() -> None:
    a = TEXT_ENCODERS.create("toy:text", seed=0).encode_text(TEXTS)
    b = TEXT_ENCODERS.create("toy:text", seed=1).encode_text(TEXTS)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("bad", [[], [""], ["ok", "   "], "a bare string", [3]])
def test_encoder_rejects_empty_input(encoder: TextEncoder, bad: object) -> None:
    with pytest.raises(BadInputError) as err:
        encoder.encode_text(bad)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_open_clip_text_tower_shares_the_image_towers_model() -> None:
    from align.registry import VISION_ENCODERS

    text = TEXT_ENCODERS.create(TINY_CLIP)
    image = VISION_ENCODERS.create(TINY_CLIP)
    assert text.embed_dim == image.embed_dim == 32
    assert text.model.visual is image.visual
    assert not TEXT_ENCODERS.create(TINY_CLIP, normalize=False).encode_text(TEXTS).norm(dim=-1).allclose(
        torch.ones(len(TEXTS)))


def test_open_clip_missing_weights_file_is_one_line() -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        TEXT_ENCODERS.create(TINY_CLIP, pretrained="/nonexistent/weights.pt")


# ---- embedding tables ----------------------------------------------------------------------------

def test_table_shapes_and_tokens(table: EmbeddingTable) -> None:
    assert table.weight.dtype == torch.float32 and table.weight.ndim == 2
    assert torch.isfinite(table.weight).all()
    assert len(table.tokens) == table.vocab_size == 1000
    assert table.embed_dim == EMBEDDING_TABLES.meta(table.name).embed_dim == 32
    assert table.special_ids and all(0 <= i < table.vocab_size for i in table.special_ids)
    assert set(table.tokenizer.all_special_ids) <= set(table.special_ids)
    assert len(table.word_ids) == table.vocab_size - len(table.special_ids)
    assert "cat" in table.tokens


def test_table_is_deterministic(table: EmbeddingTable) -> None:
    again = EMBEDDING_TABLES.create(table.name)
    assert torch.equal(table.weight, again.weight) and table.tokens == again.tokens
    other = EMBEDDING_TABLES.create(table.name, seed=1)
    assert not torch.equal(table.weight, other.weight)


def test_table_rows_match_tokenizer(table: EmbeddingTable) -> None:
    ids = table.encode_ids("a photo of a cat")
    assert [table.tokens[i] for i in ids] == ["a", "photo", "of", "a", "cat"]
    assert not set(ids) & set(table.special_ids)


def test_table_is_the_lm_input_embedding(table: EmbeddingTable) -> None:
    lm = table.load_lm()
    assert lm is table.load_lm()  # built once
    assert torch.equal(lm.get_input_embeddings().weight, table.weight)
    assert table.lm_kind in ("masked", "causal")


def test_masked_lm_loss_is_finite() -> None:
    table = EMBEDDING_TABLES.create("toy:table-masked")
    assert table.lm_kind == "masked"
    batch = table.tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = batch["input_ids"].clone()
    masked = batch["input_ids"].clone()
    masked[:, 2] = table.tokenizer.mask_token_id
    labels[batch["attention_mask"] == 0] = -100
    out = table.load_lm()(input_ids=masked, attention_mask=batch["attention_mask"], labels=labels)
    assert out.logits.shape == (*masked.shape, table.vocab_size)
    assert math.isfinite(out.loss.item())


def test_causal_lm_generates_new_tokens() -> None:
    table = EMBEDDING_TABLES.create("toy:table-causal")
    assert table.lm_kind == "causal"
    batch = table.tokenizer(["a photo of"], return_tensors="pt")
    assert batch["input_ids"][0, 0] == table.tokenizer.bos_token_id
    with torch.no_grad():
        out = table.load_lm().generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, batch["input_ids"].shape[1] + 4)
    assert torch.equal(out[0, : batch["input_ids"].shape[1]], batch["input_ids"][0])


def test_table_without_lm_or_tokenizer() -> None:
    table = EmbeddingTable("x:y", torch.zeros(3, 2), ["a", "b", "c"])
    with pytest.raises(NotImplementedError):
        table.load_lm()
    with pytest.raises(NotImplementedError):
        table.encode_ids("a")


def test_table_validates_its_parts() -> None:
    with pytest.raises(ValueError, match="tokens"):
        EmbeddingTable("x:y", torch.zeros(3, 2), ["a", "b"])
    with pytest.raises(ValueError, match="lm_kind"):
        EmbeddingTable("x:y", torch.zeros(1, 2), ["a"], lm_kind="seq2seq")


def test_lazy_tokenizer_is_built_once() -> None:
    calls = []
    table = EmbeddingTable("x:y", torch.zeros(2, 2), ["a", "b"],
                           tokenizer_loader=lambda: calls.append(1) or (lambda t, **_: {"input_ids": [1]}))
    assert calls == []
    assert table.encode_ids("b") == [1] and table.encode_ids("b") == [1]
    assert calls == [1]


# ---- real parts fail in one line when their weights are absent ----------------------------------

@pytest.mark.parametrize(("registry", "name"), [
    (TEXT_ENCODERS, "hf:sentence-transformers/all-MiniLM-L6-v2"),
    (EMBEDDING_TABLES, "gguf:gemma-3-270m.q4_k_m"),
    (EMBEDDING_TABLES, "spacy:en_core_web_md"),
])
def test_missing_asset_names_the_pull_command(registry, name, isolated_home) -> None:
    from align.errors import AssetMissingError

    with pytest.raises(AssetMissingError, match="align assets pull"):
        registry.create(name)


def test_real_parts_carry_metadata() -> None:
    assert TEXT_ENCODERS.meta("hf:sentence-transformers/all-MiniLM-L6-v2").embed_dim == 384
    assert TEXT_ENCODERS.meta("hf:sentence-transformers/all-mpnet-base-v2").embed_dim == 768
    assert EMBEDDING_TABLES.meta("gguf:gemma-3-270m.q4_k_m").weights == "gemma-3-270m.q4_k_m"
    assert EMBEDDING_TABLES.meta("spacy:en_core_web_md").embed_dim == 300
    assert EMBEDDING_TABLES.meta("hf:some-org/some-model").source == "hf"  # open-ended source
