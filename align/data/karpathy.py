"""``coco``, ``flickr30k``, ``flickr8k``: the Karpathy splits, read from the user's own copy.

The splits every retrieval paper reports (COCO 5k test, Flickr30k 1k, Flickr8k 1k) come from
Karpathy's ``dataset_<name>.json`` files: ``images[]`` with ``filename``, ``filepath`` (COCO only:
``train2014``/``val2014``), ``split`` (``train``, ``val``, ``test``, and ``restval`` for COCO),
``sentences[]`` with ``raw`` and ``tokens``, ``imgid`` and ``sentids``. Captions are each image's
``raw`` sentences, stripped, in file order; items are the split's images in file order.

Layout under the root (``options: {root: ...}``, else ``$ALIGN_COCO_ROOT``, ``$ALIGN_FLICKR30K_ROOT``,
``$ALIGN_FLICKR8K_ROOT``): the JSON file and the images; ``images=`` names the image folder when it
is not the usual one (COCO: the root, where ``<filepath>/<filename>`` lies; Flickr30k:
``flickr30k-images/``; Flickr8k: ``Flicker8k_Dataset/``, the official archive's spelling).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from align.data.base import Dataset, DatasetSplit
from align.data.captioned import captioned_split
from align.data.roots import layout_file, layout_folder, user_root
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "karpathy+r1"


@dataclass(frozen=True)
class Layout:
    """One Karpathy dataset: its JSON file, where its images lie, and its splits."""

    name: str
    json: str
    images: str  # image folder relative to the root ("" = the root itself)
    env: str
    splits: tuple[str, ...]

    @property
    def description(self) -> str:
        folder = f"{self.images}/" if self.images else "<filepath>/"
        return f"<root>/{self.json} (Karpathy split file) and <root>/{folder}<filename> images"


LAYOUTS = {
    "coco": Layout("coco", "dataset_coco.json", "", "ALIGN_COCO_ROOT", ("train", "restval", "val", "test")),
    "flickr30k": Layout("flickr30k", "dataset_flickr30k.json", "flickr30k-images", "ALIGN_FLICKR30K_ROOT",
                        ("train", "val", "test")),
    "flickr8k": Layout("flickr8k", "dataset_flickr8k.json", "Flicker8k_Dataset", "ALIGN_FLICKR8K_ROOT",
                       ("train", "val", "test")),
}


@functools.lru_cache(maxsize=4)
def read_karpathy(path: Path, _mtime_ns: int) -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
    """``(split, filepath, filename, captions)`` per image of a Karpathy JSON file, in file order."""
    try:
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as err:
        raise BadInputError(f"{path}: not a readable Karpathy split file ({' '.join(str(err).split())[:120]})") from None
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list):
        raise BadInputError(f"{path}: expected a JSON object with an 'images' list (Karpathy split file)")
    out = []
    for number, image in enumerate(images):
        try:
            captions = tuple(s["raw"].strip() for s in image["sentences"])
            out.append((str(image["split"]), str(image.get("filepath", "")), str(image["filename"]), captions))
        except (KeyError, TypeError, AttributeError) as err:
            raise BadInputError(f"{path}: images[{number}] lacks split, filename or sentences[].raw ({err!r})") from None
        if not captions or not all(captions):
            raise BadInputError(f"{path}: images[{number}] ({image['filename']}) has an empty or no caption")
    return tuple(out)


class Karpathy(Dataset):
    """One Karpathy-split dataset over the user's copy; the root is checked when the dataset is made."""

    splits = ("train", "restval", "val", "test")  # what a config may name; each layout narrows it
    user_copy = True
    label_sets = ()

    def __init__(self, layout: Layout, root: str | Path | None = None, *, images: str | None = None,
                 skip_bad: bool = False) -> None:
        self.layout = layout
        self.name = layout.name
        self.splits = layout.splits
        self.skip_bad = skip_bad
        self.root = user_root(layout.name, root, layout.env, layout.description)
        self.json = layout_file(layout.name, self.root / layout.json, layout.description)
        folder = layout.images if images is None else images
        self.images = layout_folder(layout.name, self.root / folder, layout.description) if folder else self.root

    @functools.cached_property
    def version(self) -> str:  # type: ignore[override]
        """The recipe and the split file's sha256 (each split's own version also hashes its images)."""
        from align.checksum import file_sha256

        return f"{RECIPE}-{file_sha256(self.json)[:12]}"

    def records(self) -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
        return read_karpathy(self.json, self.json.stat().st_mtime_ns)

    def build_split(self, split: str) -> DatasetSplit:
        rows = [r for r in self.records() if r[0] == split]
        if not rows:
            raise BadInputError(f"dataset {self.name!r}: {self.json} lists no image in split {split!r}")
        paths = [self.images / filepath / filename for _, filepath, filename, _ in rows]
        return captioned_split(dataset=self.name, split=split, recipe=self.version, annotations=self.json,
                               root=self.images, paths=paths, captions=[r[3] for r in rows], skip_bad=self.skip_bad)


def _register(layout: Layout, tests: str) -> None:
    def factory(root: str | None = None, *, images: str | None = None, skip_bad: bool = False) -> Karpathy:
        return Karpathy(layout, root, images=images, skip_bad=skip_bad)

    DATASETS.add(layout.name, factory, license="(your copy; see the dataset's terms)", description=(
        f"{layout.name} Karpathy splits ({', '.join(layout.splits)}; test = {tests}) from your copy: "
        f"options root= (or ${layout.env}), images=, skip_bad="))


_register(LAYOUTS["coco"], "5k")
_register(LAYOUTS["flickr30k"], "1k")
_register(LAYOUTS["flickr8k"], "1k")
