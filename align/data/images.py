"""Reading a user's image files: which files count as images, and opening one fully decoded.

Shared by the datasets that read files (``folder:``, ``manifest:``, emoji) and by ``align embed``;
every failure is a one-line error naming the file.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from align.errors import BadInputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, by suffix), in a stable order."""
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise BadInputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, or fail with a one-line error naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise BadInputError(f"{path}: not a readable image ({type(err).__name__})") from None
