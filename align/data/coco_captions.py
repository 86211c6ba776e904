"""``coco2014``, ``coco2017``: COCO captions from the official annotation files of the user's copy.

Layout under the root (``options: {root: ...}``, else ``$ALIGN_COCO_ROOT``):
``annotations/captions_{train,val}<year>.json`` and the image folders ``{train,val}<year>/``. The
JSON's ``images[]`` give ``id`` and ``file_name``, its ``annotations[]`` give ``image_id`` and
``caption``. Items are the images in the order of ``images[]`` that have at least one caption;
captions are stripped, in the order of ``annotations[]``. Splits: ``train`` and ``val`` (the official
ones; the Karpathy 5k test split is the ``coco`` dataset).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from align.data.base import Dataset, DatasetSplit
from align.data.captioned import captioned_split
from align.data.roots import layout_file, layout_folder, user_root
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "coco-captions+r1"
ENV = "ALIGN_COCO_ROOT"


def layout(year: int) -> str:
    return (f"<root>/annotations/captions_{{train,val}}{year}.json and <root>/{{train,val}}{year}/<file_name> "
            "images (COCO captions layout)")


@functools.lru_cache(maxsize=2)
def read_captions(path: Path, _mtime_ns: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(file_name, captions)`` per captioned image of a COCO captions JSON file."""
    try:
        payload = json.loads(path.read_bytes())
        images = [(int(image["id"]), str(image["file_name"])) for image in payload["images"]]
        captions: dict[int, list[str]] = {}
        for note in payload["annotations"]:
            captions.setdefault(int(note["image_id"]), []).append(str(note["caption"]).strip())
    except (OSError, ValueError, RecursionError) as err:
        raise BadInputError(f"{path}: not a readable COCO captions file ({' '.join(str(err).split())[:120]})") from None
    except (KeyError, TypeError) as err:
        raise BadInputError(f"{path}: expected images[] with id, file_name and annotations[] with image_id, "
                            f"caption (COCO captions file; missing {err})") from None
    empty = [i for i, caps in captions.items() if not all(caps)]
    if empty:
        raise BadInputError(f"{path}: image id {empty[0]} has an empty caption")
    return tuple((name, tuple(captions[i])) for i, name in images if i in captions)


class CocoCaptions(Dataset):
    splits = ("train", "val")
    user_copy = True
    label_sets = ()

    def __init__(self, year: int, root: str | Path | None = None, *, skip_bad: bool = False) -> None:
        self.year = year
        self.name = f"coco{year}"
        self.skip_bad = skip_bad
        self.root = user_root(self.name, root, ENV, layout(year))
        layout_folder(self.name, self.root / "annotations", layout(year))
        self.version = f"{RECIPE}-{year}"  # each split's own version hashes its annotation file and images

    def build_split(self, split: str) -> DatasetSplit:
        path = layout_file(self.name, self.root / "annotations" / f"captions_{split}{self.year}.json", layout(self.year))
        folder = layout_folder(self.name, self.root / f"{split}{self.year}", layout(self.year))
        rows = read_captions(path, path.stat().st_mtime_ns)
        if not rows:
            raise BadInputError(f"dataset {self.name!r}: {path} has no captioned image")
        return captioned_split(dataset=self.name, split=split, recipe=self.version, annotations=path, root=folder,
                               paths=[folder / name for name, _ in rows], captions=[caps for _, caps in rows],
                               skip_bad=self.skip_bad)


def _register(year: int) -> None:
    def factory(root: str | None = None, *, skip_bad: bool = False) -> CocoCaptions:
        return CocoCaptions(year, root, skip_bad=skip_bad)

    DATASETS.add(f"coco{year}", factory, license="CC-BY-4.0 annotations; images: Flickr terms (your copy)",
                 description=f"COCO {year} captions, official train/val, from your copy: options root= "
                             f"(or ${ENV}), skip_bad=")


_register(2014)
_register(2017)
