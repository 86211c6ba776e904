"""Small helpers the adapters share: seeded construction, one-line name and path errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from align.errors import BadInputError, UnknownNameError

# The weights hash of an encoder with randomly initialised, unseeded weights: distinct from every checkpoint.
RANDOM_INIT = "random-init"

# CIFAR-10 labels: readable names for the 10-way heads of the toy encoders.
TOY_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Random initialisation that is the same on every call and leaves the global RNG untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def unknown(what: str, name: str, choices: Iterable[str], *, listing: str) -> UnknownNameError:
    """``UnknownNameError`` naming up to three close matches, or where to look when there are none."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"see {listing}"
    return UnknownNameError(f"unknown {what} {name!r}; {hint}")


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a ``Path`` if it is a file, else a one-line ``BadInputError`` naming it."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise BadInputError(f"{what} {str(resolved)!r} does not exist or is not a file")
    return resolved


def looks_like_path(identifier: str) -> bool:
    """Identifiers that are local paths rather than hub ids (``/abs``, ``./rel``, ``~/x``, existing dirs)."""
    return identifier.startswith(("/", "./", "../", "~")) or Path(identifier).expanduser().is_dir()
