"""Loading from local files without a single request to the Hugging Face hub.

``local_files_only=True`` is not enough: huggingface_hub still looks up the hub's host name (it
fetches a small registry for its user agent) unless ``HF_HUB_OFFLINE`` is set, and reading that
variable happens when the library is imported. :func:`hub_offline` sets both the variable and the
library's constant for the duration of a local load, and restores them afterwards, so a later
``download=True`` load still works.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """No hub access (not even DNS) inside the block when ``active``."""
    if not active:
        yield
        return
    import huggingface_hub.constants as constants

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    saved_constant = constants.HF_HUB_OFFLINE
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_constant
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
