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

``auto`` is a *request*, never a name and never a default: :func:`resolve_precision` turns it into
bfloat16 where the device that computes has native bfloat16 matrix units (:func:`native_bfloat16`:
x86 AMX or AVX512-BF16 or Arm BF16 in ``/proc/cpuinfo``, or a CUDA GPU of compute capability 8.0 or
more), else float32. It is resolved once, when a config or option is read, and the resolved precision
is what goes into names; so a result computed under ``auto`` has exactly the identity of one computed
under an explicit ``bfloat16`` or ``float32``, and the two precisions never share a name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from align.errors import BadInputError

PRECISIONS = ("float32", "bfloat16")
DEFAULT_PRECISION = "float32"
SEPARATOR = "@"
AUTO = "auto"
REQUESTS = (*PRECISIONS, AUTO)  # what a config key or option accepts; names carry only PRECISIONS

CPUINFO = Path("/proc/cpuinfo")
X86_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # the x86 ``flags`` line; best first
ARM_BF16_FEATURE = "bf16"  # the Arm ``Features`` line


def check_precision(value: Any, where: str = "precision") -> str:
    """``value`` if it is a known precision, else a one-line :class:`BadInputError` naming it."""
    if value not in PRECISIONS:
        if value == AUTO:
            raise BadInputError(f"{where}: 'auto' is resolved where a precision is asked for (a config's "
                                f"precision key, --precision), never part of a name; choose one of "
                                f"{', '.join(PRECISIONS)}")
        raise BadInputError(f"{where}: unknown precision {value!r}; choose one of {', '.join(PRECISIONS)}")
    return str(value)


def cpu_flags(cpuinfo: Path | None = None) -> dict[str, tuple[str, ...]] | None:
    """The first ``flags`` (x86) and ``Features`` (Arm) lines of ``/proc/cpuinfo``, split into words,
    keyed by that name; None when the file cannot be read (not Linux, no permission)."""
    try:
        text = (cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return None
    found: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key in ("flags", "Features") and key not in found:
            found[key] = tuple(value.split())
    return found


def cpu_bfloat16(flags: dict[str, tuple[str, ...]] | None) -> str | None:
    """Why the CPU has native bfloat16 units ("x86 amx_bf16", "x86 avx512_bf16", "arm bf16"), or None."""
    if not flags:
        return None
    x86 = flags.get("flags", ())
    for flag in X86_BF16_FLAGS:
        if flag in x86:
            return f"x86 {flag}"
    if ARM_BF16_FEATURE in flags.get("Features", ()):
        return f"arm {ARM_BF16_FEATURE}"
    return None


def cuda_bfloat16() -> str | None:
    """Why the current CUDA GPU computes bfloat16 natively (compute capability 8.0 or more), or None;
    None without CUDA. ``is_bf16_supported`` alone is not enough: by default it also says yes for
    older GPUs that only emulate bfloat16."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 0) or not torch.cuda.is_bf16_supported(including_emulation=False):
        return None
    return f"CUDA {torch.cuda.get_device_name()} (compute capability {major}.{minor} >= 8.0)"


def native_bfloat16(device: str | None = "cpu") -> str | None:
    """Why ``device`` has native bfloat16 matrix units, or None where it has none (or cannot tell).

    ``"cpu"`` reads the CPU flags (:func:`cpu_flags`), ``"cuda"`` (or ``"cuda:N"``) asks torch about
    the current GPU (CUDA is only touched here), None asks about the machine: the CPU, then a CUDA
    GPU if there is one. Encoders compute features on the CPU (``align bench``, ``align embed``), so
    that is what ``auto`` asks about unless told otherwise."""
    kind = None if device is None else str(device).partition(":")[0]
    if kind not in (None, "cpu", "cuda"):
        return None  # mps, xla, ...: no claim
    reason = cpu_bfloat16(cpu_flags()) if kind in (None, "cpu") else None
    if reason is None and kind in (None, "cuda"):
        reason = cuda_bfloat16()
    return reason


def auto_precision(device: str | None = "cpu") -> tuple[str, str]:
    """What ``auto`` means on ``device`` and why: ``("bfloat16", "x86 avx512_bf16")`` or
    ``("float32", "no native bfloat16 units on cpu")``."""
    reason = native_bfloat16(device)
    if reason is not None:
        return "bfloat16", reason
    where = "this machine" if device is None else str(device)
    return DEFAULT_PRECISION, f"no native bfloat16 units on {where}"


def auto_line(precision: str, reason: str) -> str:
    """The one line a run prints about its ``auto`` choice."""
    return f"precision auto -> {precision} ({reason})"


def resolve_precision(value: Any, where: str = "precision", device: str | None = "cpu") -> str:
    """``value`` as a precision names can carry: ``auto`` becomes bfloat16 or float32 for ``device``
    (:func:`auto_precision`), anything else is checked as :func:`check_precision` does."""
    if value == AUTO:
        return auto_precision(device)[0]
    if value not in PRECISIONS:
        raise BadInputError(f"{where}: unknown precision {value!r}; choose one of {', '.join(REQUESTS)}")
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
    suffix it already has stays), so float32 identities never move. ``auto`` is resolved for the CPU
    (:func:`resolve_precision`), so the name carries what it chose."""
    base, current = split_precision(name)
    precision = resolve_precision(precision)
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
