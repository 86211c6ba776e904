"""LQAE's mechanism on tiny models built in code: the reconstruction has to pass through the LM (an LM
whose states ignore their input leaves nothing better than the mean image, the real toy LM does better,
and masked patches come back worse than the ones the LM saw); the LM loss alone lowers itself in one
step and reaches the encoder only through the straight-through path; and the models of
benchmarks/lqae_study.py differ from ``lqae`` only in what each ablates."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from align.methods.lqae.aligner import LQAECore, load_table
from align.text.toy import toy_gemma_table
from bench_scripts import load_benchmark  # tests/unit/bench_scripts.py
from registered_tables import registered_tables  # tests/unit/registered_tables.py
from toy_pixels import squares

GEMMA = "test:lqae-mechanism-gemma"  # a tiny random Gemma-3 (causal, tied and frozen head), this module only
TINY = dict(table="toy:table-masked", image_size=16, patch_size=4, in_chans=1, encoder_width=32, encoder_depth=1,
            encoder_heads=2, decoder_width=32, decoder_depth=1, decoder_heads=2, commitment=0.0, lm_weight=0.0)
STEPS = 80  # AdamW steps of the reconstruction fits (~3 s each on one thread)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module", autouse=True)
def gemma_table() -> Iterator[None]:
    with registered_tables({GEMMA: (toy_gemma_table, "tiny random Gemma-3 causal LM, for LQAE's tests")},
                           (load_table,)):
        yield


def core(**kw: Any) -> LQAECore:
    torch.manual_seed(0)
    return LQAECore(**{**TINY, **kw})


class ConstantLM(nn.Module):
    """A stand-in for the frozen LM whose states are a fixed random tensor, whatever the tokens it is
    given (the real LM's config and embeddings are kept, for the causal LM's ``<bos>``)."""

    def __init__(self, lm: nn.Module, positions: int, dim: int) -> None:
        super().__init__()
        self.inner, self.config = lm, lm.config
        self.register_buffer("state", torch.randn(1, positions, dim, generator=torch.Generator().manual_seed(1)))

    @property
    def base_model(self) -> nn.Module:
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.inner.get_input_embeddings()

    def forward(self, inputs_embeds: torch.Tensor, output_hidden_states: bool = False) -> Any:
        h = self.state[:, :inputs_embeds.shape[1]].expand(len(inputs_embeds), -1, -1)
        return SimpleNamespace(last_hidden_state=h, hidden_states=(h,))


class ConstantDecoder(nn.Module):
    """A decoder that outputs black whatever it reads: the reconstruction term sends no gradient back."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.full((len(tokens), 1, 16, 16), -1.0)


def fit_reconstruction(model: LQAECore, images: torch.Tensor, steps: int = STEPS) -> LQAECore:
    """Reconstruction alone (TINY has no LM or commitment term), AdamW, seeded masks; eval mode after."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        model(images).backward()
        optimizer.step()
    return model.eval()


def mse(model: LQAECore, images: torch.Tensor, **kw: Any) -> float:
    return float(((model.reconstruct(images, **kw) - images) ** 2).mean())


@pytest.fixture(scope="module")
def trained() -> LQAECore:
    """The tiny LQAE (random toy BERT, 16 tokens, mask ratio 0.5) fitted to reconstruct the squares (the
    tiny random Gemma learns the same far more slowly: 0.57 of the mean-image error after 240 steps)."""
    return fit_reconstruction(core(), squares())


def test_reconstruction_beats_the_mean_image_only_through_the_lm(trained: LQAECore) -> None:
    """With the LM replaced by one whose states ignore its input, the decoder sees the same thing for
    every image, so no training reconstructs better than the mean image; through the (random) toy LM
    the same fit does far better. Protects against a decoder that reads the quantized tokens (or the
    encoder) instead of the LM's states: then the LM would not be in the loop the paper relies on."""
    images = squares()
    mean_image = float(((images - images.mean(0)) ** 2).mean())
    blind = core()
    constant = ConstantLM(blind.lm(), blind.num_tokens + 1, blind.table.embed_dim)
    blind.lm = lambda: constant  # forward and reconstruct both reach the LM through core.lm()
    fit_reconstruction(blind, images)
    assert mse(blind, images) >= mean_image - 1e-6  # a constant output can do no better
    assert mse(trained, images) < 0.6 * mean_image  # measured: 0.47 (0.028 against 0.060)


