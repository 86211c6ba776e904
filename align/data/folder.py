"""``folder:<path>``: an image folder with one subfolder per class (torchvision ``ImageFolder`` layout).

Classes are the subfolder names in sorted order (hidden ones ignored), with "_" → " " for prompts;
items are the image files under each (recursively, by suffix), in sorted order; item ids are their
paths relative to the root. Every image is opened and decoded when the first split is built: a
missing or corrupt one is a one-line :class:`BadInputError` naming the file, or with
``skip_bad=True`` it is dropped and counted in ``DatasetSplit.skipped`` (one warning with the count).

Splits: ``all``; ``train`` / ``test`` = seeded stratified 50/50 (seed 0, keyed by relative path, see
:mod:`align.data.subsample`). ``version`` hashes the file list (names, sizes, mtimes), so editing the
folder invalidates cached features. Templates: ``templates=`` (file or list), else ``default.txt``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from align.data.badrows import BadRows, image_problem
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.options import resolve_templates
from align.data.subsample import select, stratified_halves
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "r1"


def file_list_digest(root: Path, paths: Sequence[Path], extra: Sequence[str] = ()) -> str:
    """Short hash of relative names, sizes and mtimes: changes whenever the files do."""
    digest = hashlib.sha1()
    for part in extra:
        digest.update(f"{part}\0".encode())
    for path in paths:
        stat = path.stat() if path.is_file() else None
        size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()[:12]


class ImageFolder(Dataset):
    splits = ("all", "train", "test")

    def __init__(self, path: str | Path, *, skip_bad: bool = False,
                 templates: str | Path | Sequence[str] | None = None) -> None:
        from align.data.images import IMAGE_SUFFIXES

        self.root = Path(path).expanduser()
        self.name = f"folder:{path}"
        self.skip_bad = skip_bad
        self.templates = resolve_templates(templates)
        if not self.root.is_dir():
            raise BadInputError(f"{self.root}: not a folder (expected one subfolder of images per class)")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise BadInputError(f"{self.root}: no class subfolders (expected <root>/<class>/<image files>)")
        self.class_names = tuple(f.name.replace("_", " ") for f in folders)
        self.files: list[tuple[Path, int]] = []
        for label, folder in enumerate(folders):
            found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise BadInputError(f"{folder}: class folder without image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.files += [(p, label) for p in found]
        self.version = f"folder+{RECIPE}-" + file_list_digest(
            self.root, [p for p, _ in self.files], self.class_names)

    @functools.cached_property
    def _all(self) -> DatasetSplit:
        bad = BadRows(str(self.root), self.skip_bad)
        kept = []
        for path, label in self.files:
            problem = image_problem(path)
            if problem is None:
                kept.append((path, label))
            else:
                bad.flag(problem)
        bad.done()
        if not kept:
            raise BadInputError(f"{self.root}: no usable images ({bad.count} bad image(s) skipped)")
        paths = [p for p, _ in kept]

        def load_image(i: int) -> Image.Image:
            from align.data.images import open_image

            return open_image(paths[i])

        return DatasetSplit(
            dataset=self.name, split="all", version=self.version, num_items=len(kept), load_image=load_image,
            labels=LabelSet(np.array([label for _, label in kept], dtype=np.int64), self.class_names,
                            self.templates),
            item_ids=[p.relative_to(self.root).as_posix() for p in paths], skipped=bad.count,
        )

    def build_split(self, split: str) -> DatasetSplit:
        everything = self._all
        if split == "all":
            return everything
        assert everything.labels is not None and everything.item_ids is not None
        train, test = stratified_halves(everything.labels.labels, everything.item_ids)
        return select(everything, train if split == "train" else test, split)


@DATASETS.register_source("folder", license="(your data)",
                          description="folder:<path>: <path>/<class>/<images>; splits all, train/test (stratified 50/50)")
def folder(path: str, *, skip_bad: bool = False, templates: str | Sequence[str] | None = None) -> ImageFolder:
    return ImageFolder(path, skip_bad=skip_bad, templates=templates)
