"""Batched preprocessing (align/encoders/transforms.py): the per-pixel steps run once per batch give
the very pixels that one image at a time gives, for the transforms align builds and torchvision's
classification preset; any other transform still runs one image at a time."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from align.encoders.transforms import DataConfig, RGBThen, build_transform, preprocess_batch, split_transform


def pictures() -> list[Image.Image]:
    """Odd sizes and every mode the datasets give: RGB, greyscale, RGBA with transparency."""
    generator = torch.Generator().manual_seed(0)

    def noise(h: int, w: int, c: int) -> torch.Tensor:
        return torch.randint(0, 256, (h, w, c), generator=generator, dtype=torch.uint8)

    return [Image.fromarray(noise(37, 29, 3).numpy()), Image.fromarray(noise(8, 8, 1)[..., 0].numpy(), "L"),
            Image.fromarray(noise(72, 72, 4).numpy(), "RGBA"), Image.fromarray(noise(28, 28, 3).numpy())]


def one_at_a_time(preprocess, images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([preprocess(image) for image in images])


@pytest.mark.parametrize("config", [
    DataConfig(input_size=(3, 24, 24), interpolation="bicubic", crop_pct=0.875, mean=(0.5,) * 3, std=(0.5,) * 3),
    DataConfig(input_size=(3, 20, 16), interpolation="bilinear", crop_mode="squash"),
])
def test_built_transforms_give_the_same_pixels(config: DataConfig) -> None:
    preprocess = build_transform(config)
    assert split_transform(preprocess) is not None
    assert torch.equal(preprocess_batch(preprocess, pictures()), one_at_a_time(preprocess, pictures()))


def test_torchvision_preset_gives_the_same_pixels() -> None:
    from torchvision.transforms._presets import ImageClassification

    preprocess = RGBThen(ImageClassification(crop_size=24, resize_size=28), (255, 255, 255))
    assert split_transform(preprocess) is not None
    assert torch.equal(preprocess_batch(preprocess, pictures()), one_at_a_time(preprocess, pictures()))


def test_the_preset_tail_is_what_runs_on_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The preset's own forward is never called: its per-pixel steps run once per batch."""
    from torchvision.transforms._presets import ImageClassification

    preprocess = RGBThen(ImageClassification(crop_size=24, resize_size=28), (255, 255, 255))
    expected = one_at_a_time(preprocess, pictures())
    monkeypatch.setattr(ImageClassification, "forward", lambda *_: pytest.fail("ran one image at a time"))
    assert torch.equal(preprocess_batch(preprocess, pictures()), expected)


def test_other_transforms_run_one_image_at_a_time() -> None:
    def preprocess(image: Image.Image) -> torch.Tensor:
        return torch.full((3, 4, 4), float(image.size[0]))

    assert split_transform(preprocess) is None
    assert torch.equal(preprocess_batch(preprocess, pictures()), one_at_a_time(preprocess, pictures()))


def test_feature_paths_preprocess_a_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.transforms._presets import ImageClassification

    from align.features.encoding import encode_pil, encode_pil_tokens
    from align.registry import VISION_ENCODERS

    encoder = VISION_ENCODERS.create("toy:cnn")
    encoder.set_transform(ImageClassification(crop_size=32, resize_size=36))
    expected = one_at_a_time(encoder.preprocess, pictures())
    with torch.inference_mode():
        pooled, tokens = encoder(expected), encoder.forward_tokens(expected)
    monkeypatch.setattr(ImageClassification, "forward", lambda *_: pytest.fail("ran one image at a time"))
    torch.testing.assert_close(encode_pil(encoder, pictures())[0], pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encode_pil_tokens(encoder, pictures()), tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.encode_images(pictures(), batch_size=3), pooled, atol=1e-5, rtol=1e-5)
