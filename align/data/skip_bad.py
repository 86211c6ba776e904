"""Which datasets ``--skip-bad`` reaches: those whose factory takes a ``skip_bad`` argument.

One declaration decides, the factory's own signature, so a new source that reads a user's image files
(and can drop an unreadable one, counting it in ``DatasetSplit.skipped``) is reached by ``align bench
--skip-bad`` and ``align embed --skip-bad`` as soon as it takes the argument, with no list of source
names to keep in step. Packaged datasets (verified assets) and CIFAR (pixel arrays in a few batch files,
no per-image decoding) take none: they have no bad row to skip, only a bad file, which stays an error.
"""

from __future__ import annotations

import inspect
from typing import Any


def takes_skip_bad(dataset: str) -> bool:
    """Whether the registered dataset ``dataset``'s factory takes ``skip_bad`` (an unknown name: a one-line error)."""
    from align.registry import DATASETS

    try:
        parameters = inspect.signature(DATASETS.factory(dataset)).parameters
    except (TypeError, ValueError):  # no readable signature: it declares nothing
        return False
    return "skip_bad" in parameters


def skip_bad_options(dataset: str, skip_bad: bool) -> dict[str, Any]:
    """``{"skip_bad": True}`` when ``skip_bad`` is asked for and ``dataset`` takes it, else ``{}``."""
    return {"skip_bad": True} if skip_bad and takes_skip_bad(dataset) else {}
