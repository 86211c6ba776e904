"""LQAE on the tiny random masked LM (``toy:table-masked``): valid codes, straight-through gradients that
reach the encoder and never the frozen table or LM, masking ratio, a falling reconstruction loss, the
baselines, save/load and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from align.errors import BadInputError
from align.methods.framework.base import load_aligner
from align.methods.lqae.aligner import LQAE, LQAECore, load_table, random_table
from align.registry import ALIGNERS
from toy_pixels import squares as toy_images

TINY = dict(table="toy:table-masked", image_size=16, patch_size=4, in_chans=1, encoder_width=32, encoder_depth=1,
            encoder_heads=2, decoder_width=32, decoder_depth=1, decoder_heads=2,
            codebook_size=256)  # the toy table has fewer than the default 1024 rows for learned codes


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def core(**kw: object) -> LQAECore:
    torch.manual_seed(0)
    return LQAECore(**{**TINY, **kw})


def test_registered_with_metadata() -> None:
    meta = ALIGNERS.meta("lqae")
    assert meta.description and meta.citation
    assert isinstance(ALIGNERS.create("lqae", **TINY), LQAE)


@pytest.mark.parametrize("codebook", ["language", "random", "learned"])
def test_codes_are_word_ids_of_the_table(codebook: str) -> None:
    model = core(codebook=codebook)
    codes = model.quantize(model.encode(toy_images(8))).codes
    table = load_table("toy:table-masked")
    assert codes.shape == (8, 16) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < table.vocab_size
    assert not set(codes.flatten().tolist()) & set(table.special_ids)


def test_special_tokens_are_codes_only_when_not_excluded() -> None:
    model = core(exclude_special=False)
    with torch.no_grad():  # point every token at the [MASK] row: only reachable when specials are allowed
        z = model.quantizer.codebook[model.table.tokenizer.mask_token_id].expand(2, 16, -1)
    assert (model.quantize(z).codes == model.table.tokenizer.mask_token_id).all()
    assert not (core().quantize(z).codes == model.table.tokenizer.mask_token_id).any()


def test_gradients_reach_the_encoder_through_the_straight_through_path_only() -> None:
    model = core(commitment=0.0, lm_weight=0.0)  # reconstruction alone: its only way back is the STE
    lm = model.table.load_lm()
    model(toy_images(8)).backward()
    encoder_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in encoder_grads) and sum(g.abs().sum() for g in encoder_grads) > 0
    assert model.to_codebook.weight.grad.abs().sum() > 0
    assert not model.quantizer.codebook.requires_grad and model.quantizer.codebook.grad is None
    assert all(p.grad is None and not p.requires_grad for p in lm.parameters())
    assert all(p.grad is None for p in model.mlm_transform.parameters())  # L_bert off: the head is untouched


def test_lm_loss_trains_the_mlm_head_and_reaches_the_encoder() -> None:
    model = core(commitment=0.0, lm_weight=1.0)
    model.decoder.requires_grad_(False)
    images = toy_images(8)
    torch.manual_seed(1)
    model(images).backward()
    assert model.mlm_transform.dense.weight.grad.abs().sum() > 0 and model.mlm_bias.grad.abs().sum() > 0
    assert model.to_codebook.weight.grad.abs().sum() > 0
    frozen = core(commitment=0.0, lm_weight=1.0, mlm_head="frozen")
    assert not any(p.requires_grad for p in frozen.mlm_transform.parameters()) and not frozen.mlm_bias.requires_grad


def test_masking_ratio_holds_and_masked_positions_carry_the_mask_row() -> None:
    model = core(mask_ratio=0.3)
    mask = model.draw_mask(4096, torch.Generator().manual_seed(0))
    assert abs(mask.float().mean().item() - 0.3) < 0.01  # 65,536 Bernoulli draws: std 0.0018
    per_image = mask.float().mean(1)
    assert per_image.std() > 0  # Bernoulli per token, as the paper, not a fixed count
    tokens = torch.randn(2, 16, model.table.embed_dim)
    masked = model.apply_mask(tokens, mask[:2])
    mask_row = model.table.weight[model.table.tokenizer.mask_token_id]
    assert torch.equal(masked[mask[:2]], mask_row.expand(int(mask[:2].sum()), -1))
    assert torch.equal(masked[~mask[:2]], tokens[~mask[:2]])
    assert not core(mask_ratio=0.0).draw_mask(64).any()


@pytest.mark.parametrize("codebook", ["language", "learned"])
def test_reconstruction_loss_falls_within_a_few_steps(codebook: str) -> None:
    images = toy_images(32)
    model = core(codebook=codebook)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        model(images).backward()
        optimizer.step()
        losses.append(model.parts["rec"])
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


def test_fit_trains_through_lightning_and_leaves_the_frozen_lm_alone() -> None:
    images = toy_images(48)
    lm = load_table("toy:table-masked").load_lm()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    model = LQAE(**TINY, max_epochs=4, batch_size=16, lr=3e-3).fit_images(images)
    assert len(model.history["rec"]) == 4 and model.history["rec"][-1] < model.history["rec"][0]
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())
    again = LQAE(**TINY, max_epochs=4, batch_size=16, lr=3e-3).fit_images(images)
    assert torch.equal(model.codes(images), again.codes(images))  # seeded: same fit, same codes
    strings = model.token_strings(images[:3])
    assert len(strings) == 3 and all(isinstance(s, str) and s for s in strings)
    assert model.reconstruct(images[:3]).shape == (3, 1, 16, 16)
    feats = model.features(images[:5])
    assert feats["tokens"].shape == (5, 32) and feats["bert"].shape == (5, 32 * 3)  # embeddings + 2 layers


def test_save_load_round_trip(tmp_path: Path) -> None:
    images = toy_images(16)
    model = LQAE(**TINY, codebook="learned", max_epochs=1, batch_size=8).fit_images(images)
    model.save(tmp_path / "lqae")
    loaded = load_aligner(tmp_path / "lqae")
    assert isinstance(loaded, LQAE) and loaded.hparams == model.hparams
    assert torch.equal(loaded.codes(images), model.codes(images))
    assert torch.allclose(loaded.reconstruct(images), model.reconstruct(images))


def test_random_table_keeps_shape_and_statistics_but_not_the_rows() -> None:
    weight = load_table("toy:table-masked").weight
    rows = random_table(weight, seed=0)
    assert rows.shape == weight.shape
    assert torch.allclose(rows.std(0), weight.std(0), rtol=0.2)
    assert not torch.allclose(rows, weight)
    assert torch.equal(rows, random_table(weight, seed=0))
    model = core(codebook="random")
    assert not torch.equal(model.quantizer.codebook, weight)


def test_bad_input_is_a_one_line_error() -> None:
    with pytest.raises(BadInputError, match="codebook"):
        LQAE(codebook="clip")
    with pytest.raises(BadInputError, match="patch_size"):
        LQAE(image_size=32, patch_size=5)
    with pytest.raises(BadInputError, match="mask_ratio"):
        LQAE(mask_ratio=1.0)
    with pytest.raises(BadInputError, match=r"expected images of shape \[N, 1, 16, 16\]"):
        LQAE(**TINY).fit(torch.zeros(4, 8), torch.zeros(4, 8))
    with pytest.raises(BadInputError, match=r"\[N, 1, 16, 16\]"):
        LQAE(**TINY).fit_images(torch.zeros(4, 3, 16, 16))


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "lqae"


@pytest.mark.parametrize("name, codebook", [("lqae", "language"), ("random", "random"), ("vqvae", "learned")])
def test_configs_are_valid_hyper_parameters(name: str, codebook: str) -> None:
    import yaml

    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert config["name"] == "lqae" and config["hparams"]["codebook"] == codebook
    model = ALIGNERS.create("lqae", **config["hparams"])
    defaults = LQAE().hparams  # the configs spell out the defaults, apart from the codebook
    assert {k: v for k, v in model.hparams.items() if k != "codebook"} == {
        k: v for k, v in defaults.items() if k != "codebook"}


def test_pixels_pad_greyscale_and_composite_colour_on_white() -> None:
    import numpy as np
    from PIL import Image

    from align.data.pixels import image_array

    grey = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    out = image_array(Image.fromarray(grey), 32, 1)
    assert out.shape == (1, 32, 32) and out[0, :2].sum() == 0 and out[0, :, :2].sum() == 0
    assert np.array_equal(out[0, 2:30, 2:30], grey / np.float32(255))  # every pixel kept, black border
    clear = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    assert np.allclose(image_array(clear, 32, 3), 1.0)  # composited onto white, shrunk to 32
    with pytest.raises(BadInputError, match="channels"):
        image_array(clear, 32, 2)


def test_held_out_images_are_scored_every_epoch_with_the_same_masks() -> None:
    """``val_fraction`` holds images out of training and scores them after every epoch (the pilot's curves:
    pixel error unmasked and masked, the LM's loss, code usage); the k-th validation batch draws the same
    mask every epoch, so two scorings of the same weights agree and the curves compare epochs."""
    images = toy_images(60)
    model = LQAE(**TINY, max_epochs=3, batch_size=16, lr=3e-3, val_fraction=0.2).fit_images(images)
    for key in ("val_rec", "val_rec_masked", "val_lm", "val_codes_used", "val_code_perplexity"):
        assert len(model.history[key]) == 3, key
    assert all(0 < v < 1 for key in ("val_rec", "val_rec_masked") for v in model.history[key])
    assert all(1 <= c <= 12 * 16 for c in model.history["val_codes_used"])
    core = model.core.eval()
    held = images[:12]
    scores = []
    for _ in range(2):
        core.validation_update(held)
        scores.append(core.validation_compute())
    assert scores[0] == scores[1] and core.validation_compute() == {}
    with pytest.raises(BadInputError, match="val_fraction"):
        LQAE(**TINY, val_fraction=0.6)
