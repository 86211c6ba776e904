"""``folder:<path>``: an image folder with one subfolder per class (torchvision ``ImageFolder`` layout).

Classes are the subfolder names in sorted order (hidden ones ignored), with "_" → " " for prompts;
items are the image files under each (recursively, by suffix), in sorted order; item ids are their
paths relative to the root. Every image is opened and decoded when the first split is built: a
missing or corrupt one is a one-line :class:`BadInputError` naming the file, or with
``skip_bad=True`` it is dropped and counted in ``DatasetSplit.skipped`` (one warning with the count).

Splits: ``all``; ``train`` / ``test`` = seeded stratified 50/50 (seed 0, keyed by relative path, see
:mod:`align.data.subsample`). ``version`` hashes the class names and each file's relative name and
content (sha256; unchanged files are not re-read, see :mod:`align.data.filehash`), so any edit to the
folder, even one that keeps a file's size and mtime (``cp -p``, ``rsync -t``), invalidates cached
features and results. Templates: ``templates=`` (file or list), else ``default.txt``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from align.data.badrows import BadRows, image_problem
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.filehash import content_digest
from align.data.options import resolve_templates
from align.data.subsample import select, stratified_halves
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "r1"


class ImageFolder(Dataset):
    splits = ("all", "train", "test")
    user_copy = True
    label_sets = ()

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

    @functools.cached_property
    def version(self) -> str:  # type: ignore[override]
        """Hashes the class names and every file's relative name and content (sha256, cached in
        ``$ALIGN_HOME``, see :mod:`align.data.filehash`): any change to the bytes gives a new version,
        whatever the file's size and modification time say."""
        return f"folder+{RECIPE}-" + content_digest(self.root, self.root, [p for p, _ in self.files],
                                                    self.class_names)

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
