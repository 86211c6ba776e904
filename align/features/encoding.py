"""One batch through a frozen encoder, in the encoder's precision: pooled image features (and head
logits), spatial tokens, text features. Images are preprocessed a batch at a time
(:func:`align.encoders.transforms.preprocess_batch`: the same pixels as one at a time), and a frozen
float32 conv net computes their features with its inference copy (BatchNorm folded, channels-last:
:mod:`align.encoders.inference`).

Shared by the feature cache (:mod:`align.features.cache`) and the ``align embed`` command
(:mod:`align.embed`, which re-exports these names), so the cache never imports a command module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from align.encoders.inference import inference_encoder
from align.encoders.transforms import preprocess_batch
from align.precision import as_input, autocast_for

__all__ = ["encode_pil", "encode_pil_tokens", "encode_texts"]


@torch.inference_mode()
def encode_pil(encoder: Any, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled features ``[B, D]`` of one batch of PIL images, and head logits when the encoder has a head."""
    encoder.eval()
    runner = inference_encoder(encoder)
    pixels = as_input(runner, preprocess_batch(encoder.preprocess, images))
    with autocast_for(encoder):
        pooled = runner(pixels).float()
        logits = encoder.classify(pooled).float() if encoder.class_names is not None else None
    return pooled, logits


@torch.inference_mode()
def encode_pil_tokens(encoder: Any, images: Sequence[Image.Image]) -> torch.Tensor:
    """Spatial tokens ``[B, T, D]`` (float32) of one batch of PIL images."""
    encoder.eval()
    runner = inference_encoder(encoder)
    pixels = as_input(runner, preprocess_batch(encoder.preprocess, images))
    with autocast_for(encoder):
        return runner.forward_tokens(pixels).float()


def encode_texts(encoder: Any, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Text features ``[len(texts), D]`` (float32) computed in the encoder's precision."""
    with autocast_for(encoder):
        return encoder.encode_text(texts, batch_size=batch_size).float()
