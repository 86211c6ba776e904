"""Numeric precision of an encoder's forward pass: ``float32`` (default) or ``bfloat16``.

A precision other than float32 is part of the encoder's *name*, as a suffix: ``toy:cnn@bfloat16``.
Every identity built from the name (feature-cache key and folder, result paths, ``pretrained`` and
``image_encoder`` in each result) then tells the two precisions apart, while float32 names, and so
every existing cache entry and result, stay exactly as they were. ``@float32`` is refused so that
one feature set has one name.

bfloat16 runs the forward under ``torch.autocast`` (weights stay float32; outputs are cast back to
float32), with conv nets in channels-last memory format. It is only faster on hardware with bf16
matrix units (AMX, AVX512-BF16, recent GPUs); elsewhere it is slower, which is why it is never a
default. Torch is imported lazily: the registry imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from align.errors import BadInputError

PRECISIONS = ("float32", "bfloat16")
DEFAULT_PRECISION = "float32"
SEPARATOR = "@"


def check_precision(value: Any, where: str = "precision") -> str:
    """``value`` if it is a known precision, else a one-line :class:`BadInputError` naming it."""
    if value not in PRECISIONS:
        raise BadInputError(f"{where}: unknown precision {value!r}; choose one of {', '.join(PRECISIONS)}")
    return str(value)


def split_precision(name: str) -> tuple[str, str]:
    """``("toy:cnn", "bfloat16")`` for ``"toy:cnn@bfloat16"``; ``(name, "float32")`` without a suffix."""
    base, sep, precision = name.rpartition(SEPARATOR)
    if not sep or not base or "/" in precision or ":" in precision:  # an "@" inside a path or id
        return name, DEFAULT_PRECISION
    check_precision(precision, f"encoder {name!r}")
    if precision == DEFAULT_PRECISION:
        raise BadInputError(f"encoder {name!r}: float32 is the default; write {base!r} without the suffix")
    return base, precision


def with_precision(name: str, precision: str) -> str:
    """``name`` carrying ``precision``. float32 is "no request": the name is returned as it is (a
    suffix it already has stays), so float32 identities never move."""
    base, current = split_precision(name)
    precision = check_precision(precision)
    if precision == DEFAULT_PRECISION:
        return name
    if current not in (DEFAULT_PRECISION, precision):
        raise BadInputError(f"encoder {name!r} already says {current}; it cannot also run in {precision}")
    return f"{base}{SEPARATOR}{precision}"


def precision_of(part: Any) -> str:
    """The precision a built encoder runs in (float32 unless :func:`set_precision` said otherwise)."""
    return getattr(part, "precision", DEFAULT_PRECISION)


def set_precision(part: Any, precision: str) -> Any:
    """Make ``part`` (a built encoder) run in ``precision``; returns it.

    For bfloat16, a module holding 2-d convolutions is moved to channels-last memory format (the
    layout the bf16 conv kernels want); float32 leaves the module untouched."""
    precision = check_precision(precision)
    if precision == DEFAULT_PRECISION:
        return part
    import torch

    object.__setattr__(part, "precision", precision)  # a plain attribute, also on an nn.Module
    if isinstance(part, torch.nn.Module) and any(isinstance(m, torch.nn.Conv2d) for m in part.modules()):
        part.to(memory_format=torch.channels_last)
        object.__setattr__(part, "channels_last", True)
    return part


@contextmanager
def autocast_for(part: Any, device: Any = None) -> Iterator[None]:
    """Run the enclosed forward in ``part``'s precision (no-op for float32), on ``device`` (default:
    where ``part``'s first parameter lives, else the CPU)."""
    precision = precision_of(part)
    if precision == DEFAULT_PRECISION:
        yield
        return
    import torch

    if device is None and isinstance(part, torch.nn.Module):
        device = next((t.device for t in part.parameters()), None)
    device_type = torch.device(device or "cpu").type
    with torch.autocast(device_type=device_type, dtype=getattr(torch, precision)):
        yield


def as_input(part: Any, pixels: Any) -> Any:
    """``pixels`` in the memory format ``part`` expects (channels-last for a bf16 conv net)."""
    if getattr(part, "channels_last", False) and getattr(pixels, "ndim", 0) == 4:
        import torch

        return pixels.contiguous(memory_format=torch.channels_last)
    return pixels
