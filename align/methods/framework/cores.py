"""A trained aligner's core class as the string a Lightning checkpoint stores, and back.

Aligners name their core by class (``TrainedAligner.core_class``); a checkpoint's hyper-parameters
must be plain data (they are read back with ``weights_only=True``), so ``CoreModule`` stores
:func:`core_path` of it. Reading a checkpoint, :func:`resolve_core` imports the class again; the
paths written by earlier layouts of the package resolve through ``MOVED_MODULES`` alone.
"""

from __future__ import annotations

import importlib

from torch import nn

from align.errors import BadInputError

# Modules whose cores now live elsewhere: old module -> where the core of a checkpoint naming it now is.
# The first three are the layout before one subpackage per method; Codebook-VLP's core later moved from
# its aligner module into ``core.py`` (checkpoints written before this table named the aligner module).
MOVED_MODULES = {
    "align.methods.vlap": "align.methods.vlap.aligner",
    "align.methods.lqae": "align.methods.lqae.aligner",
    "align.methods.codebook_vlp": "align.methods.codebook_vlp.core",
    "align.methods.codebook_vlp.aligner": "align.methods.codebook_vlp.core",
}


def core_path(core: type[nn.Module]) -> str:
    """``"package.module:Class"`` of a core class (what a checkpoint records)."""
    return f"{core.__module__}:{core.__qualname__}"


def resolve_core(core: type[nn.Module] | str) -> type[nn.Module]:
    """The core class itself, or the one a checkpoint's ``"package.module:Class"`` names (paths of earlier
    layouts through ``MOVED_MODULES``); a name that is no core class is a one-line error."""
    if isinstance(core, type):
        return core
    module, _, name = str(core).partition(":")
    try:
        found = getattr(importlib.import_module(MOVED_MODULES.get(module, module)), name)
    except (ImportError, AttributeError, ValueError):
        found = None
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise BadInputError(f"{core!r} names no core class of this version of align")
    return found
