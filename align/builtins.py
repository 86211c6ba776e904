"""Imports every module that registers a built-in part (loaded through the ``align.plugins`` entry point)."""

import align.data  # noqa: F401
import align.encoders  # noqa: F401
import align.methods  # noqa: F401
import align.text  # noqa: F401
