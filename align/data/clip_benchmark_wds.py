"""``wds:<path>``: a dataset in CLIP_benchmark's webdataset layout, read with the ``webdataset`` package.

Layout (what ``clip_benchmark_export_wds`` writes): ``<path>/<split>/nshards.txt`` and the shards
``<path>/<split>/0.tar`` .. ``<n-1>.tar``; ``<path>/classnames.txt`` (one class per line) and
``<path>/zeroshot_classification_templates.txt`` (one template with ``{c}`` per line);
``<path>/dataset_type.txt`` optional, ``classification`` (the default) or ``retrieval``. Each sample
holds one image (``webp``, ``png``, ``jpg`` or ``jpeg``, the first present in that order, as
CLIP_benchmark picks it) and its ``cls`` (the class index, as text) or, for retrieval, its ``txt``
(one caption per line). Splits are the split folders present; items are in shard and tar order;
item ids are the sample keys. Sample files are never decoded by webdataset (its default decoders
would unpickle ``.pyd`` files): only the image and the label or captions are read, as bytes.

Images are decoded once when a split is built (a bad one is a one-line error, or with ``skip_bad``
counted and dropped) and read again from their tar by offset when needed. ``version`` hashes every
file of the layout that the dataset reads (sha256, cached by :mod:`align.data.filehash`).
"""

from __future__ import annotations

import functools
import io
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from align.data.badrows import BadRows
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.filehash import content_digest
from align.data.prompts import read_templates
from align.data.textfile import read_lines
from align.errors import AlignError, BadInputError
from align.registry import DATASETS

RECIPE = "clip-benchmark-wds+r1"
IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order
LAYOUT = ("<path>/<split>/nshards.txt and <split>/0.tar.., <path>/classnames.txt, "
          "<path>/zeroshot_classification_templates.txt (CLIP_benchmark webdataset layout)")


@dataclass(frozen=True)
class Sample:
    key: str
    shard: Path
    member: str  # the image's name inside the shard
    label: int | None
    captions: tuple[str, ...] | None


