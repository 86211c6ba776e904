"""Which weights produced a feature matrix: the sha256 that goes into every feature-cache key.

The hash is always of the files really loaded, never a catalogue's word for them: an encoder built by
align records ``weights_sha256`` from the files it read (see the loaders in ``align.encoders`` and
``align.text``), and without an encoder a packaged asset's files are hashed (and checked against the
catalogue's pins) on disk. So features computed from a damaged or replaced weight file cannot sit
under the genuine key; a damaged packaged file is a one-line error naming it.
"""

from __future__ import annotations

from typing import Any

# RANDOM_INIT: the hash of randomly initialised, unseeded weights. It lives with the encoders, which set
# it, so that they need not import this package (features are built on encoders); re-exported here.
from align.encoders._common import RANDOM_INIT

__all__ = ["RANDOM_INIT", "registry_fingerprint", "weights_fingerprint"]


def registry_fingerprint(registry: Any, name: str) -> str | None:
    """Weights hash of ``name`` as the registry would build it, without building it (no model load)."""
    from align.assets import CATALOG, asset_fingerprint, is_present, require
    from align.assets.hashing import combined_sha256, file_sha256, hf_folder_sha256

    meta = registry.meta(name)
    if meta.weights in CATALOG:
        spec = CATALOG[meta.weights]
        if not is_present(spec):  # nothing to hash; features cached under this key came from verified files
            return next(iter(spec.sha256.values())) if len(spec.sha256) == 1 else combined_sha256(dict(spec.sha256))
        return asset_fingerprint(spec, require(spec.name))
    if meta.weights_sha256:
        return meta.weights_sha256
    from align.precision import split_precision

    source, _, identifier = split_precision(name)[0].partition(":")  # the same files in any precision
    if source == "hf" and identifier:
        from align.assets import hf_hub_cache

        return hf_folder_sha256(identifier, hf_hub_cache())
    if source == "open_clip" and identifier:  # a pretrained tag's file in open_clip's cache (None: random init)
        from align.encoders.open_clip_models import tag_weights_file

        found = tag_weights_file(identifier)
        return file_sha256(found) if found is not None else None
    return None


def weights_fingerprint(registry: Any, name: str, encoder: Any | None = None) -> str | None:
    """sha256 of the weights behind ``name``: the built encoder's own record of the files it loaded,
    else the registry's asset hashed on disk (verified against its pins), else None (no weights)."""
    found = getattr(encoder, "weights_sha256", None) if encoder is not None else None
    return found or registry_fingerprint(registry, name)
