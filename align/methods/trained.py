"""The base of the aligners trained by gradient descent, under the import path plugins use (README
"Adding an aligner").

It lives in :mod:`align.methods.framework.trained`; this module re-exports it.
"""

from align.methods.framework.trained import (
    PRECISIONS, RESUMABLE_CHANGES, RUN_DEFAULTS, TrainedAligner, TrainedHParams, fingerprint, without_run_defaults,
)

__all__ = ["PRECISIONS", "RESUMABLE_CHANGES", "RUN_DEFAULTS", "TrainedAligner", "TrainedHParams", "fingerprint",
           "without_run_defaults"]
