"""VLAP checks that can fail (issue 30): no validation row reaches the fit statistics, the caption loss is
the LM's own NLL, the uniform prior at the caption prior's support, greedy captions without control
tokens, and caption-only VLAP naming held-out words through a tiny LM pre-trained in the test to copy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from align.methods.framework.data import split_rows
from align.methods.vlap.aligner import PROMPT, VLAPAligner, VLAPCore, load_table, tokenize_captions
from align.methods.vlap.vocabulary import caption_tokens, row_prior, vocabulary
from align.text.table_mean import special_mask
from align.text.tables import table_from_lm
from align.text.toy import toy_gemma_table
from registered_tables import registered_tables  # tests/unit/registered_tables.py

TABLE = "toy:table-causal"  # WordPiece Llama toy
GEMMA = "test:vlap-gemma"  # tiny random Gemma-3: embeddings scaled by sqrt(32) inside the LM
COPY = "test:vlap-copy"  # the same, pre-trained below to copy a word across the prompt
COPY_WORDS = 64
COPY_SEED = 0

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _copy_words(table) -> list[int]:
    """The first ``COPY_WORDS`` whole-word ("▁") rows of the toy Gemma vocabulary: one token each."""
    special = set(table.special_ids)
    return [i for i, t in enumerate(table.tokens) if t.startswith("▁") and i not in special][:COPY_WORDS]


def _copy_table() -> object:
    """The toy Gemma trained for 200 steps on ``<bos> x <prompt> x <eos>`` (plain next-token loss on the
    last two tokens), so it names whatever word its first input position holds; the table is taken
    from the trained LM (its embeddings trained too)."""
    base = toy_gemma_table(COPY)
    lm, tok = base.load_lm(), base.tokenizer
    words = torch.tensor(_copy_words(base))
    prompt = torch.tensor(tok(PROMPT, add_special_tokens=False)["input_ids"])
    g = torch.Generator().manual_seed(COPY_SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(COPY_SEED)
        opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
        lm.train()
        for _ in range(200):
            x = words[torch.randint(len(words), (32,), generator=g)][:, None]
            seq = torch.cat([torch.full_like(x, tok.bos_token_id), x, prompt.expand(32, -1), x,
                             torch.full_like(x, tok.eos_token_id)], dim=1)
            logits = lm(input_ids=seq).logits[:, -3:-1]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, -2:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    lm.eval().requires_grad_(False)
    return table_from_lm(COPY, lm, tok, "causal")


@pytest.fixture(scope="module", autouse=True)
def tables() -> Iterator[None]:
    with registered_tables({GEMMA: (lambda: toy_gemma_table(GEMMA), "tiny random Gemma-3"),
                            COPY: (_copy_table, "tiny Gemma-3 pre-trained to copy")}, (load_table,)):
        yield


# ---------------------------------------------------------------------------------------- no leak


def test_validation_rows_do_not_reach_the_fit_statistics() -> None:
    """One held-out row has an extreme feature (1000 everywhere) and a caption of words no training caption
    uses: the input mean/scale, the vocabulary, the prior and the training rows' OT targets must be
    those of the training rows alone."""
    table = load_table(TABLE)
    n, val_fraction, seed = 24, 0.25, 0
    train, val = split_rows(n, val_fraction, seed)
    g = torch.Generator().manual_seed(0)
    concepts = ["cat", "dog", "bird", "fish", "horse", "cow", "car", "truck", "bus", "boat"]
    x = torch.randn(n, 16, generator=g)
    captions = [f"a {concepts[i]}" for i in torch.randint(len(concepts), (n,), generator=g)]
    planted = int(val[0])
    x[planted] = 1000.0
    captions[planted] = "sun sun star"
    sun = table.encode_ids("sun")[0]
    assert sun not in vocabulary(table, "frequent", 5).tolist()  # only the caption could bring it in

    aligner = VLAPAligner(table=TABLE, w_cap=0.0, vocab="captions", prior="captions", vocab_subset=5,
                          ot_columns="all", val_fraction=val_fraction, seed=seed, max_epochs=0)
    core = aligner.fit_captions(x, captions).core
    ids, mask = tokenize_captions(table, captions, aligner.config.max_caption_tokens)
    words = caption_tokens(ids[train], mask[train], special_mask(table))
    vocab = vocabulary(table, "captions", 5, words)

    assert torch.allclose(core.x_mean, x[train].mean(0), atol=1e-5)
    assert float(core.x_scale) == pytest.approx(float((x[train] - x[train].mean(0)).norm(dim=1).mean()), rel=1e-5)
    assert sun not in core.vocab_ids.tolist() and torch.equal(core.vocab_ids, vocab)
    assert torch.allclose(core.word_prior.double(), row_prior(table, vocab, "captions", words).float().double())
    fitted = core.text_targets.clone()
    core.set_text_targets(ids[train], mask[train])  # one OT over the training captions alone
    assert torch.allclose(fitted[train], core.text_targets, atol=1e-6)
    assert torch.allclose(fitted[val].sum(1), torch.ones(len(val)), atol=1e-4)  # val rows: their own OT


# ---------------------------------------------------------------------------------------- prior support


def test_uniform_on_captions_has_the_caption_priors_support_and_is_flat_on_it() -> None:
    """The prior ablation at equal support: the same words carry the caption mass, every other word gets
    exactly the caption prior's share, and on the caption words the uniform arm is flat; plain
    ``uniform`` is not (most of its mass is on words no caption uses)."""
    table = load_table(TABLE)
    captions = ["a cat", "a cat", "a cat and a dog", "the red car", "a dog"]
    ids, mask = tokenize_captions(table, captions, 16)
    words = caption_tokens(ids, mask, special_mask(table))
    vocab = vocabulary(table, "captions", 50, words)
    counts = row_prior(table, vocab, "captions", words)
    flat = row_prior(table, vocab, "uniform_on_captions", words)
    used = torch.isin(vocab, words)
    assert 5 <= int(used.sum()) < len(vocab) - 40
    assert float(flat.sum()) == pytest.approx(1.0)
    assert torch.allclose(flat[~used], counts[~used], rtol=1e-12, atol=0)  # off the captions: the same mass
    assert float(flat[used].sum()) == pytest.approx(float(counts[used].sum()))
    assert torch.allclose(flat[used], flat[used][0].expand(int(used.sum())))  # flat on the caption words
    assert counts[used].max() > 2 * counts[used].min()  # the arms differ in shape only
    assert float(row_prior(table, vocab, "uniform")[used].sum()) < 0.5 < float(flat[used].sum())
    # through the hyper-parameter: chosen from the fit captions and saved with g
    aligner = VLAPAligner(table=TABLE, w_cap=0.0, vocab="captions", vocab_subset=50, prior="uniform_on_captions",
                          max_epochs=0).fit_captions(torch.randn(len(captions), 8), captions)
    assert torch.equal(aligner.core.vocab_ids, vocab)
    assert torch.allclose(aligner.core.word_prior, flat.float())


# ---------------------------------------------------------------------------------------- the frozen LM


def test_caption_loss_is_the_lms_own_nll_when_the_prefix_is_real_token_rows() -> None:
    """A prefix made of raw table rows of real tokens must score the captions exactly as the LM does when
    fed those token ids (Gemma scales embeddings by sqrt(D) inside its embedding module). The copy LM's
    loss for a caption other than the prefix word hangs on the prefix, so without the scale (or scaled
    twice) it moves by more than 100 times the tolerance."""
    core = VLAPCore(8, COPY)
    table, lm = core.table, core.lm()
    assert core.embed_scale(lm) == pytest.approx(32**0.5, rel=1e-4)
    tok = table.tokenizer
    prompt = tok(core.prompt, add_special_tokens=False)["input_ids"]
    texts = ["cat", "dog", "red"]
    prefix_ids = torch.tensor([table.encode_ids(t) for t in texts])  # [3, 1]
    ids, mask = tokenize_captions(table, ["dog", "a red boat", "cat"], 16)
    head = torch.cat([torch.full_like(prefix_ids, tok.bos_token_id), prefix_ids,
                      torch.tensor(prompt).expand(len(texts), -1)], 1)
    with torch.no_grad():
        logits = lm(input_ids=torch.cat([head, ids], 1),
                    attention_mask=torch.cat([torch.ones_like(head), mask], 1)).logits
        nll = -logits[:, head.shape[1] - 1:-1].log_softmax(-1).gather(-1, ids[..., None])[..., 0]
        expected = float((nll * mask).sum() / mask.sum())
        assert float(core.caption_loss(table.weight[prefix_ids], ids, mask)) == pytest.approx(expected, abs=1e-4)
        for wrong in (1.0, 32.0):  # raw rows as they are, or scaled twice
            core.embed_scale = lambda lm, wrong=wrong: wrong
            assert abs(float(core.caption_loss(table.weight[prefix_ids], ids, mask)) - expected) > 1e-2


def test_greedy_captions_drop_control_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma's GGUF tokenizer does not flag ``<start_of_image>`` special, and greedy captions were full of
    it; here ``<unused0>`` plays that part (a table special the toy tokenizer decodes as text)."""
    core = VLAPCore(8, GEMMA)
    table, lm = core.table, core.lm()
    control = table.tokens.index("<unused0>")
    assert control in table.special_ids
    assert "<unused0>" in table.tokenizer.decode([control], skip_special_tokens=True)  # what broke captions
    cat, dog = table.encode_ids("cat")[0], table.encode_ids("dog")[0]
    out = torch.tensor([[cat, control, dog, table.tokenizer.eos_token_id], [control, control, dog, cat]])
    monkeypatch.setattr(lm, "generate", lambda **kw: out)
    assert core.generate(torch.randn(2, 8), max_new_tokens=4) == ["cat dog", "dog cat"]


