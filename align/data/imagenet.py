"""``imagenet1k`` and ``imagenet:<path>``: ImageNet validation in its folder-per-class layout.

Layout: one folder per class named by its WordNet id (``n01440764/``, ...), holding that class's
images (``ILSVRC2012_val_*.JPEG``); ImageNet-V2's integer folders (``0/`` to ``999/``, the class
index) are read too. Class names and the 80 prompt templates are OpenAI's, as open_clip ships them
(``open_clip.zero_shot_metadata``: ``IMAGENET_CLASSNAMES``, ``OPENAI_IMAGENET_TEMPLATES``), so
numbers compare with CLIP's; the WordNet ids in class-index order come from timm's ImageNet info.

``imagenet1k`` reads the root given as ``options: {root: ...}`` or ``$ALIGN_IMAGENET_ROOT`` and needs
all 1000 class folders. ``imagenet:<path>`` takes any subset, for variants that keep the layout
(ImageNet-R and -A: 200 classes; ImageNet-Sketch, -V2: 1000); its classes are the folders present.
Both have one split, ``val`` (every image); files, decoding, ``skip_bad`` and the content-hashed
``version`` are those of ``folder:`` (:mod:`align.data.folder`).
"""

from __future__ import annotations

import functools
from pathlib import Path

from align.data.base import DatasetSplit
from align.data.filehash import content_digest
from align.data.folder import ImageFolder
from align.data.roots import user_root
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "imagenet-folders+r1"
ENV = "ALIGN_IMAGENET_ROOT"
LAYOUT = "<root>/<wnid>/<images>, one folder per class named by its WordNet id (n01440764, ...)"


@functools.cache
def openai_metadata() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(wnids, class names, templates)`` in class-index order: names and templates from open_clip."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
    from timm.data import ImageNetInfo

    wnids = tuple(ImageNetInfo("imagenet-1k").label_names())
    templates = tuple(template("{c}") for template in OPENAI_IMAGENET_TEMPLATES)
    assert len(wnids) == len(IMAGENET_CLASSNAMES) == 1000 and len(templates) == 80
    return wnids, tuple(IMAGENET_CLASSNAMES), templates


@functools.cache
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(openai_metadata()[0])}


def class_index(folder: str) -> int | None:
    """The ImageNet-1k class index a folder name stands for (a WordNet id or ``0``-``999``), else None."""
    if folder.isdigit() and str(int(folder)) == folder and int(folder) < 1000:
        return int(folder)
    return _wnid_index().get(folder)


class ImageNetFolders(ImageFolder):
    """An :class:`ImageFolder` whose classes are ImageNet classes, named and prompted the OpenAI way."""

    splits = ("val",)
    label_sets = ()

    def __init__(self, root: Path, name: str, *, complete: bool, skip_bad: bool = False) -> None:
        super().__init__(root, skip_bad=skip_bad)
        self.name = name
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        indices = [class_index(f) for f in folders]
        unknown = [f for f, i in zip(folders, indices) if i is None]
        if unknown:
            raise BadInputError(f"dataset {name!r}: {self.root / unknown[0]} is not an ImageNet class folder "
                                f"(expected {LAYOUT})")
        wnids, names, self.templates = openai_metadata()
        if complete and len(set(indices)) != len(wnids):
            missing = next(w for i, w in enumerate(wnids) if i not in set(indices))
            raise BadInputError(f"dataset {name!r}: {len(set(indices))} of the 1000 class folders, "
                                f"{self.root / missing} is missing (expected {LAYOUT})")
        self.class_names = tuple(names[i] for i in indices)  # type: ignore[index]

    @functools.cached_property
    def version(self) -> str:  # type: ignore[override]
        """Class names and every image's relative name and content (sha256), as for ``folder:``."""
        return f"{RECIPE}-" + content_digest(self.root, self.root, [p for p, _ in self.files], self.class_names)

    def build_split(self, split: str) -> DatasetSplit:
        import dataclasses

        return dataclasses.replace(self._all, split=split)


@DATASETS.register("imagenet1k", license="ImageNet terms of access (your copy)",
                   description=f"ImageNet-1k val, 1000 class folders, OpenAI names and 80 templates: "
                               f"options root= (or ${ENV}), skip_bad=; split val")
def imagenet1k(root: str | None = None, *, skip_bad: bool = False) -> ImageNetFolders:
    return ImageNetFolders(user_root("imagenet1k", root, ENV, LAYOUT), "imagenet1k", complete=True, skip_bad=skip_bad)


@DATASETS.register_source("imagenet", license="(your copy)",
                          description="imagenet:<path>: ImageNet-style class folders (wnid or 0-999), "
                                      "any subset (ImageNet-R/-A/-Sketch/-V2); split val")
def imagenet(path: str, *, skip_bad: bool = False) -> ImageNetFolders:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise BadInputError(f"dataset 'imagenet:{path}': {root} is not a folder (expected {LAYOUT})")
    return ImageNetFolders(root, f"imagenet:{path}", complete=False, skip_bad=skip_bad)
