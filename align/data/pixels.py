"""Pixels for methods that train their own image encoder (LQAE): a split as ``[N, C, S, S]`` in [0, 1].

LQAE trains its encoder and decoder on raw pixels, not on a frozen encoder's features, so it needs the
images themselves at one small size. Greyscale images (Fashion-MNIST, MNIST) stay one channel and are
zero-padded to ``size`` when smaller (28 -> 32 adds a black border, the background colour, and keeps
every pixel as it is); colour images are composited onto white (emoji are RGBA) and resized with
Pillow's box filter (an area average, the right filter when shrinking 64 -> 32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from align.data.images import to_standard_mode
from align.errors import BadInputError


def image_array(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """``[channels, size, size]`` float32 in [0, 1] for one PIL image.

    A greyscale image no larger than ``size`` is zero-padded, centred (28 -> 32 adds a black border,
    the background of Fashion-MNIST and MNIST, and keeps every pixel as it is), then repeated over
    three channels if ``channels`` is 3; anything else is resized with Pillow's box filter (an area
    average), colour images composited onto white first (emoji are RGBA)."""
    if channels not in (1, 3):
        raise BadInputError(f"pixel images: channels must be 1 or 3, got {channels}")
    image = to_standard_mode(image)  # 16-bit scaled by its range, palette transparency as alpha
    if image.mode in ("LA", "RGBA"):  # composite onto white first, so hidden colours never show
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, image.convert("RGBA"))
        image = flat.convert("L" if image.mode == "LA" else "RGB")
    small_grey = image.mode == "L" and image.width <= size and image.height <= size
    if channels == 1 or small_grey:
        grey = image.convert("L")
        w, h = grey.size
        if w <= size and h <= size:  # pad, centred, with black
            canvas = Image.new("L", (size, size), 0)
            canvas.paste(grey, ((size - w) // 2, (size - h) // 2))
            grey = canvas
        else:
            grey = grey.resize((size, size), Image.Resampling.BOX)
        array = np.asarray(grey, dtype=np.float32)[None] / 255.0
        return array if channels == 1 else np.repeat(array, 3, axis=0)
    rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BOX)
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0


def images_tensor(split: object, size: int = 32, channels: int = 1, rows: Sequence[int] | None = None) -> torch.Tensor:
    """Items ``rows`` (default: all) of a :class:`~align.data.base.DatasetSplit` as ``[N, C, S, S]``."""
    load = getattr(split, "load_image", None)
    if load is None:
        raise BadInputError(f"lqae images: {type(split).__name__} is not a dataset split (no load_image)")
    rows = range(len(split)) if rows is None else rows  # type: ignore[arg-type]
    return torch.from_numpy(np.stack([image_array(load(int(i)), size, channels) for i in rows]))


def check_images(images: torch.Tensor, what: str, channels: int, size: int) -> torch.Tensor:
    """Float ``[N, channels, size, size]`` finite pixels, or a one-line error naming the problem."""
    if not isinstance(images, torch.Tensor):
        try:
            images = torch.as_tensor(np.asarray(images))
        except (TypeError, ValueError) as err:
            raise BadInputError(f"{what}: expected an image tensor [N, C, H, W], got {type(images).__name__}") from err
    if images.ndim != 4 or images.shape[1:] != (channels, size, size):
        raise BadInputError(f"{what}: expected images of shape [N, {channels}, {size}, {size}], "
                            f"got {tuple(images.shape)}")
    if len(images) == 0:
        raise BadInputError(f"{what}: no images")
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise BadInputError(f"{what}: pixels must be finite floats in [0, 1] (got dtype {images.dtype})")
    return images.float()
