"""Reading numeric arrays out of a pickle without ever running code from it.

The classic ``mnist.pkl.gz`` is a pickle: tuples of numpy arrays. ``pickle.load`` would call
whatever callable the file names, so a replaced file could run anything. This reader resolves only
the handful of numpy globals that rebuild a plain numeric array; any other global (``os.system``,
``builtins.eval``, a class with a ``__reduce__``) is refused before it is looked up, so nothing in the
file is ever executed. Object arrays are refused too, and the result must be tuples of numeric arrays.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from align.errors import BadInputError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} (only numpy arrays are read)")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def _check(value: Any, where: str) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise pickle.UnpicklingError(f"{where} is an array of dtype {value.dtype}, not numbers")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
    else:
        raise pickle.UnpicklingError(f"{where} is a {type(value).__name__}, not an array or tuple")


def load_arrays(data: bytes, source: str) -> Any:
    """Nested tuples/lists of numeric numpy arrays from pickle bytes, or a one-line error naming ``source``."""
    try:
        value = _NumpyOnly(io.BytesIO(data), encoding="latin1").load()
        _check(value, "the pickle")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, UnicodeDecodeError) as err:
        reason = str(err).replace("\n", " ")[:200] or type(err).__name__
        raise BadInputError(f"{source}: not a pickle of numeric arrays ({reason})") from None
    return value
