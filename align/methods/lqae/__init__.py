"""LQAE (Liu, Yan & Abbeel, NeurIPS 2023): images quantized onto a frozen LM's vocabulary
embeddings, masked and denoised by the frozen LM, decoded back to pixels.

- ``aligner.py``: the autoencoder core (encoder, quantizer, frozen LM, pixel decoder), its baselines
  (random table, VQ-VAE) and the registered aligner.
The nearest-code quantizer lives in :mod:`align.kernels.quantizer`; pixels come from
:mod:`align.data.pixels`.
"""

from align.methods.lqae.aligner import LQAE, LQAECore

__all__ = ["LQAE", "LQAECore"]
