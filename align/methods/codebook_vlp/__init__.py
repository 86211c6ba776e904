"""Codebook-VLP (Duan et al., arXiv 2208.00475): a jointly learned visual codebook whose codes are
the targets of masked image modeling, beside contrastive, matching and masked-language objectives.

- ``aligner.py``: the core (image and text encoders, fusion, momentum copies) and the registered aligner.
- ``layers.py``: the transformer blocks and heads.
- ``objectives.py``: ITC, ITM (hard negatives), MLM and MIM losses.
- ``codebook.py``: the visual codebook (EMA updates, dead-code restarts, usage statistics).
"""

from align.methods.codebook_vlp.aligner import CodebookVLPAligner, CodebookVLPCore

__all__ = ["CodebookVLPAligner", "CodebookVLPCore"]
