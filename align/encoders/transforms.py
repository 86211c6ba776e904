"""An encoder's :class:`DataConfig`, the eval-time preprocessing built from it, and the RGBA → RGB step.

Every encoder's ``preprocess`` starts with :class:`ToRGB`: upstream transforms call ``convert("RGB")``,
which drops the alpha channel and turns transparent emoji pixels into whatever colour hides under
them (often black). The callables here are classes, not lambdas, so they pickle into DataLoader
worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class DataConfig:
    """Preprocessing that the weights were trained with (timm's ``resolve_model_data_config`` shape)."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    background: tuple[int, int, int] = (255, 255, 255)  # RGBA images are composited onto this
    crop_mode: str = "center"  # "center": resize short side + centre crop; "squash": resize both sides


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB copy of any PIL image; transparency is composited onto ``background`` (emoji are RGBA).

    Other modes go through :func:`align.data.images.to_standard_mode` first, so 16-bit greyscale is
    scaled by its real range rather than clipped, and palette transparency becomes alpha."""
    from align.data.images import to_standard_mode

    image = to_standard_mode(image)
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


class ToRGB:
    """Picklable ``to_rgb`` with a fixed background."""

    def __init__(self, background: tuple[int, int, int] = (255, 255, 255)) -> None:
        self.background = tuple(background)

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_rgb(image, self.background)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"ToRGB(background={self.background})"


class RGBThen:
    """Composite onto the background first, then run an upstream transform (torchvision, timm, HF...)."""

    def __init__(self, transform: Callable[[Image.Image], Any], background: tuple[int, int, int]) -> None:
        self.to_rgb = ToRGB(background)
        self.transform = transform

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(self.to_rgb(image))

    def __repr__(self) -> str:
        return f"RGBThen({self.to_rgb!r}, {self.transform!r})"


def interpolation_mode(name: str) -> Any:
    """torchvision ``InterpolationMode`` for a timm-style name (``"bicubic"``)."""
    from torchvision.transforms import InterpolationMode

    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r} is not one of {', '.join(_INTERPOLATIONS)}")
    return InterpolationMode(name)


def build_transform(cfg: DataConfig) -> Callable[[Image.Image], torch.Tensor]:
    """timm's eval recipe: resize the short side to ``size / crop_pct`` and centre-crop ``size``
    (``crop_mode="squash"`` resizes both sides to ``size / crop_pct`` instead), then normalise."""
    from torchvision.transforms import v2 as T

    _, height, width = cfg.input_size
    interpolation = interpolation_mode(cfg.interpolation)
    if cfg.crop_mode == "squash":
        resize: Any = (math.floor(height / cfg.crop_pct), math.floor(width / cfg.crop_pct))
    elif cfg.crop_mode == "center":
        resize = math.floor(min(height, width) / cfg.crop_pct)
    else:
        raise ValueError(f"crop_mode {cfg.crop_mode!r} is not 'center' or 'squash'")
    return T.Compose([
        ToRGB(cfg.background),
        T.PILToTensor(),
        T.Resize(resize, interpolation=interpolation, antialias=True),
        T.CenterCrop((height, width)),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(list(cfg.mean), list(cfg.std)),
    ])
