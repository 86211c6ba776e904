"""Registered datasets with fixed, seeded splits.

Importing this package registers ``digits``, ``mnist``, ``fashion_mnist``, ``emoji`` and
``emoji.<style>``, ``shapes`` and its variants, and the ``folder:<path>`` and ``manifest:<path>``
sources; and, read from the user's own copies of the standard benchmarks, ``coco``, ``flickr30k``,
``flickr8k`` (Karpathy splits), ``coco2014``, ``coco2017``, ``imagenet1k``, ``cifar10``, ``cifar100``,
and the ``imagenet:<path>`` and ``wds:<path>`` (CLIP_benchmark webdataset) sources. Nothing heavy happens at import: data files, scikit-learn and ``align.embed`` (torch) are touched only when a split is built.
"""

from align.data import (  # noqa: F401  (register)
    cifar,
    clip_benchmark_wds,
    coco_captions,
    digits,
    emoji,
    fashion_mnist,
    folder,
    imagenet,
    karpathy,
    manifest,
    mnist,
    shapes,
)
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.prompts import load_templates

__all__ = ["Dataset", "DatasetSplit", "LabelSet", "load_templates"]
