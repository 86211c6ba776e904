"""``CoreModule`` and ``load_checkpoint`` under their former path, for the scripts that still import them
(``tests/unit/test_resume_after_kill.py``); importing this imports Lightning.

The Lightning plumbing this module held now lives in the training modules of
:mod:`align.methods.framework` (``seeding``, ``trainer``, ``data``, ``module``, ``checkpoints``). No saved
file records this path (checkpoints name their core: :mod:`align.methods.framework.cores`).
"""

from align.methods.framework.checkpoints import load_checkpoint
from align.methods.framework.module import CoreModule

__all__ = ["CoreModule", "load_checkpoint"]
