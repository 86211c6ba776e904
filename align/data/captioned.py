"""A split of image files with their captions, built from a user's copy of a captioned dataset.

Shared by the COCO and Karpathy-split sources: their JSON files differ, the split they give does not.
Every image is opened and decoded when the split is built (as for ``folder:`` and ``manifest:``), so
a missing or corrupt file is a one-line :class:`BadInputError` naming it, or with ``skip_bad`` it is
dropped and counted in ``DatasetSplit.skipped``. ``version`` hashes the annotation file and every
image's name and content (sha256, cached by :mod:`align.data.filehash`), so any edit gives a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from align.checksum import file_sha256
from align.data.badrows import BadRows, image_problem
from align.data.base import DatasetSplit
from align.data.filehash import content_digest
from align.errors import BadInputError


def captioned_split(*, dataset: str, split: str, recipe: str, annotations: Path, root: Path,
                    paths: Sequence[Path], captions: Sequence[Sequence[str]], skip_bad: bool) -> DatasetSplit:
    """Images ``paths`` (item ids: their paths relative to ``root``) with ``captions[i]`` each."""
    bad = BadRows(f"{dataset}/{split}", skip_bad)
    kept = []
    for i, path in enumerate(paths):
        problem = image_problem(path)
        if problem is None:
            kept.append(i)
        else:
            bad.flag(f"dataset {dataset!r}, split {split!r}: {problem}")
    bad.done()
    if not kept:
        raise BadInputError(f"dataset {dataset!r}, split {split!r}: no usable images ({bad.count} skipped)")
    files = [paths[i] for i in kept]
    # one file-hash cache per split: a cache keeps only the files of its last use
    digest = content_digest(Path(f"{annotations}#{split}"), root, files,
                            (recipe, file_sha256(annotations), split))

    def load_image(i: int) -> Image.Image:
        from align.data.images import open_image

        return open_image(files[i])

    return DatasetSplit(
        dataset=dataset, split=split, version=f"{recipe}-{digest}", num_items=len(files), load_image=load_image,
        captions=[list(captions[i]) for i in kept],
        item_ids=[p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in files],
        skipped=bad.count,
    )