def test_caption_only_vlap_recovers_a_planted_map_through_a_copy_lm() -> None:
    """Image features are a planted linear map's pre-image of word rows (x = M⁺ w). The LM, pre-trained to
    copy the word at its first position, names the word when ``g`` sends x to its row, so L_cap alone
    (w_map=0) must recover M well enough to name held-out words greedily. Controls at the same budget:
    shuffled pairs, and no training (the calibrated random init), name almost none."""
    table = load_table(COPY)
    words = torch.tensor(_copy_words(table))
    names = [table.tokens[i][1:] for i in words.tolist()]
    with torch.no_grad():  # the pre-training took: fed the token ids, the LM copies every word
        tok = table.tokenizer
        prompt = tok(PROMPT, add_special_tokens=False)["input_ids"]
        head = torch.tensor([tok.bos_token_id]).expand(len(words), 1)
        seq = torch.cat([head, words[:, None], torch.tensor(prompt).expand(len(words), -1)], 1)
        assert (table.load_lm()(input_ids=seq).logits[:, -1].argmax(-1) == words).float().mean() == 1.0
    g = torch.Generator().manual_seed(1)
    planted = torch.randn(32, 48, generator=g) / 48**0.5
    x = table.weight[words] @ torch.linalg.pinv(planted).T  # [64, 48]: planted @ x = the word's row
    order = torch.randperm(len(words), generator=g)
    train, test = order[:48], order[48:]

    def named(captions: list[str], epochs: int = 50) -> float:
        aligner = VLAPAligner(table=COPY, w_map=0.0, lr=3e-2, batch_size=48, max_epochs=epochs, seed=0,
                              warmup_fraction=0.0, schedule="constant")
        out = aligner.fit_captions(x[train], captions).caption(x[test], max_new_tokens=1)
        return sum(o == names[i] for o, i in zip(out, test.tolist())) / len(test)

    true = [names[i] for i in train.tolist()]
    shuffled = [true[i] for i in torch.randperm(len(true), generator=g).tolist()]
    scores = {"paired": named(true), "shuffled": named(shuffled), "untrained": named(true, epochs=0)}
    print("held-out words named:", scores)
    assert scores["paired"] >= 0.75 and scores["shuffled"] <= 0.2 and scores["untrained"] <= 0.2
