"""The aligner interface, under the import path plugins and scripts use (README "Adding an aligner").

It lives in :mod:`align.methods.framework.base`; this module re-exports what it held.
"""

from align.methods.framework.base import (
    Aligner, ImageInput, caption_strings, check_caption_pairs, check_features, check_pairs, check_tokens, is_number,
    load_aligner, saved_meta,
)
from align.methods.framework.capabilities import IMAGE_INPUTS, TEXT_INPUTS

__all__ = ["IMAGE_INPUTS", "TEXT_INPUTS", "Aligner", "ImageInput", "caption_strings", "check_caption_pairs",
           "check_features", "check_pairs", "check_tokens", "is_number", "load_aligner", "saved_meta"]
