"""Imports every module that registers a built-in part (``align.registry.load_plugins`` imports it by name)."""

import align.data  # noqa: F401
import align.encoders  # noqa: F401
import align.methods  # noqa: F401
import align.text  # noqa: F401
