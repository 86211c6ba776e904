"""Reading a user's image files: which files count as images, opening one fully decoded, and
bringing every Pillow mode to one of ``L``, ``LA``, ``RGB``, ``RGBA`` with its real values.

Shared by the datasets that read files (``folder:``, ``manifest:``, emoji), by ``align embed`` and by
the encoders' and pixel readers' RGB steps; every failure is a one-line error naming the file.

Pillow's own ``convert("L")``/``convert("RGB")`` clips 16- and 32-bit greyscale to 0..255, so a nearly
black 16-bit image (values up to 2000 of 65535) would come out white. :func:`to_standard_mode`
scales instead: ``I;16*`` by 65535, ``I`` by 65535 when its values fit 16 bits (else its own min..max),
``F`` by 1 when in [0, 1], as is when in [0, 255], else by its min..max. Images larger than Pillow's
``Image.MAX_IMAGE_PIXELS`` (about 89 million pixels; a possible decompression bomb) are refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from align.errors import BadInputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
STANDARD_MODES = ("L", "LA", "RGB", "RGBA")


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, by suffix), in a stable order."""
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise BadInputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def _scaled_to_8bit(image: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float greyscale image as ``L``, scaled by its real range (see module doc)."""
    values = np.asarray(image).astype(np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        low, span = 0.0, 65535.0
    elif image.mode == "F" and low >= 0 and high <= 1:
        low, span = 0.0, 1.0
    elif image.mode == "F" and low >= 0 and high <= 255:
        low, span = 0.0, 255.0
    else:
        span = high - low or 1.0
    scaled = np.clip(np.nan_to_num((values - low) / span, nan=0.0), 0.0, 1.0)
    return Image.fromarray(np.rint(scaled * 255.0).astype(np.uint8), mode="L")


def to_standard_mode(image: Image.Image) -> Image.Image:
    """``image`` in ``L``, ``LA``, ``RGB`` or ``RGBA``, with transparency kept as an alpha channel."""
    mode = image.mode
    if mode in STANDARD_MODES and "transparency" not in image.info:
        return image
    if mode.startswith("I") or mode == "F":
        return _scaled_to_8bit(image)
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA", "RGBa", "La") or "transparency" in image.info:
        has_alpha = mode in ("PA", "RGBa", "La") or "transparency" in image.info or (
            mode == "P" and image.palette is not None and image.palette.mode == "RGBA")
        if mode == "La" or (mode in ("L", "LA") and has_alpha):
            return image.convert("LA")
        return image.convert("RGBA" if has_alpha else "RGB")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _decode(path: Path) -> Image.Image:
    """Open and fully decode ``path``; a too-large image raises ``DecompressionBombError``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refuse, not warn
        with Image.open(path) as image:
            image.load()
            return image.copy()


def image_problem_of(path: Path) -> tuple[Image.Image | None, str | None]:
    """``(image in a standard mode, None)``, or ``(None, why it is not usable)`` naming the file."""
    if not path.exists():
        return None, f"no such image {path}"
    if not path.is_file():
        return None, f"{path}: not a file"
    try:
        return to_standard_mode(_decode(path)), None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS
        return None, f"{path}: image is larger than the {limit:,}-pixel limit (PIL.Image.MAX_IMAGE_PIXELS; " \
                     "a possible decompression bomb)"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        return None, f"{path}: not a readable image ({type(err).__name__})"


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image in a standard mode, or fail with a one-line error naming the file."""
    image, problem = image_problem_of(Path(path))
    if problem is not None:
        raise BadInputError(problem)
    assert image is not None
    return image
