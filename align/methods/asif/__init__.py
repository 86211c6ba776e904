"""ASIF (Norelli et al., NeurIPS 2023): relative representations against anchor image-caption pairs.

- ``aligner.py``: the aligner (top-k, power p, sparse products) and its hyper-parameter sweep helper.
- ``explain.py``: the anchors that drove one image-text score.
The chunked top-k search it runs on lives in :mod:`align.kernels.topk`.
"""

from align.methods.asif.aligner import ASIFAligner, SparseRel

__all__ = ["ASIFAligner", "SparseRel"]
