"""LQAE (Liu, Yan & Abbeel, NeurIPS 2023): images quantized onto a frozen LM's vocabulary
embeddings, masked and denoised by the frozen LM, decoded back to pixels.

- ``aligner.py``: the autoencoder core (encoder, quantizer, frozen LM, pixel decoder), its baselines
  (random table, VQ-VAE) and the registered aligner;
- ``denoiser.py``: the frozen LM's pass, masked (BERT) or causal (Gemma-3, pretrained tied head);
- ``codebook.py``: the searchable rows (all, or frequent whole words) and the random table;
- ``augment.py``: seeded random resized crop + flip; ``decoder.py``: the pixel decoder.
It trains with the shared Lightning module (:mod:`align.methods.framework.module`), at the official
run's AdamW betas and warm-up + cosine schedule, which the aligner declares.
The nearest-code quantizer lives in :mod:`align.kernels.quantizer`; pixels come from
:mod:`align.data.pixels`.
"""

from align.methods.lqae.aligner import LQAE, LQAECore

__all__ = ["LQAE", "LQAECore"]
