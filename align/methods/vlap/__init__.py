"""VLAP (Park et al., ICLR 2024): a linear map into an LLM's word-embedding space, trained with
optimal-transport assignment prediction plus captioning through the frozen LM.

- ``aligner.py``: the prefix map, its Lightning core and the registered aligner.
- ``assignment.py``: the swapped assignment-prediction loss over the vocabulary.
- ``vocabulary.py``: which word rows the assignment uses, and their marginal (from the fit captions or not).
- ``word_prior.py``: word frequencies (wordfreq) and frequent-word subsets.
The Sinkhorn solver it runs on lives in :mod:`align.kernels.sinkhorn`.
"""

from align.methods.vlap.aligner import VLAPAligner, VLAPCore

__all__ = ["VLAPAligner", "VLAPCore"]
