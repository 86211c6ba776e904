"""``digits``: scikit-learn's 8x8 handwritten digits (1797 images, bundled, no download).

Splits: ``train`` / ``test`` = a stratified 50/50 split with seed 0 (per class, the first
``ceil(n_c / 2)`` items in seeded order go to ``train``; see :mod:`align.data.subsample`), giving
901 / 896 items. Item ids are the indices in ``load_digits()``.

Images: the 0..16 intensities become an 8-bit greyscale (``L``) 8x8 image, *dark digit on white*
(``255 - round(v * 255 / 16)``), like ink on paper, which is closer to what photo-trained encoders
have seen than a glowing digit on black. Class names are number words ("zero".."nine"): a sentence
encoder gives a word more meaning than a lone numeral; templates in ``templates/digits.txt``.
"""

from __future__ import annotations

import functools

import numpy as np

from align.data.arrays import DIGIT_NAMES, array_split
from align.data.base import Dataset, DatasetSplit
from align.data.prompts import load_templates
from align.data.subsample import stratified_halves
from align.registry import DATASETS

VERSION = "sklearn-digits+r1"


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    ink = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = (255 - ink).astype(np.uint8)
    images.setflags(write=False)
    return images, np.asarray(bunch.target, dtype=np.int64)


class Digits(Dataset):
    name = "digits"
    version = VERSION
    splits = ("train", "test")
    label_sets = ()

    def build_split(self, split: str) -> DatasetSplit:
        images, labels = _digits()
        train, test = stratified_halves(labels, [str(i) for i in range(len(labels))])
        idx = train if split == "train" else test
        return array_split(
            dataset=self.name, split=split, version=self.version, images=images[idx], labels=labels[idx],
            class_names=DIGIT_NAMES, templates=load_templates("digits"), item_ids=[str(i) for i in idx],
        )


@DATASETS.register("digits", license="BSD-3-Clause (scikit-learn)",
                   description="scikit-learn 8x8 digits, 10 classes; train/test stratified 50/50 (901/896)")
def digits() -> Digits:
    return Digits()
