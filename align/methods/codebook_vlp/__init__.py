"""Codebook-VLP (Guo et al., arXiv 2208.00475): a jointly learned visual codebook whose codes are
the targets of masked image modeling, beside contrastive, matching and masked-language objectives.

- ``aligner.py``: the hyper-parameters and the registered aligner (fit, embeddings, re-ranked retrieval).
- ``core.py``: the model (image and text encoders, fusion, momentum copies, codebook) and its losses.
- ``layers.py``: the transformer blocks and heads.
- ``objectives.py``: ITC, ITM (hard negatives), MLM and MIM losses and MIM's target weights.
- ``codebook.py``: the visual codebook (k-means init, EMA updates, dead-code restarts, usage and health).
- ``rerank.py``: ALBEF's re-ranking of retrieval candidates by the ITM head.
"""

from align.methods.codebook_vlp.aligner import CodebookVLPAligner, CodebookVLPCore

__all__ = ["CodebookVLPAligner", "CodebookVLPCore"]
