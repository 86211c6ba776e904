"""``mnist``: the classic ``mnist.pkl.gz`` (asset ``mnist``), 28x28 greyscale digits, 10 classes.

Splits are the pickle's own: ``train`` (50000), ``val`` (10000), ``test`` (10000), in file order;
item ids are ``<split>/<i>``. The pickle stores each original byte ``b`` as ``b / 256`` (maximum
0.99609375), so ``round(x * 256)`` (clipped to 255) recovers the original bytes exactly; images keep
the file's polarity (white digit on black), as in published MNIST results (``digits``
instead uses dark-on-white; see its module). Class names are number words, as for ``digits``.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np

from align.data.arrays import DIGIT_NAMES, array_split
from align.data.base import Dataset, DatasetSplit
from align.data.prompts import load_templates
from align.data.safe_pickle import load_arrays
from align.errors import BadInputError
from align.registry import DATASETS

VERSION = "mnist-pkl+r1"
SPLITS = ("train", "val", "test")
MAX_PICKLE_BYTES = 1 << 30  # decompressed; the classic file is 220 MB, a gzip bomb is refused past this


def read_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images [N, 28, 28] uint8, labels [N] int64)}`` from the classic pickle, read with
    :mod:`align.data.safe_pickle` (numeric arrays only: nothing in the file is executed, and a crafted
    file costs time linear in its size); the packaged asset is checked against the catalogue's sha256
    before (``align.assets.require``). Kept in memory for the file as it is: a file rewritten in place,
    whatever its size and mtime, is read again (the key holds its ctime and inode)."""
    try:
        stat = path.stat()
    except OSError as err:
        raise BadInputError(f"{path}: cannot read the MNIST pickle ({err.strerror or err})") from None
    return _read(str(path), (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev))


@functools.lru_cache(maxsize=1)
def _read(path: str, _key: tuple[int, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_PICKLE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise BadInputError(f"{path}: cannot read the MNIST pickle ({' '.join(str(err).split())})") from None
    if len(data) > MAX_PICKLE_BYTES:
        raise BadInputError(f"{path}: decompresses to more than {MAX_PICKLE_BYTES} bytes "
                            "(the classic MNIST pickle is 220 MB); not an MNIST pickle")
    parts = load_arrays(data, path)
    if not isinstance(parts, tuple) or len(parts) != len(SPLITS) or any(
            not isinstance(p, tuple) or len(p) != 2 for p in parts):
        raise BadInputError(f"{path}: expected (train, val, test) pairs of (images, labels)")
    out = {}
    for name, (x, y) in zip(SPLITS, parts):
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise BadInputError(f"{path}: {name} images and labels must be arrays, not "
                                f"{type(x).__name__} and {type(y).__name__}")
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
            raise BadInputError(f"{path}: {name} images {x.shape} and labels {y.shape} are not [N, 784] and [N]")
        if y.dtype.kind not in "biu" or (y.size and not 0 <= y.min() <= y.max() < len(DIGIT_NAMES)):
            raise BadInputError(f"{path}: {name} labels must be integers 0 to {len(DIGIT_NAMES) - 1}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise BadInputError(f"{path}: {name} images hold NaN or infinite values")
        images = np.rint(np.asarray(x, dtype=np.float32) * 256.0).clip(0, 255).astype(np.uint8)
        images = images.reshape(-1, 28, 28)
        images.setflags(write=False)
        out[name] = (images, np.asarray(y, dtype=np.int64))
    return out


class MNIST(Dataset):
    name = "mnist"
    version = VERSION
    splits = SPLITS
    label_sets = ()

    def __init__(self, root: str | Path | None = None) -> None:
        self._root = None if root is None else Path(root)

    def root(self) -> Path:
        if self._root is None:
            from align.assets import require

            self._root = require("mnist")
        return self._root

    def build_split(self, split: str) -> DatasetSplit:
        images, labels = read_pickle(self.root() / "mnist.pkl.gz")[split]
        return array_split(
            dataset=self.name, split=split, version=self.version, images=images, labels=labels,
            class_names=DIGIT_NAMES, templates=load_templates("mnist"),
            item_ids=[f"{split}/{i}" for i in range(len(labels))],
        )


@DATASETS.register("mnist", license="CC-BY-SA-3.0 (Y. LeCun, C. Cortes)", weights="mnist",
                   description="MNIST 28x28 greyscale digits; train 50000 / val 10000 / test 10000 (classic pickle)")
def mnist(root: str | Path | None = None) -> MNIST:
    """``root`` overrides the ``mnist`` asset folder (must hold ``mnist.pkl.gz``)."""
    return MNIST(root)
