"""An encoder's :class:`DataConfig`, the eval-time preprocessing built from it, and the RGBA → RGB step.

Every encoder's ``preprocess`` starts with :class:`ToRGB`: upstream transforms call ``convert("RGB")``,
which drops the alpha channel and turns transparent emoji pixels into whatever colour hides under
them (often black). The callables here are classes, not lambdas, so they pickle into DataLoader
worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


# -- batched preprocessing -----------------------------------------------------------------------
# A preprocess ends in per-pixel steps (uint8 -> float, normalise). Run one image at a time, each is
# a tiny multi-threaded torch op that costs more in thread start-up than in arithmetic; run once on
# the stacked uint8 batch, they are the same IEEE operations on every element, so the pixels are
# bit-identical (tests/unit/test_batched_preprocess.py) and the per-image part stays PIL and uint8.

PER_PIXEL_STEPS = ("ToDtype", "Normalize", "ConvertImageDtype")  # torchvision v2 classes, elementwise
Split = tuple[Callable[[Image.Image], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]  # per image, per batch


class _PresetHead:
    """The per-image part of torchvision's ``ImageClassification`` preset: resize, crop, uint8 tensor."""

    def __init__(self, preset: Any, background: tuple[int, int, int]) -> None:
        self.preset, self.to_rgb = preset, ToRGB(background)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import functional as F

        p = self.preset
        image = F.center_crop(F.resize(self.to_rgb(image), p.resize_size, interpolation=p.interpolation,
                                       antialias=p.antialias), p.crop_size)
        return image if isinstance(image, torch.Tensor) else F.pil_to_tensor(image)


class _PresetTail:
    """The per-pixel part of ``ImageClassification``: float in [0, 1], then normalised."""

    def __init__(self, preset: Any) -> None:
        self.preset = preset

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import functional as F

        return F.normalize(F.convert_image_dtype(batch, torch.float), mean=self.preset.mean, std=self.preset.std)


def _per_pixel(step: Any) -> bool:
    kind = type(step)
    return kind.__name__ in PER_PIXEL_STEPS and kind.__module__.startswith("torchvision.transforms.v2")


def _split_compose(transform: Any) -> Split | None:
    """A torchvision v2 ``Compose`` (what :func:`build_transform` makes) cut before its per-pixel tail."""
    from torchvision.transforms import v2 as T

    if type(transform) is not T.Compose:
        return None
    steps = list(transform.transforms)
    cut = len(steps)
    while cut > 0 and _per_pixel(steps[cut - 1]):
        cut -= 1
    if cut == len(steps) or cut == 0:
        return None
    return T.Compose(steps[:cut]), T.Compose(steps[cut:])


def split_transform(transform: Any) -> Split | None:
    """``(per_image, per_batch)`` with ``per_batch(stack(per_image(x) ...))`` equal to stacking
    ``transform(x)``, for the preprocessing this module builds and torchvision's classification preset;
    None for any other transform (it then runs one image at a time)."""
    if isinstance(transform, RGBThen):
        from torchvision.transforms._presets import ImageClassification

        if type(transform.transform) is ImageClassification:
            preset = transform.transform
            return _PresetHead(preset, transform.to_rgb.background), _PresetTail(preset)  # type: ignore[arg-type]
        return None
    return _split_compose(transform)


def preprocess_batch(preprocess: Callable[[Image.Image], torch.Tensor], images: Sequence[Image.Image]) -> torch.Tensor:
    """``torch.stack([preprocess(image) for image in images])``, with the per-pixel steps run once on
    the whole batch where :func:`split_transform` knows how."""
    parts = split_transform(preprocess)
    if parts is None or not images:
        return torch.stack([preprocess(image) for image in images])
    per_image, per_batch = parts
    heads = [per_image(image) for image in images]
    if not all(isinstance(head, torch.Tensor) for head in heads):  # a head that ends in PIL images
        return torch.stack([preprocess(image) for image in images])
    return per_batch(torch.stack(heads))
