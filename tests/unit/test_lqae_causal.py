"""LQAE with a causal LM as the frozen denoiser (a tiny random Gemma-3: tied head, sqrt(D) input scale,
SentencePiece vocabulary): next-code prediction at the right positions, the pretrained head frozen and
equal to the codebook rows, the whole-word codebook, and the baselines' codebook sizes."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from align.errors import BadInputError
from align.methods.lqae.aligner import LQAE, LQAECore, load_table
from align.text.toy import toy_gemma_table
from registered_tables import registered_tables  # tests/unit/registered_tables.py

GEMMA = "test:lqae-gemma"  # registered for this module only (the registered toy tables are WordPiece)
TINY = dict(table=GEMMA, image_size=16, patch_size=4, in_chans=1, encoder_width=32, encoder_depth=1,
            encoder_heads=2, decoder_width=32, decoder_depth=1, decoder_heads=2)


@pytest.fixture(scope="module", autouse=True)
def gemma_table() -> Iterator[None]:
    with registered_tables({GEMMA: (toy_gemma_table, "tiny random Gemma-3 causal LM, for LQAE's tests")},
                           (load_table,)):
        yield


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def core(**kw: Any) -> LQAECore:
    torch.manual_seed(0)
    return LQAECore(**{**TINY, **kw})


class PlantedLM(nn.Module):
    """A stand-in causal LM: the real toy's embeddings and head, and a position-wise linear map as its
    transformer (trivially causal), so what each state predicts is planted by choosing the map."""

    def __init__(self, lm: nn.Module, matrix: torch.Tensor) -> None:
        super().__init__()
        self.inner, self.config = lm, lm.config
        self.register_buffer("matrix", matrix)

    @property
    def base_model(self) -> nn.Module:
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.inner.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.inner.get_output_embeddings()

    def forward(self, inputs_embeds: torch.Tensor, output_hidden_states: bool = False) -> Any:
        h = inputs_embeds @ self.matrix
        return SimpleNamespace(last_hidden_state=h, hidden_states=(inputs_embeds, h))


def test_gemma_is_read_as_a_causal_lm_with_bos_first_and_scaled_inputs() -> None:
    model = core()
    table = load_table(GEMMA)
    assert model.lm_kind == "causal" and model.bos_id == table.tokenizer.bos_token_id
    assert model.input_scale == pytest.approx(32 ** 0.5, rel=1e-5)  # Gemma scales embeddings by sqrt(hidden)
    assert torch.equal(model.mask_row, table.weight[table.tokenizer.mask_token_id])  # Gemma's <mask> row
    tokens = torch.randn(3, 16, 32)
    run = model.run_lm(tokens, lm=PlantedLM(table.load_lm(), torch.eye(32)))  # identity transformer
    bos = table.load_lm().get_input_embeddings()(torch.tensor([model.bos_id]))[0]
    assert torch.allclose(run.predict[:, 0], bos.expand(3, -1))  # code 0 is predicted from <bos>
    assert torch.allclose(run.predict[:, 1:], tokens[:, :-1] * model.input_scale)  # code i from position i - 1
    assert torch.allclose(run.states, tokens * model.input_scale)  # the decoder reads each token's own position


def test_causal_lm_loss_scores_the_next_code_at_masked_positions() -> None:
    """Plant an LM whose state at a code predicts that code's successor in a cycle: image sequences that
    follow the cycle get a near-zero loss; the same LM scored against unshifted or shifted targets (the
    mistakes an off-by-one would make) gets a high one."""
    model = core(codebook_rows="words", codebook_size=64)
    table, lm = load_table(GEMMA), load_table(GEMMA).load_lm()
    head = model.head_rows  # [K, D]
    own = head @ head.T
    margin = own.diagonal() - (own - torch.diag(torch.full((len(own),), float("inf")))).max(1).values
    chosen = margin.argsort(descending=True)[:8]  # codes that their own row scores highest, by a margin
    cycle = model.search_ids[chosen]
    scale, bos = model.input_scale, lm.get_input_embeddings()(torch.tensor([model.bos_id]))[0]
    inputs = torch.cat([bos[None], table.weight[cycle] * scale]).double()
    successor = torch.roll(chosen, -1)  # the state at cycle[j] points at cycle[j + 1]'s row, 40 logits ahead
    targets = torch.cat([torch.zeros(1, 32), head[successor] * (40 / margin[successor])[:, None]]).double()
    planted = PlantedLM(lm, (torch.linalg.pinv(inputs) @ targets).float())
    offsets = torch.arange(4)[:, None] + torch.arange(8)[None]  # image b reads the cycle from its b-th code
    codes = cycle[offsets % 8]
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:, 0] = False  # <bos> is the same for every image: the first code is not predictable
    run = model.run_lm(table.weight[codes], lm=planted)
    assert model.lm_loss(run.predict, codes, mask) < 0.05
    assert model.lm_loss(run.predict, torch.roll(codes, 1, dims=1), mask) > 5  # targets one step late
    assert model.lm_loss(run.predict, torch.roll(codes, -1, dims=1), mask) > 5  # one step early
    assert model.lm_loss(run.states, codes, mask) > 5  # predicting from the position itself
    assert model.lm_loss(run.predict, codes, torch.zeros_like(mask)) == 0  # no masked position, no loss


def test_the_head_is_the_lms_own_pretrained_output_layer_restricted_to_the_codebook() -> None:
    model = core(codebook_rows="words", codebook_size=64)
    lm = model.lm()
    tokens = load_table(GEMMA).weight[model.search_ids[:16]].expand(2, -1, -1)
    run = model.run_lm(tokens)
    inputs = torch.cat([lm.get_input_embeddings()(torch.tensor([[model.bos_id]] * 2)), tokens * model.input_scale], 1)
    with torch.no_grad():
        own = lm(inputs_embeds=inputs).logits[:, :-1][..., model.search_ids]
        assert torch.allclose(model.lm_logits(run.predict), own, atol=1e-4)


def test_tied_head_is_frozen_and_equals_the_codebook_rows() -> None:
    model = core()
    lm = model.lm()
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight  # Gemma ties its head
    assert torch.equal(model.head_rows, model.quantizer.codebook[model.search_ids])
    assert torch.equal(model.head_rows, load_table(GEMMA).weight[model.search_ids])
    assert not hasattr(model, "mlm_transform") and not hasattr(model, "mlm_bias")  # nothing added to the head
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"encoder", "to_codebook", "decoder"}
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    model(torch.rand(4, 1, 16, 16)).backward()
    assert model.parts["lm"] > 0 and model.to_codebook.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in lm.parameters())
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())
    assert not model.head_rows.requires_grad and "head_rows" not in model.state_dict()


def test_random_baseline_replaces_the_tied_head_and_an_untied_lm_keeps_its_own() -> None:
    model = core(codebook="random")
    assert torch.equal(model.head_rows, model.quantizer.codebook[model.search_ids])
    assert not torch.equal(model.head_rows, load_table(GEMMA).weight[model.search_ids])
    untied = core(table="toy:table-causal")  # toy Llama: tie_word_embeddings=False, no <mask> token
    lm = untied.lm()
    assert torch.equal(untied.head_rows, lm.get_output_embeddings().weight[untied.search_ids])
    assert torch.equal(untied.mask_row, untied.table.weight[untied.table.tokenizer.unk_token_id])


def test_restricted_codebook_holds_only_frequent_whole_words() -> None:
    from wordfreq import word_frequency

    model = core(codebook_rows="words", codebook_size=100)
    table = load_table(GEMMA)
    words = [table.tokens[i] for i in model.search_ids]
    assert len(words) == 100 == model.quantizer.num_codes
    assert all(w.startswith("▁") and w[1:].isalpha() for w in words)
    assert not set(model.search_ids.tolist()) & set(table.special_ids)
    freqs = [word_frequency(w[1:], "en") for w in words]
    assert all(f > 0 for f in freqs) and freqs == sorted(freqs, reverse=True)
    assert len({w.lower() for w in words}) == 100
    codes = model.quantize(model.encode(torch.rand(4, 1, 16, 16))).codes
    assert set(codes.flatten().tolist()) <= set(model.search_ids.tolist())
    masked = core(table="toy:table-masked", codebook_rows="words", codebook_size=50)  # WordPiece: no ## pieces
    assert all(masked.table.tokens[i].isalpha() for i in masked.search_ids)
    with pytest.raises(BadInputError, match="codebook_size=5000 .* whole"):
        core(codebook_rows="words", codebook_size=5000)


def test_random_baseline_keeps_the_restricted_shape_and_statistics() -> None:
    model = core(codebook="random", codebook_rows="words", codebook_size=200)
    real = load_table(GEMMA).weight[model.search_ids]
    rows = model.quantizer.codebook[model.search_ids]
    assert model.quantizer.num_codes == 200 and rows.shape == real.shape
    assert not torch.allclose(rows, real)
    assert torch.allclose(rows.std(0), real.std(0), rtol=0.3)


def test_vq_vae_has_1024_cosine_codes_by_default() -> None:
    assert LQAE().hparams["codebook_size"] == 1024
    model = core(codebook="learned")
    assert model.quantizer.num_codes == 1024 and model.quantizer.l2_normalize
    assert model.quantizer.codebook.requires_grad
    assert torch.equal(model.code_to_token, model.search_ids[:1024])
    codes = model.quantize(model.encode(torch.rand(4, 1, 16, 16))).codes
    assert set(codes.flatten().tolist()) <= set(model.search_ids[:1024].tolist())
    assert core(codebook="learned", codebook_size=None).quantizer.num_codes == len(model.search_ids)  # version 1
    with pytest.raises(BadInputError, match="codebook_size=1024"):
        core(table="toy:table-masked", codebook="learned")  # 990 word rows to write 1024 codes as


def test_fit_on_gemma_writes_sentencepiece_words() -> None:
    images = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    model = LQAE(**TINY, codebook_rows="words", codebook_size=128, max_epochs=1, batch_size=8).fit_images(images)
    assert model.history["lm"][0] > 0
    strings = model.token_strings(images[:2])
    assert all(s and "▁" not in s for s in strings)
    assert model.features(images[:2])["bert"].shape == (2, 32 * 3)  # <bos> left out, embeddings + 2 layers


def test_version_1_hyper_parameters_load_with_their_behaviour() -> None:
    assert LQAE.version == "2"
    v1 = LQAE(**LQAE.saved_hparams({"bert_weight": 1e-4, "codebook": "learned"}))
    assert v1.hparams["lm_weight"] == 1e-4 and v1.hparams["codebook_size"] is None


@pytest.mark.parametrize("codebook", ["language", "learned"])
def test_usage_weight_adds_the_code_usage_term_to_the_loss(codebook: str) -> None:
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    plain, with_usage = core(codebook=codebook), core(codebook=codebook, usage_weight=2.0, usage_temperature=0.05)
    torch.manual_seed(1)
    base = plain(images)
    torch.manual_seed(1)
    total = with_usage(images)
    assert plain.parts["usage"] == 0.0 and with_usage.parts["usage"] != 0.0
    assert total.item() == pytest.approx(base.item() + 2.0 * with_usage.parts["usage"], rel=1e-5, abs=1e-6)
