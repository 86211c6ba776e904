"""``cifar10``, ``cifar100``: CIFAR in its official "python version", read without running the pickles.

The official archives (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``) hold Python pickles:
``data_batch_1`` .. ``_5``, ``test_batch`` and ``batches.meta`` under ``cifar-10-batches-py/``;
``train``, ``test`` and ``meta`` under ``cifar-100-python/``. Each batch is a dict with ``data``
(uint8 ``[N, 3072]``: the red, green, then blue 32x32 planes), ``labels`` (CIFAR-100: ``fine_labels``
and ``coarse_labels``) and ``filenames``. ``pickle.load`` would run whatever a replaced file names, so
they are read with :func:`align.data.safe_pickle.load_records` (arrays, numbers and strings only).

The root (``options: {root: ...}``, else ``$ALIGN_CIFAR10_ROOT`` / ``$ALIGN_CIFAR100_ROOT``) holds the
archive as downloaded, or the folder it extracts to. Splits: ``train`` (50000, batches 1-5 in order)
and ``test`` (10000), in file order; item ids ``<split>/<i>``. Class names are the meta file's, with
"_" → " " ("aquarium fish"); CIFAR-100's 20 superclasses are the extra label set ``coarse``.
Templates: the 18 of OpenAI's CLIP notebook for CIFAR (``templates/cifar.txt``). ``version`` hashes
the files read (sha256).
"""

from __future__ import annotations

import dataclasses
import functools
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from align.data.arrays import array_split
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.filehash import content_digest
from align.data.prompts import load_templates
from align.data.roots import user_root
from align.data.safe_pickle import load_records
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "cifar-python+r1"
MAX_MEMBER_BYTES = 1 << 29  # the largest real file (CIFAR-100 train) is 155 MB


@dataclass(frozen=True)
class Layout:
    name: str
    archive: str
    folder: str
    env: str
    files: dict[str, tuple[str, ...]]  # split -> batch files
    meta: str
    label_key: str
    names_key: str
    coarse: bool  # CIFAR-100's superclasses

    @property
    def description(self) -> str:
        files = ", ".join([*(f for fs in self.files.values() for f in fs), self.meta])
        return f"<root>/{self.archive} or <root>/{self.folder}/{{{files}}} (official python version)"


