"""Registered datasets with fixed, seeded splits.

Importing this package registers ``digits``, ``mnist``, ``fashion_mnist``, ``emoji`` and
``emoji.<style>``, ``shapes`` and its variants, and the ``folder:<path>`` and ``manifest:<path>``
sources. Nothing heavy happens at import: data files, scikit-learn and ``align.embed`` (torch) are touched only when a split is built.
"""

from align.data import digits, emoji, fashion_mnist, folder, manifest, mnist, shapes  # noqa: F401  (register)
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.prompts import load_templates

__all__ = ["Dataset", "DatasetSplit", "LabelSet", "load_templates"]
