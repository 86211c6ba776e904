"""Whether a core is being built only to receive saved weights.

:func:`align.methods.framework.checkpoints.restore_core` builds a module and then loads a saved state over
it. A core whose construction does costly work whose only product is initial weights (LQAE's text-trained
prediction head: minutes of training on a machine without the cached head) can skip that work while
:func:`restoring` is true, building the same parameters untrained for the state to overwrite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_RESTORING: ContextVar[bool] = ContextVar("align_restoring", default=False)


def restoring() -> bool:
    """True while a module is built for saved weights to be loaded into (:func:`building_for_restore`)."""
    return _RESTORING.get()


@contextmanager
def building_for_restore() -> Iterator[None]:
    """The block builds a module whose every weight a saved state then replaces."""
    token = _RESTORING.set(True)
    try:
        yield
    finally:
        _RESTORING.reset(token)
