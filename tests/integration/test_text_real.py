"""Text encoders and embedding tables on the real packaged weights (pulled by `align assets pull`).

Each asset is loaded once per module. Without the asset a test skips naming the pull command (and
fails under `make test` / CI, see tests/conftest.py).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import need_asset

from align.registry import EMBEDDING_TABLES, TEXT_ENCODERS

pytestmark = pytest.mark.integration

MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
MPNET = "hf:sentence-transformers/all-mpnet-base-v2"
GEMMA = "gguf:gemma-3-270m.q4_k_m"
SPACY = "spacy:en_core_web_md"


def _cos_ordering(encoder) -> tuple[float, float]:
    cat, kitten, truck = encoder.encode_text(["a photo of a cat", "a kitten", "a truck"])
    return float(cat @ kitten), float(cat @ truck)


# ---- sentence encoders ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "asset", "dim"), [(MINILM, "all-minilm-l6-v2", 384),
                                                    (MPNET, "all-mpnet-base-v2", 768)])
def test_sentence_encoder(name: str, asset: str, dim: int) -> None:
    need_asset(asset)
    encoder = TEXT_ENCODERS.create(name, device="cpu")
    assert encoder.embed_dim == dim == TEXT_ENCODERS.meta(name).embed_dim
    out = encoder.encode_text(["a photo of a cat", "a kitten", "a truck"], batch_size=2)
    assert out.shape == (3, dim) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    kitten, truck = _cos_ordering(encoder)
    assert kitten > truck + 0.2, (kitten, truck)


def test_generic_hf_source_loads_a_local_folder() -> None:
    root = need_asset("all-minilm-l6-v2")
    snapshot = next((root / "snapshots").iterdir())
    encoder = TEXT_ENCODERS.create(f"hf:{snapshot}", device="cpu")
    packaged = TEXT_ENCODERS.create(MINILM, device="cpu")
    texts = ["a photo of a cat", "a truck"]
    assert torch.allclose(encoder.encode_text(texts), packaged.encode_text(texts), atol=1e-5)


# ---- BERT WordPiece table of MiniLM --------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_table():
    need_asset("all-minilm-l6-v2")
    return EMBEDDING_TABLES.create(MINILM)


def test_minilm_table_is_the_bert_input_embedding(minilm_table) -> None:
    from transformers import AutoModel

    from align.assets import hf_hub_cache

    table = minilm_table
    assert (table.vocab_size, table.embed_dim) == (30522, 384)
    assert len(table.tokens) == 30522 and table.lm_kind == "masked"
    cat = table.tokenizer.convert_tokens_to_ids("cat")
    assert table.tokens[cat] == "cat" and table.encode_ids("cat") == [cat]
    bert = AutoModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2", cache_dir=str(hf_hub_cache()))
    assert torch.equal(table.weight[cat], bert.get_input_embeddings().weight[cat].detach())
    special = set(table.special_ids)
    assert set(table.tokenizer.all_special_ids) <= special
    assert table.tokens.index("[unused0]") in special and cat not in special


def test_minilm_masked_lm_has_tied_decoder(minilm_table) -> None:
    lm = minilm_table.load_lm()
    assert type(lm).__name__ == "BertForMaskedLM"
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    assert torch.equal(lm.get_input_embeddings().weight, minilm_table.weight)
    batch = minilm_table.tokenizer(["a photo of a [MASK]."], return_tensors="pt")
    with torch.no_grad():
        out = lm(**batch, labels=batch["input_ids"])
    assert out.logits.shape[-1] == 30522 and math.isfinite(out.loss.item())


def test_mpnet_table() -> None:
    need_asset("all-mpnet-base-v2")
    table = EMBEDDING_TABLES.create(MPNET)
    assert (table.vocab_size, table.embed_dim) == (30527, 768)
    assert [table.tokens[i] for i in table.encode_ids("a photo of a cat")] == ["a", "photo", "of", "a", "cat"]


# ---- spaCy static vectors ------------------------------------------------------------------------

def test_spacy_table() -> None:
    need_asset("spacy-en-core-web-md")
    table = EMBEDDING_TABLES.create(SPACY)
    assert (table.vocab_size, table.embed_dim) == (20000, 300)
    assert table.lm_kind is None and len(table.tokens) == 20000
    cat, kitten = table.encode_ids("cat kitten")
    assert table.tokens[cat] == "cat"  # the row's own word represents it, not a word remapped onto it
    assert cat == kitten  # pruned vectors: kitten shares cat's row
    vector = table.tokenizer.nlp.vocab["cat"].vector
    assert torch.allclose(table.weight[cat], torch.from_numpy(vector))
    assert table.tokens[:4] == ["</s>", ".", ",", "the"] and table.special_ids == [0]


# ---- Gemma-3 270M from GGUF ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma_table():
    need_asset("gemma-3-270m.q4_k_m")
    return EMBEDDING_TABLES.create(GEMMA)


@pytest.mark.slow
def test_gemma_table(gemma_table) -> None:
    table = gemma_table
    assert (table.vocab_size, table.embed_dim) == (262144, 640)
    assert table.weight.dtype == torch.float32 and torch.isfinite(table.weight).all()
    assert "▁cat" in table.tokens and table.tokens[:3] == ["<pad>", "<eos>", "<bos>"]
    special = set(table.special_ids)
    assert {0, 1, 2, 3} <= special and table.tokens.index("▁cat") not in special
    assert table.lm_kind == "causal"


@pytest.mark.slow
def test_gemma_causal_lm_generates(gemma_table) -> None:
    lm = gemma_table.load_lm()  # ~40 s: transformers dequantises the whole GGUF
    tokenizer = gemma_table.tokenizer  # ~17 s: SentencePiece converted from the GGUF
    # the table is the raw matrix; Gemma scales it by sqrt(640) inside the embedding module
    assert torch.equal(lm.get_input_embeddings().weight, gemma_table.weight)
    assert [gemma_table.tokens[i] for i in gemma_table.encode_ids(" cat")] == ["▁cat"]

    batch = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = lm.generate(**batch, max_new_tokens=6, do_sample=False)
        loss = lm(**tokenizer("The capital of France is Paris.", return_tensors="pt"),
                  labels=tokenizer("The capital of France is Paris.", return_tensors="pt")["input_ids"]).loss
    new = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > batch["input_ids"].shape[1] and any(c.isalpha() for c in new), new
    assert loss.item() < 6.0, loss.item()  # a real model; uniform guessing would be ln(262144) = 12.5


def test_packaged_encoder_makes_no_hub_lookup_even_without_the_offline_variable() -> None:
    """``local_files_only`` alone still resolved huggingface.co; the code path must go offline itself."""
    import os
    import subprocess
    import sys

    need_asset("all-minilm-l6-v2")
    code = (
        "import socket\n"
        "calls = []\n"
        "def spy(host, *a, **k):\n"
        "    calls.append(host)\n"
        "    raise OSError('no network')\n"
        "socket.getaddrinfo = spy\n"
        "from align.registry import TEXT_ENCODERS\n"
        f"encoder = TEXT_ENCODERS.create({MINILM!r})\n"
        "encoder.encode_text(['a cat'])\n"
        "print('LOOKUPS', calls)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert "LOOKUPS []" in out.stdout, out.stdout + out.stderr[-2000:]
