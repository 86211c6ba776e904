"""torchvision classification weights as frozen encoders (``torchvision:<builder>.<weights>``).

A model whose trunk ends in a feature map and whose head starts at global average pooling (the
``features``/``classifier`` layout of MobileNet and EfficientNet) fits :class:`TorchvisionEncoder`;
adding another checkpoint is one :func:`register_torchvision` call. Weights load from
``$ALIGN_HOME/torch/hub/checkpoints`` (filled by ``align assets pull``); nothing is downloaded unless
the caller passes ``download=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from align.assets import file_sha256, get_spec, require, torch_hub_checkpoints, verified_files
from align.encoders.base import DataConfig, VisionEncoder
from align.errors import AssetMissingError, BadInputError
from align.encoders._common import RANDOM_INIT
from align.registry import VISION_ENCODERS

_TORCHVISION_LICENSE = "BSD-3-Clause (torchvision weights)"


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in label order, as torchvision ships them."""
    from torchvision.models import get_weight

    return list(get_weight("MobileNet_V2_Weights.IMAGENET1K_V1").meta["categories"])


def data_config_of(weights: Any) -> DataConfig:
    """DataConfig mirroring a weights enum's own ``transforms()`` (resize, crop, mean/std, interpolation)."""
    preset = weights.transforms()
    crop = int(preset.crop_size[0])
    resize = int(preset.resize_size[0])
    return DataConfig(
        input_size=(3, crop, crop),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation.value,
        crop_pct=crop / resize,
    )


def load_weights(weights: Any, asset: str | None, *, download: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """State dict of a torchvision weights enum from the align cache, and the sha256 of the file read;
    fetched only with ``download``.

    A packaged file is checked against the catalogue first (a damaged one is a one-line error naming
    it and ``align assets pull``); offline with the file absent this raises the asset's own
    ``AssetMissingError``."""
    folder = torch_hub_checkpoints()
    path = folder / Path(urlparse(weights.url).path).name
    if not path.is_file() and not download:
        if asset is not None:
            require(asset)  # raises with the pull command
        raise AssetMissingError(f"{path} is missing; pass download=True to fetch it from {weights.url}")
    if not path.is_file():
        from torch.hub import HASH_REGEX

        found = HASH_REGEX.search(path.name)
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=found.group(1) if found else None,
                                       progress=False)
    if asset is not None:
        verified_files(get_spec(asset), folder)  # the file matches the catalogue's sha256, or a one-line error
    return load_checkpoint(path), file_sha256(path)


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of a local checkpoint, or a one-line error naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        reason = str(err).split("\n", 1)[0][:200] or type(err).__name__
        raise BadInputError(f"{path}: not a readable weights file ({reason})") from None


class TorchvisionEncoder(VisionEncoder):
    """``trunk`` gives the NCHW map (tokens = its cells), ``head`` maps the pooled vector to logits."""

    def __init__(self, name: str, model: nn.Module, *, trunk: str, head: str, embed_dim: int,
                 data_config: DataConfig, class_names: list[str] | None, transform: Any = None) -> None:
        super().__init__()
        self.name = name
        self.embed_dim = embed_dim
        self.data_config = data_config
        self.class_names = class_names
        self.trunk = getattr(model, trunk)
        self.head = getattr(model, head)
        self.set_transform(transform)

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.trunk(pixels).flatten(2).transpose(1, 2)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


def build_torchvision(name: str, builder: str, weights_name: str, *, asset: str | None, embed_dim: int,
                      trunk: str = "features", head: str = "classifier", pretrained: bool = True,
                      download: bool = False) -> TorchvisionEncoder:
    """Build ``builder`` with ``weights_name`` loaded from the cache (``pretrained=False``: random init)."""
    from torchvision.models import get_model_builder, get_weight

    weights = get_weight(weights_name)
    model = get_model_builder(builder)(weights=None)
    sha256 = RANDOM_INIT
    if pretrained:
        state, sha256 = load_weights(weights, asset, download=download)
        model.load_state_dict(state)
    encoder = TorchvisionEncoder(
        name, model, trunk=trunk, head=head, embed_dim=embed_dim, data_config=data_config_of(weights),
        class_names=list(weights.meta["categories"]), transform=weights.transforms(),
    )
    encoder.weights_sha256 = sha256
    return encoder.freeze()  # type: ignore[return-value]


def register_torchvision(name: str, builder: str, weights_name: str, *, asset: str | None, embed_dim: int,
                         trunk: str = "features", head: str = "classifier", **meta: Any) -> None:
    """Register one torchvision checkpoint; ``meta`` (license, citation, description) goes to the registry."""

    def factory(**kwargs: Any) -> TorchvisionEncoder:
        return build_torchvision(name, builder, weights_name, asset=asset, embed_dim=embed_dim,
                                 trunk=trunk, head=head, **kwargs)

    sha256 = None
    if asset is not None:
        (sha256,) = get_spec(asset).sha256.values()
    VISION_ENCODERS.add(name, factory, embed_dim=embed_dim, weights=asset or weights_name,
                        weights_sha256=sha256, **meta)


register_torchvision(
    "torchvision:mobilenet_v2.imagenet1k_v1", "mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1",
    asset="mobilenet_v2.imagenet1k_v1", embed_dim=1280,
    license=_TORCHVISION_LICENSE,
    citation="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018",
    description="MobileNetV2 ImageNet-1k (torchvision); 7x7x1280 feature map, mean-pooled 1280-d",
)
