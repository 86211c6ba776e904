"""Numeric kernels that stand alone: no aligner, no registry, only tensors in and tensors out.

- :mod:`align.kernels.sinkhorn`: float32-safe batched Sinkhorn (POT's conventions), used by VLAP.
- :mod:`align.kernels.topk` and :mod:`align.kernels.anchor_chunks`: chunked top-k search over anchor
  sets larger than memory, used by ASIF.
- :mod:`align.kernels.quantizer`: nearest-code search with a straight-through estimator over a frozen
  or learned codebook, used by LQAE and its VQ-VAE baseline.

Each is tested against a reference library (POT, faiss, a plain matmul) in ``tests/unit`` and timed
in ``benchmarks/`` without building any method around it.
"""
