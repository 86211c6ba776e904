"""The MLM head trained for a masked LM that ships without one (:mod:`align.text.mlm_head`), on the toy
masked table: BERT's masking, a head that learns, a cache keyed by everything and never trusted blindly."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

import align.text  # noqa: F401  (registers the toy tables)
from align.registry import EMBEDDING_TABLES
from align.text import mlm_head as M

TINY = M.HeadSettings(steps=80, batch_size=16, seq_len=16, lr=3e-2, warmup=5, eval_fraction=0.25)
PAIRS = {"cat": "red", "dog": "blue", "bird": "green", "fish": "yellow", "horse": "black", "cow": "white"}


@pytest.fixture(scope="module")
def table():
    return EMBEDDING_TABLES.create("toy:table-masked")


def planted_docs(n_docs: int = 8, per_doc: int = 40) -> dict[str, str]:
    """Sentences "the <animal> is <its colour> ." over the toy vocabulary: each colour follows from its animal."""
    animals = list(PAIRS)
    docs = {}
    for d in range(n_docs):
        chosen = [animals[(d * 7 + i * 5) % len(animals)] for i in range(per_doc)]
        sentences = [f"the {animal} is {PAIRS[animal]} ." for animal in chosen]
        docs[f"doc{d}"] = " ".join(sentences)
    return docs


def test_pydoc_topics_ship_with_python_and_the_split_holds_out_whole_topics() -> None:
    docs = M.python_docs()
    assert len(docs) > 50 and sum(map(len, docs.values())) > 100_000
    train, held = M.split_documents(docs, 0.1)
    assert not set(train) & set(held) and set(train) | set(held) == set(docs)
    assert len(held) == round(0.1 * len(docs))
    assert M.split_documents(dict(reversed(list(docs.items()))), 0.1) == (train, held)  # order-free
    lines = [line.strip() for text in docs.values() for line in text.splitlines()]
    assert not [line for line in lines if line and set(line) <= set("-+=*~^#")]  # no heading rules or borders
    assert "The \"assert\" statement" in docs["assert"]


def test_chunks_are_wrapped_in_cls_and_sep_and_padded(table) -> None:
    chunks = M.chunk_ids(table, ["the cat is red . " * 10], seq_len=8)
    tok = table.tokenizer
    assert chunks.shape[1] == 8 and (chunks[:, 0] == tok.cls_token_id).all()
    for row in chunks.tolist():
        body = [i for i in row if i != tok.pad_token_id]
        assert body[-1] == tok.sep_token_id and len(body) <= 8
    assert sum(int((r != tok.pad_token_id).sum()) - 2 for r in chunks) == 50  # every token once


def test_masking_follows_80_10_10_and_never_masks_special_tokens(table) -> None:
    tok = table.tokenizer
    words = torch.tensor(table.word_ids)
    gen = torch.Generator().manual_seed(0)
    body = words[torch.randint(len(words), (4000, 50), generator=gen)]
    ids = torch.cat([torch.full((4000, 1), tok.cls_token_id), body, torch.full((4000, 1), tok.sep_token_id),
                     torch.full((4000, 5), tok.pad_token_id), torch.full((4000, 2), tok.unk_token_id)], dim=1)
    maskable = M.maskable_rows(table)
    inputs, labels = M.bert_mask(ids, maskable, tok.mask_token_id, 0.15, torch.Generator().manual_seed(1))
    selected = labels != M.IGNORE
    special = ~maskable[ids]
    assert not (selected & special).any() and torch.equal(inputs[special], ids[special])
    assert torch.equal(labels[selected], ids[selected]) and torch.equal(inputs[~selected], ids[~selected])
    assert float(selected[:, 1:51].float().mean()) == pytest.approx(0.15, abs=0.003)
    n = int(selected.sum())
    as_mask = int((inputs[selected] == tok.mask_token_id).sum()) / n
    kept = int((inputs[selected] == ids[selected]).sum()) / n
    swapped = 1 - as_mask - kept
    assert as_mask == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1 + 0.1 / len(words), abs=0.01)  # a random word may be the same word
    assert swapped == pytest.approx(0.1, abs=0.01)
    assert maskable[inputs[selected & (inputs != tok.mask_token_id)]].all()  # random words are words


def test_training_lowers_the_held_out_loss_below_the_untrained_head(table, tmp_path: Path) -> None:
    docs = planted_docs()
    head, info = M.pretrained_head(table, TINY, docs=docs, root=tmp_path)
    assert not info["cached"] and Path(info["path"]).is_file()
    train_names, held_names = M.split_documents(docs, TINY.eval_fraction)
    held = M.chunk_ids(table, [docs[n] for n in held_names], TINY.seq_len)
    train = M.chunk_ids(table, [docs[n] for n in train_names], TINY.seq_len)
    masked = M.fixed_mask(table, held)
    lm, pad = table.load_lm(), table.tokenizer.pad_token_id
    trained = M.score_head(head, lm, masked, pad)
    untrained = M.score_head(M.new_head(lm, TINY.seed), lm, masked, pad)
    unigram = M.score_unigram(table, train, masked)
    assert trained["positions"] == untrained["positions"] == unigram["positions"] > 50
    assert trained["cross_entropy"] < 0.5 * untrained["cross_entropy"]
    assert trained["cross_entropy"] < unigram["cross_entropy"]  # it reads the context, not only frequencies


def test_the_frozen_lm_is_not_trained(table, tmp_path: Path) -> None:
    lm = table.load_lm()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    flags = [p.requires_grad for p in lm.parameters()]
    M.pretrained_head(table, dataclasses.replace(TINY, steps=3), docs=planted_docs(), root=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())
    assert flags == [p.requires_grad for p in lm.parameters()]


def test_the_head_drops_into_bert_for_masked_lm(table) -> None:
    """Its parameter names are ``cls.predictions``': how LQAE's ``mlm_transform``/``mlm_bias`` would take it."""
    lm = table.load_lm()
    head = M.new_head(lm, seed=3)
    with torch.no_grad():
        head.bias.normal_()
    predictions = copy.deepcopy(lm.cls.predictions)
    predictions.transform.load_state_dict(head.transform.state_dict())
    predictions.bias.data.copy_(head.bias)
    states = torch.randn(5, table.embed_dim)
    expected = predictions.transform(states) @ lm.get_input_embeddings().weight.T + predictions.bias
    assert torch.allclose(head(states), expected, atol=1e-5)


def test_the_cache_key_changes_with_every_setting_the_corpus_and_the_weights(table) -> None:
    lm = table.load_lm()
    train = M.chunk_ids(table, list(planted_docs().values()), 16)
    base = M.head_key(table, lm, train, TINY)
    keys = [base]
    for field in dataclasses.fields(M.HeadSettings):
        value = getattr(TINY, field.name)
        changed = value / 2 if isinstance(value, float) else value + 1
        keys.append(M.head_key(table, lm, train, dataclasses.replace(TINY, **{field.name: changed})))
    keys.append(M.head_key(table, lm, train[:-1], TINY))
    other = EMBEDDING_TABLES.create("toy:table-masked", seed=1)
    keys.append(M.head_key(other, other.load_lm(), train, TINY))
    paths = {M.cache_path(k, Path("/cache")) for k in keys}
    assert len(paths) == len(keys)
    assert M.head_key(table, lm, train.clone(), TINY) == base  # and nothing else moves it


def _damage(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF  # a byte of tensor data
    path.write_bytes(bytes(blob))


def test_a_cached_head_is_reused_and_a_damaged_or_foreign_file_is_retrained(table, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    settings, docs = dataclasses.replace(TINY, steps=4), planted_docs()
    first, info = M.pretrained_head(table, settings, docs=docs, root=tmp_path)
    path = Path(info["path"])
    again, info2 = M.pretrained_head(table, settings, docs=docs, root=tmp_path)
    assert info2["cached"] and all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                                        again.state_dict().values()))

    import pickle

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the cache must never unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    for damage in (_damage, lambda p: torch.save(first.state_dict(), p), lambda p: p.write_bytes(b"")):
        damage(path)
        rebuilt, info3 = M.pretrained_head(table, settings, docs=docs, root=tmp_path)
        assert not info3["cached"]
        assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), rebuilt.state_dict().values()))
        assert M.pretrained_head(table, settings, docs=docs, root=tmp_path)[1]["cached"]  # intact again

    # a head trained under another key, copied to this key's name, is not used
    other = dataclasses.replace(settings, seed=1)
    _, info4 = M.pretrained_head(table, other, docs=docs, root=tmp_path)
    path.write_bytes(Path(info4["path"]).read_bytes())
    assert not M.pretrained_head(table, settings, docs=docs, root=tmp_path)[1]["cached"]


def test_training_is_reproducible_from_the_seed(table, tmp_path: Path) -> None:
    settings, docs = dataclasses.replace(TINY, steps=5), planted_docs()
    a, _ = M.pretrained_head(table, settings, docs=docs, root=tmp_path / "a")
    b, _ = M.pretrained_head(table, settings, docs=docs, root=tmp_path / "b")
    c, _ = M.pretrained_head(table, dataclasses.replace(settings, seed=2), docs=docs, root=tmp_path / "c")
    pairs = list(zip(a.state_dict().values(), b.state_dict().values()))
    assert all(torch.equal(x, y) for x, y in pairs)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
