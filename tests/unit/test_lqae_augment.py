"""LQAE's training options: seeded crop + flip augmentation, and tokens per image."""

from __future__ import annotations


import pytest
import torch

from align.errors import BadInputError
from align.methods.lqae.aligner import LQAE, LQAECore
from align.methods.lqae.augment import augment

TINY = dict(table="toy:table-masked", image_size=16, in_chans=1, encoder_width=32, encoder_depth=1, encoder_heads=2,
            decoder_width=32, decoder_depth=1, decoder_heads=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def gradient_images(n: int = 6) -> torch.Tensor:
    """Left-to-right ramps with a bright corner: any crop or flip changes their pixels."""
    ramp = torch.linspace(0, 1, 16).expand(16, 16).clone()
    ramp[:4, :4] = 1.0
    return ramp.expand(n, 1, 16, 16).clone()


def test_augmentation_changes_pixels_not_shapes_and_is_reproducible_per_seed() -> None:
    images = gradient_images()
    rng = torch.get_rng_state()
    out = augment(images, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's generator is left alone
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, images)
    assert torch.equal(out, augment(images, seed=3))
    assert not torch.equal(out, augment(images, seed=4))
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1  # equal images, each its own crop and flip
    whole = augment(images, seed=3, min_scale=1.0)  # the crop is the whole image: only the flip is left
    flipped = torch.tensor([torch.allclose(w, i.flip(-1), atol=1e-6) for w, i in zip(whole, images)])
    kept = torch.tensor([torch.allclose(w, i, atol=1e-6) for w, i in zip(whole, images)])
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_training_augments_only_when_asked_and_only_in_train_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import align.methods.lqae.aligner as aligner

    seen: list[int] = []
    monkeypatch.setattr(aligner, "augment_images", lambda x, seed, scale: (seen.append(seed), x)[1])
    torch.manual_seed(0)
    model = LQAECore(**TINY, augment=True, crop_min_scale=0.5)
    model(torch.rand(2, 1, 16, 16))
    model.eval()(torch.rand(2, 1, 16, 16))
    assert len(seen) == 1
    LQAECore(**TINY)(torch.rand(2, 1, 16, 16))
    assert len(seen) == 1
    with pytest.raises(BadInputError, match="crop_min_scale"):
        LQAE(crop_min_scale=1.5)


@pytest.mark.parametrize("image_size, tokens, patch", [(32, 16, 8), (32, 64, 4), (16, 16, 4), (16, 64, 2)])
def test_tokens_per_image_sets_the_patch_grid(image_size: int, tokens: int, patch: int) -> None:
    model = LQAE(image_size=image_size, tokens_per_image=tokens)
    assert model.hparams["patch_size"] == patch
    assert LQAE(**model.hparams).hparams == model.hparams  # saved fits resolve to the same values


def test_64_tokens_per_image_run_through_the_lm() -> None:
    torch.manual_seed(0)
    hp = LQAE(**TINY, tokens_per_image=64).hparams
    model = LQAECore(**{k: hp[k] for k in (*TINY, "patch_size")})
    assert model.num_tokens == 64
    assert model.quantize(model.encode(torch.rand(2, 1, 16, 16))).codes.shape == (2, 64)
    assert torch.isfinite(model(torch.rand(2, 1, 16, 16)))


@pytest.mark.parametrize("hparams, match", [
    (dict(tokens_per_image=15), "tokens_per_image must be a square number whose root divides image_size=32"),
    (dict(tokens_per_image=9), "tokens_per_image must be a square number whose root divides image_size=32"),
    (dict(tokens_per_image=64, patch_size=2), "tokens_per_image=64 needs patch_size=4"),
    (dict(codebook_rows="chars"), "codebook_rows must be one of all, words"),
    (dict(codebook_size=0), "codebook_size must be"),
])
def test_bad_options_are_one_line_errors(hparams: dict, match: str) -> None:
    with pytest.raises(BadInputError, match=match) as err:
        LQAE(**hparams)
    assert "\n" not in str(err.value)


def test_a_grid_longer_than_the_lm_context_is_refused() -> None:
    with pytest.raises(BadInputError, match="tokens_per_image=144 does not fit"):  # toy BERT: 128 positions
        LQAECore(**{**TINY, "image_size": 48, "patch_size": 4})
