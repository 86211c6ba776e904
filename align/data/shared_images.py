"""Images on both sides of a user's copy: counted and named in one line, never dropped.

align's packaged splits are checked once for everyone (``tests/integration/test_no_shared_images.py``)
and fixed where they are built (emoji drops the fit side's copy). A user's copy cannot be: it is read
from their files (COCO's Karpathy split, Flickr30k, ImageNet, CIFAR, a folder or manifest of their own
pairs scored on one of those), and an image can sit on both sides of fit and eval, pixel for pixel
(COCO and Flickr hold a few exact duplicates; a manifest of one's own pairs may include test images).

A run says so, once per fit and eval split, with the count and the first pair, and keeps every image.
Dropping would change the standard split: COCO 5k and Flickr 1k are the splits the field reports on,
and their scores are only comparable with other papers' on exactly those images. The line tells the
user how many eval images their aligner may have seen while fitting, so they can judge (or remove them
from their own pairs) rather than have align quietly score a different test set.

Decoding every image to hash its pixels costs about as much as reading it for features, so the hashes
of a split are kept in ``$ALIGN_HOME/data/pixel-hashes/``, keyed by the dataset, the split and its
``version`` (which hashes the files' content for every user copy): a later run reads one small file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from align.data.duplicates import item_name, pixel_hashes, shared_rows
from align.data.splits import DatasetSplit


def hashes_file(split: DatasetSplit) -> Path:
    """Where the pixel hashes of ``split`` (this content, this split name) are kept."""
    from align.assets.store import align_home

    key = hashlib.sha256(json.dumps([split.dataset, split.split, split.version]).encode()).hexdigest()[:24]
    return align_home() / "data" / "pixel-hashes" / f"{key}.json"


def cached_pixel_hashes(split: DatasetSplit) -> list[str]:
    """:func:`~align.data.duplicates.pixel_hashes` of ``split``, from the cache when it holds them; a cache
    file that is unreadable or of another length is ignored and written again (a read-only home only costs
    the hashing)."""
    from align.atomic import write_json_atomic

    path = hashes_file(split)
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = None
    if isinstance(kept, list) and len(kept) == len(split) and all(isinstance(h, str) for h in kept):
        return kept
    hashes = pixel_hashes(split)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, hashes)
    except OSError:
        pass
    return hashes


def shared_images_line(fit: DatasetSplit, test: DatasetSplit) -> str | None:
    """One line counting the images of ``test`` pixel-identical to one of ``fit``, naming the first pair;
    None when there is none."""
    pairs = shared_rows(cached_pixel_hashes(fit), cached_pixel_hashes(test))
    if not pairs:
        return None
    f, t = pairs[0]
    shown = {t for _, t in pairs}
    return (f"warning: {len(shown)} image(s) of {test.dataset}/{test.split} are pixel-identical to images of "
            f"{fit.dataset}/{fit.split} (first: {item_name(test, t)} = {item_name(fit, f)}); kept, so the split "
            "stays the standard one: an aligner may have seen them while fitting")
