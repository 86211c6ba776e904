"""The float32 inference copy (BatchNorm folded, channels-last) and batched preprocessing on real
weights and real dataset images: pooled features and tokens as the encoder itself computes them, one
image at a time, to 1e-5 of each item's norm.

Needs ``align assets pull mobilenet_v2.imagenet1k_v1 efficientnet_lite0.imagenet fashion-mnist``.
"""

from __future__ import annotations

import pytest
import torch

from align.encoders.inference import inference_encoder
from align.features.encoding import encode_pil, encode_pil_tokens
from align.registry import DATASETS, VISION_ENCODERS
from conftest import need_asset

pytestmark = pytest.mark.integration

TOLERANCE = 1e-5
ENCODERS = {"torchvision:mobilenet_v2.imagenet1k_v1": "mobilenet_v2.imagenet1k_v1",
            "efficientnet_lite:lite0.imagenet": "efficientnet_lite0.imagenet"}
DATASET_ASSETS = {"digits": None, "fashion_mnist": "fashion-mnist"}


def relative(new: torch.Tensor, old: torch.Tensor) -> float:
    new, old = new.flatten(1).double(), old.flatten(1).double()
    return float(((new - old).norm(dim=1) / old.norm(dim=1)).max())


@pytest.mark.parametrize("dataset", sorted(DATASET_ASSETS))
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_features_match_the_encoder_itself(name: str, dataset: str) -> None:
    need_asset(ENCODERS[name])
    if DATASET_ASSETS[dataset]:
        need_asset(DATASET_ASSETS[dataset])
    encoder = VISION_ENCODERS.create(name)
    split = DATASETS.create(dataset).load("test")
    images = [split.load_image(i) for i in range(16)]
    pixels = torch.stack([encoder.preprocess(image) for image in images])
    with torch.inference_mode():
        pooled, tokens = encoder(pixels), encoder.forward_tokens(pixels)
    assert inference_encoder(encoder) is not encoder  # the copy was built and passed its probe
    assert relative(encode_pil(encoder, images)[0], pooled) < TOLERANCE
    assert relative(encode_pil_tokens(encoder, images), tokens) < TOLERANCE
