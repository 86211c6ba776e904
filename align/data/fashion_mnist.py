"""``fashion_mnist``: Zalando's Fashion-MNIST, 28x28 greyscale, 10 classes (asset ``fashion-mnist``).

Splits are the official files: ``train`` (60000, ``train-*``) and ``test`` (10000, ``t10k-*``), in
file order; item ids are ``train/<i>`` and ``t10k/<i>``. Images keep the files' polarity (light
garment on black), like every published Fashion-MNIST result. Class names are the standard ones
("T-shirt/top", "Trouser", ...) in label order; templates in ``templates/fashion_mnist.txt``.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np

from align.data.arrays import array_split
from align.data.base import Dataset, DatasetSplit
from align.data.prompts import load_templates
from align.errors import BadInputError
from align.registry import DATASETS

VERSION = "fashion-mnist-idx+r1"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": "train", "test": "t10k"}


@functools.lru_cache(maxsize=4)
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a read-only uint8 array: ``[N]`` labels or ``[N, H, W]`` images."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise BadInputError(f"{path}: cannot read IDX file ({err})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise BadInputError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise BadInputError(f"{path}: IDX payload is {len(data) - offset} bytes, header says {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


class FashionMNIST(Dataset):
    name = "fashion_mnist"
    version = VERSION
    splits = ("train", "test")
    label_sets = ()

    def __init__(self, root: str | Path | None = None) -> None:
        self._root = None if root is None else Path(root)

    def root(self) -> Path:
        if self._root is None:
            from align.assets import require

            self._root = require("fashion-mnist")
        return self._root

    def build_split(self, split: str) -> DatasetSplit:
        prefix = _FILES[split]
        images = read_idx(self.root() / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(self.root() / f"{prefix}-labels-idx1-ubyte.gz")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise BadInputError(f"{self.root()}: {prefix} images {images.shape} and labels {labels.shape} disagree")
        return array_split(
            dataset=self.name, split=split, version=self.version, images=images, labels=labels.astype(np.int64),
            class_names=CLASS_NAMES, templates=load_templates("fashion_mnist"),
            item_ids=[f"{prefix}/{i}" for i in range(len(labels))],
        )


@DATASETS.register("fashion_mnist", license="MIT (Zalando)", weights="fashion-mnist",
                   description="Fashion-MNIST 28x28 greyscale, 10 classes; train 60000 / test 10000 (official files)")
def fashion_mnist(root: str | Path | None = None) -> FashionMNIST:
    """``root`` overrides the ``fashion-mnist`` asset folder (same file names)."""
    return FashionMNIST(root)