def test_masked_patches_reconstruct_worse_than_the_ones_the_lm_saw(trained: LQAECore) -> None:
    """``reconstruct(mask_ratio=0.5)`` masks as in training: the patches whose token was replaced by the
    mask row come back with a larger error than the others. Protects against a ``mask_ratio`` that is
    dropped at reconstruct time, a mask applied to the wrong positions (inverted, transposed) or one
    that never reaches the LM's input."""
    images = squares()
    used: list[torch.Tensor] = []
    apply_mask = trained.apply_mask

    def recorded(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        used.append(mask)
        return apply_mask(tokens, mask)

    trained.apply_mask = recorded
    try:
        for seed in range(3):
            used.clear()
            error = (trained.reconstruct(images, mask_ratio=0.5, seed=seed) - images) ** 2
            per_patch = error.unfold(2, 4, 4).unfold(3, 4, 4).mean((1, 4, 5)).flatten(1)  # [B, 16] row-major
            (mask,) = used
            assert 0.3 < float(mask.float().mean()) < 0.7
            assert per_patch[mask].mean() > 2 * per_patch[~mask].mean(), seed  # measured: about 3x
    finally:
        del trained.apply_mask
    assert mse(trained, images, mask_ratio=0.5) > 1.5 * mse(trained, images)


class IdentityLM(ConstantLM):
    """A stand-in whose states are its input vectors (a causal LM with no transformer), so what the
    decoder reads at each position can be told from the tokens."""

    def forward(self, inputs_embeds: torch.Tensor, output_hidden_states: bool = False) -> Any:
        return SimpleNamespace(last_hidden_state=inputs_embeds, hidden_states=(inputs_embeds,))


def test_the_decoder_reads_each_tokens_own_state_on_a_causal_lm() -> None:
    """On the tiny Gemma with its transformer replaced by the identity, the decoder gets, at every position,
    that position's own code row (or the mask row where masked) times Gemma's input scale, in training
    (``forward``) and in ``reconstruct``. Protects against the decoder reading the states that predict the
    next code (one position earlier, ``<bos>``'s first), or states shifted the other way: causal-only
    slips that a masked LM (whose two are the same) cannot show and that no other LQAE test caught."""
    model = core(table=GEMMA)
    identity = IdentityLM(model.lm(), model.num_tokens + 1, model.table.embed_dim)
    model.lm = lambda: identity
    read: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    model.decoder.register_forward_pre_hook(lambda module, args: read.append(args[0].detach()))
    apply_mask = model.apply_mask
    model.apply_mask = lambda tokens, mask: (masks.append(mask), apply_mask(tokens, mask))[1]
    images = squares(8)
    torch.manual_seed(0)
    model(images)
    model.eval().reconstruct(images, mask_ratio=0.5, seed=1)
    codes = model.quantize(model.encode(images)).codes
    rows = model.quantizer.codebook[codes]
    assert len(read) == len(masks) == 2 and all(m.any() and not m.all() for m in masks)
    for states, mask in zip(read, masks):
        expected = torch.where(mask.unsqueeze(-1), model.mask_row, rows) * model.input_scale
        assert torch.allclose(states, expected, atol=1e-5)


def lm_loss_step(detach_straight_through: bool = False) -> tuple[float, float, list[torch.Tensor | None]]:
    """One SGD step on the LM loss alone, on the tiny Gemma (its head frozen and tied: the encoder is the
    only thing the step can move): the loss before and after (same images and mask) and the encoder's
    gradients. The reconstruction term is made constant (a decoder that ignores its input) and the
    commitment weight is 0, so ``forward``'s gradient is the LM loss's."""
    model = core(table=GEMMA, lm_weight=1.0)
    model.decoder = ConstantDecoder()
    if detach_straight_through:
        quantize = model.quantize
        model.quantize = lambda z: dataclasses.replace(q := quantize(z), st=q.raw)  # the rows, no gradient
    images = squares()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(5)
    model(images).backward()
    before = model.parts["lm"]
    grads = [p.grad for p in model.encoder.parameters()]
    optimizer.step()
    torch.manual_seed(5)  # the same mask
    model(images)
    return before, model.parts["lm"], grads


def test_one_step_on_the_lm_loss_lowers_it_through_the_encoder() -> None:
    """The step lowers the (positive) cross-entropy, and the encoder got a gradient. Protects against an
    LM that reads a detached copy of the codes (the LM loss would never shape the encoder), a loss of
    the wrong sign, or a gradient that the quantizer blocks."""
    before, after, grads = lm_loss_step()
    assert 0 < after < before - 0.01, (before, after)  # measured: 7.70 -> 7.62
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_the_lm_loss_reaches_the_encoder_only_through_the_straight_through_path() -> None:
    """With the straight-through output replaced by the same rows without a gradient path, the LM loss
    sends nothing to the encoder and one step leaves it unchanged. Protects against an LM (or its mask)
    reading the encoder's unquantized vectors: the codes would then not be what the LM is trained on."""
    before, after, grads = lm_loss_step(detach_straight_through=True)
    assert all(g is None or not g.any() for g in grads)
    assert after == before


# ------------------------------------------------------------------------------ lqae_study's models

STUDY_ABLATES = {  # model -> the hyper-parameters in which it differs from lqae's
    "random-table": {"codebook"},
    "vq-vae": {"codebook", "codebook_size", "lm_weight"},  # lm_weight: inert without an LM
    "lqae-lm-off": {"lm_weight"},
    "lqae-all-rows": {"codebook_rows"},
    "lqae-bert": {"table", "mlm_head"},  # the bidirectional denoiser: MiniLM's table, BERT and text-trained head
}


def differing(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")}


@pytest.mark.parametrize("usage", [0.0, 1.0])
def test_study_models_differ_from_lqae_only_in_what_each_ablates(usage: float) -> None:
    """benchmarks/lqae_study.py's ``hparams`` for every model of ``MODELS`` against lqae's, at the study's
    default arguments (same seed, same chosen weights): the settings it passes and the full
    hyper-parameters of the aligner they build differ in exactly the ablated fields. Protects against a
    baseline that silently trains with other images, epochs, table, tokens or usage term than lqae."""
    from align.methods.lqae.aligner import LQAE

    study = load_benchmark("lqae_study")
    args = SimpleNamespace(rows="words", codebook_size=8192, tokens=16, epochs=2, batch=32,
                           usage_temperature=0.01)  # the study's defaults (main's parser)
    data = {"channels": 1}
    chosen = (0.1, usage)
    assert set(study.MODELS) == {"lqae", *STUDY_ABLATES}
    lqae = study.hparams("lqae", data, args, 3, chosen)
    full = LQAE(**lqae).hparams
    assert full["lm_weight"] == 0.1 and full["codebook_rows"] == "words" and full["codebook"] == "language"
    for label, ablated in STUDY_ABLATES.items():
        hp = study.hparams(label, data, args, 3, chosen)
        assert differing(hp, lqae) == ablated, label
        assert differing(LQAE(**hp).hparams, full) == ablated, label
    assert study.hparams("vq-vae", data, args, 3, chosen)["codebook_size"] == 1024 != args.codebook_size
