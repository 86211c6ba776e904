"""Frozen vision encoders: ``VISION_ENCODERS.create("torchvision:mobilenet_v2.imagenet1k_v1")``.

Importing this package registers every built-in adapter. Each adapter imports its upstream library
(timm, open_clip, transformers, efficientnet_lite_pytorch, torchvision models) only inside its
factories, so ``import align`` stays cheap.
"""

from align.encoders import (  # noqa: F401  (imported for their registrations)
    efficientnet_lite,
    hf_models,
    open_clip_models,
    timm_models,
    torchvision_models,
    toy,
)
from align.encoders.base import DataConfig, VisionEncoder
from align.registry import VISION_ENCODERS

__all__ = ["VISION_ENCODERS", "DataConfig", "VisionEncoder"]
