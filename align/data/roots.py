"""Where a user's copy of a standard dataset lives: a ``root`` option, else an environment variable.

COCO, Flickr, ImageNet and CIFAR cannot be shipped or downloaded here, so each of their sources reads
the copy the user already has. Every way the root can be wrong (not given, not a folder, a file of
the layout missing) is one :class:`BadInputError` line that names the dataset and the layout it
expected, so the user sees what to point it at instead of a traceback from deep inside a reader.
"""

from __future__ import annotations

import os
from pathlib import Path

from align.errors import BadInputError


def user_root(dataset: str, root: str | Path | None, env: str, layout: str) -> Path:
    """``root`` if given, else ``$env``; it must be an existing folder. ``layout`` describes what it holds."""
    given = root if root is not None else os.environ.get(env) or None
    if given is None:
        raise BadInputError(f"dataset {dataset!r}: no root given; set options: {{root: <folder>}} in the config "
                            f"or ${env} to a folder laid out as {layout}")
    path = Path(given).expanduser()
    if not path.is_dir():
        raise BadInputError(f"dataset {dataset!r}: root {path} is not a folder (expected {layout})")
    return path


def layout_file(dataset: str, path: Path, layout: str) -> Path:
    """``path`` if it is a file, else the one-line error naming it and the expected layout."""
    if not path.is_file():
        raise BadInputError(f"dataset {dataset!r}: {path} is missing (expected {layout})")
    return path


def layout_folder(dataset: str, path: Path, layout: str) -> Path:
    """``path`` if it is a folder, else the one-line error naming it and the expected layout."""
    if not path.is_dir():
        raise BadInputError(f"dataset {dataset!r}: folder {path} is missing (expected {layout})")
    return path