LAYOUTS = {
    "cifar10": Layout("cifar10", "cifar-10-python.tar.gz", "cifar-10-batches-py", "ALIGN_CIFAR10_ROOT",
                      {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
                      "batches.meta", "labels", "label_names", False),
    "cifar100": Layout("cifar100", "cifar-100-python.tar.gz", "cifar-100-python", "ALIGN_CIFAR100_ROOT",
                       {"train": ("train",), "test": ("test",)}, "meta", "fine_labels", "fine_label_names", True),
}


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _record(data: bytes, source: str) -> dict[str, Any]:
    """A pickled dict with its keys as ``str`` (Python 2 files give str, Python 3 ones bytes)."""
    value = load_records(data, source)
    if not isinstance(value, dict):
        raise BadInputError(f"{source}: expected a pickled dict, found a {type(value).__name__}")
    return {_text(k): v for k, v in value.items()}


class CIFAR(Dataset):
    splits = ("train", "test")
    user_copy = True

    def __init__(self, layout: Layout, root: str | Path | None = None) -> None:
        self.layout = layout
        self.name = layout.name
        self.label_sets = ("coarse",) if layout.coarse else ()
        self.root = user_root(layout.name, root, layout.env, layout.description)
        self.archive = self.root / layout.archive
        self.folder = self.root / layout.folder
        if not self.archive.is_file() and not self.folder.is_dir():
            raise BadInputError(f"dataset {self.name!r}: neither {self.archive} nor {self.folder}/ is in the root "
                                f"(expected {layout.description})")

    def _sources(self) -> list[Path]:
        """The files read: the archive, or the extracted files (the archive wins when both are there)."""
        if self.archive.is_file():
            return [self.archive]
        return [self.folder / f for fs in self.layout.files.values() for f in fs] + [self.folder / self.layout.meta]

    @functools.cached_property
    def version(self) -> str:  # type: ignore[override]
        return f"{RECIPE}-{self.name}-" + content_digest(self.root, self.root, self._sources())

    @functools.cached_property
    def _files(self) -> dict[str, bytes]:
        """The bytes of every file of the layout, by name (from the archive or the folder)."""
        wanted = [*(f for fs in self.layout.files.values() for f in fs), self.layout.meta]
        if not self.archive.is_file():
            missing = [f for f in wanted if not (self.folder / f).is_file()]
            if missing:
                raise BadInputError(f"dataset {self.name!r}: {self.folder / missing[0]} is missing "
                                    f"(expected {self.layout.description})")
            return {f: (self.folder / f).read_bytes() for f in wanted}
        return _from_archive(self.name, self.archive, self.layout.folder, wanted, self.layout.description)

    def _meta(self, key: str) -> tuple[str, ...]:
        source = f"{self.name} {self.layout.meta}"
        names = _record(self._files[self.layout.meta], source).get(key)
        if not isinstance(names, (list, tuple)) or not names:
            raise BadInputError(f"dataset {self.name!r}: {self.layout.meta} has no list {key!r}")
        return tuple(_text(n).replace("_", " ") for n in names)

    def build_split(self, split: str) -> DatasetSplit:
        classes = self._meta(self.layout.names_key)
        images, labels, coarse = [], [], []
        for file in self.layout.files[split]:
            batch = _record(self._files[file], f"{self.name} {file}")
            images.append(_images(self.name, file, batch))
            labels.append(_labels(self.name, file, batch, self.layout.label_key, len(images[-1]), len(classes)))
            if self.layout.coarse:
                coarse.append(_labels(self.name, file, batch, "coarse_labels", len(images[-1]),
                                      len(self._meta("coarse_label_names"))))
        pixels = np.concatenate(images)
        pixels.setflags(write=False)
        out = array_split(dataset=self.name, split=split, version=self.version, images=pixels,
                          labels=np.concatenate(labels), class_names=classes, templates=load_templates("cifar"),
                          item_ids=[f"{split}/{i}" for i in range(len(pixels))])
        if not self.layout.coarse:
            return out
        superclasses = LabelSet(np.concatenate(coarse), self._meta("coarse_label_names"), load_templates("cifar"))
        return dataclasses.replace(out, extra_labels={"coarse": superclasses})


def _from_archive(name: str, archive: Path, folder: str, wanted: list[str], layout: str) -> dict[str, bytes]:
    """Read ``folder/<file>`` for each wanted file out of the tar.gz (only those members, size-checked)."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                file = member.name.removeprefix("./").removeprefix(folder + "/")
                if file in wanted and member.isfile() and member.name.removeprefix("./") == f"{folder}/{file}":
                    if member.size > MAX_MEMBER_BYTES:
                        raise BadInputError(f"{archive}: {member.name} claims {member.size} bytes; "
                                            f"not a CIFAR file")
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    out[file] = extracted.read()
    except (OSError, EOFError, tarfile.TarError) as err:
        raise BadInputError(f"dataset {name!r}: {archive}: not a readable tar.gz ({' '.join(str(err).split())[:120]})") from None
    missing = [f for f in wanted if f not in out]
    if missing:
        raise BadInputError(f"dataset {name!r}: {archive} has no {folder}/{missing[0]} (expected {layout})")
    return out


def _images(name: str, file: str, batch: dict[str, Any]) -> np.ndarray:
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shown = getattr(data, "shape", type(data).__name__)
        raise BadInputError(f"dataset {name!r}: {file}: 'data' must be a uint8 array [N, 3072], found {shown}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # RGB planes -> [N, H, W, 3]


def _labels(name: str, file: str, batch: dict[str, Any], key: str, n: int, classes: int) -> np.ndarray:
    values = batch.get(key)
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != n:
        raise BadInputError(f"dataset {name!r}: {file}: expected {n} {key!r}, one per image")
    try:
        labels = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise BadInputError(f"dataset {name!r}: {file}: {key!r} must be integers") from None
    if labels.ndim != 1 or (n and not 0 <= labels.min() <= labels.max() < classes):
        raise BadInputError(f"dataset {name!r}: {file}: {key!r} must be integers 0 to {classes - 1}")
    return labels


def _register(layout: Layout, classes: int) -> None:
    def factory(root: str | None = None) -> CIFAR:
        return CIFAR(layout, root)

    DATASETS.add(layout.name, factory, license="(your copy; A. Krizhevsky, 2009)", description=(
        f"{layout.name} 32x32 RGB, {classes} classes, official python version from your copy "
        f"(read without executing the pickles): options root= (or ${layout.env}); train 50000 / test 10000"))


_register(LAYOUTS["cifar10"], 10)
_register(LAYOUTS["cifar100"], 100)