def decode(data: bytes, where: str) -> Image.Image:
    """An image from bytes in a standard mode, or a one-line error naming ``where``."""
    from align.data.images import to_standard_mode

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return to_standard_mode(image.copy())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInputError(f"{where}: image is larger than the pixel limit (PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadInputError(f"{where}: not a readable image ({type(err).__name__})") from None


@functools.lru_cache(maxsize=64)
def tar_offsets(shard: Path, _mtime_ns: int) -> dict[str, tuple[int, int]]:
    """``{member name: (data offset, size)}`` of a shard's regular files (headers only are read)."""
    with tarfile.open(shard, "r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}


class CLIPBenchmarkWDS(Dataset):
    splits: tuple[str, ...] = ()  # the split folders found in the dataset's own folder
    user_copy = True
    label_sets = ()

    def __init__(self, path: str, *, skip_bad: bool = False) -> None:
        self.root = Path(path).expanduser()
        self.name = f"wds:{path}"
        self.skip_bad = skip_bad
        if not self.root.is_dir():
            raise BadInputError(f"dataset {self.name!r}: {self.root} is not a folder (expected {LAYOUT})")
        type_file = self.root / "dataset_type.txt"
        self.kind = type_file.read_text(encoding="utf-8").strip().lower() if type_file.is_file() else "classification"
        if self.kind not in ("classification", "retrieval"):
            raise BadInputError(f"dataset {self.name!r}: {type_file} says {self.kind!r}; "
                                "align reads 'classification' and 'retrieval' sets")
        self.splits = tuple(sorted(d.name for d in self.root.iterdir() if (d / "nshards.txt").is_file()))
        if not self.splits:
            raise BadInputError(f"dataset {self.name!r}: no split folder with nshards.txt in {self.root} "
                                f"(expected {LAYOUT})")
        self.class_names: tuple[str, ...] = ()
        self.templates: tuple[str, ...] = ()
        if self.kind == "classification":
            for needed in ("classnames.txt", "zeroshot_classification_templates.txt"):
                if not (self.root / needed).is_file():
                    raise BadInputError(f"dataset {self.name!r}: {self.root / needed} is missing (expected {LAYOUT})")
            self.class_names = tuple(line.strip() for line in read_lines(self.root / "classnames.txt", "classnames")
                                     if line.strip())
            self.templates = read_templates(str(self.root / "zeroshot_classification_templates.txt"))

    def shards(self, split: str) -> list[Path]:
        count = (self.root / split / "nshards.txt").read_text(encoding="utf-8").strip()
        if not count.isdigit() or int(count) < 1:
            raise BadInputError(f"dataset {self.name!r}: {self.root / split / 'nshards.txt'} must hold a positive "
                                f"number, not {count[:20]!r}")
        shards = [self.root / split / f"{i}.tar" for i in range(int(count))]
        missing = [s for s in shards if not s.is_file()]
        if missing:
            raise BadInputError(f"dataset {self.name!r}: {missing[0]} is missing (nshards.txt says {count}; "
                                f"expected {LAYOUT})")
        return shards

    @functools.cached_property
    def version(self) -> str:  # type: ignore[override]
        files = [p for p in (self.root / n for n in ("classnames.txt", "zeroshot_classification_templates.txt",
                                                      "dataset_type.txt")) if p.is_file()]
        files += [s for split in self.splits for s in self.shards(split)]
        return f"{RECIPE}-" + content_digest(self.root, self.root, files)

    def samples(self, split: str, bad: BadRows) -> list[Sample]:
        """Every usable sample of ``split``, through webdataset (raw bytes, no decoders)."""
        try:
            import webdataset as wds
        except ImportError:
            raise AlignError(f"dataset {self.name!r}: reading it needs the webdataset package "
                             "(pip install 'align[webdataset]')") from None
        shards = self.shards(split)
        stream = wds.WebDataset([str(s) for s in shards], shardshuffle=False, nodesplitter=None,
                                workersplitter=None, empty_check=False)
        out = []
        for sample in stream:
            key, shard = sample["__key__"], Path(sample["__url__"])
            where = f"{shard}, sample {key!r}"
            ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
            try:
                if ext is None:
                    raise BadInputError(f"{where}: no image ({', '.join(IMAGE_EXTENSIONS)})")
                decode(sample[ext], where)
                label, captions = self._target(sample, where)
            except BadInputError as err:
                bad.flag(str(err))
                continue
            out.append(Sample(key, shard, f"{key}.{ext}", label, captions))
        return out

    def _target(self, sample: dict, where: str) -> tuple[int | None, tuple[str, ...] | None]:
        """The sample's class index (``cls``) or captions (``txt``), checked."""
        field = "txt" if self.kind == "retrieval" else "cls"
        if field not in sample:
            raise BadInputError(f"{where}: no .{field} file")
        text = bytes(sample[field]).decode("utf-8", "replace")
        if self.kind == "retrieval":
            captions = tuple(line.strip() for line in text.splitlines() if line.strip())
            if not captions:
                raise BadInputError(f"{where}: empty .txt captions")
            return None, captions
        value = text.strip()
        if not value.isdigit() or int(value) >= len(self.class_names):
            raise BadInputError(f"{where}: .cls {value[:20]!r} is not a class index below {len(self.class_names)} "
                                "(classnames.txt)")
        return int(value), None

    def build_split(self, split: str) -> DatasetSplit:
        bad = BadRows(f"{self.name}/{split}", self.skip_bad)
        samples = self.samples(split, bad)
        bad.done()
        if not samples:
            raise BadInputError(f"dataset {self.name!r}, split {split!r}: no usable samples ({bad.count} skipped)")

        def load_image(i: int) -> Image.Image:
            sample = samples[i]
            offset, size = tar_offsets(sample.shard, sample.shard.stat().st_mtime_ns)[sample.member]
            with open(sample.shard, "rb") as f:
                f.seek(offset)
                return decode(f.read(size), f"{sample.shard}, sample {sample.key!r}")

        labels = None
        if self.kind == "classification":
            labels = LabelSet(np.array([s.label for s in samples], dtype=np.int64), self.class_names, self.templates)
        return DatasetSplit(
            dataset=self.name, split=split, version=self.version, num_items=len(samples), load_image=load_image,
            captions=[list(s.captions or ()) for s in samples] if self.kind == "retrieval" else None,
            labels=labels, item_ids=[s.key for s in samples], skipped=bad.count,
        )


@DATASETS.register_source("wds", license="(your copy)",
                          description="wds:<path>: CLIP_benchmark webdataset layout (<split>/nshards.txt, "
                                      "<split>/N.tar, classnames.txt, zeroshot_classification_templates.txt); "
                                      "needs the 'webdataset' extra")
def clip_benchmark_wds(path: str, *, skip_bad: bool = False) -> CLIPBenchmarkWDS:
    return CLIPBenchmarkWDS(path, skip_bad=skip_bad)
