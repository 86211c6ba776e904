"""Emoji image–caption pairs: ``emoji`` (= Google style), ``emoji.google|twitter|apple|facebook``.

Source: ``emoji.json`` + ``64/<image>`` PNGs of the ``emoji-<style>`` asset (emoji-datasource 16.0.0).
Items are the *base* emoji (skin-tone variations ignored) whose ``has_img_<style>`` is true and whose
image file exists, in ``sort_order``; item ids are the ``unified`` codes. Images are RGBA (64x64;
palette PNGs, as in Twemoji, are converted): encoders composite them onto their own background.

Captions: ``captions[i] = [name lower-cased, *short_names with "_" → " "]``, de-duplicated, the name
first: ``captions[i][0]`` is *the* name used for image → name retrieval ("red apple", then "apple").
Labels: ``category`` (10 classes); ``extra_labels["subcategory"]`` (about 100 classes) with readable
names ("animal-mammal" → "animal mammal"). Class lists come from the whole ``emoji.json`` in
``sort_order``, so they are identical across styles and splits. Templates: ``templates/emoji.txt``.

Splits, concept-disjoint: every base emoji code in ``emoji.json`` (whatever the style) is ranked by
``sha256("0:<unified>")`` (:func:`align.data.subsample.seeded_order`, seed 0); the first
``floor(n / 2)`` codes are ``anchors``, the rest ``test``; then each style keeps the codes it has
images for. So an emoji is in the same half in every style, and never in both. One picture can stand
for several emoji (a family drawn the same for "man, man, boy" and "adult, adult, child", a
territory's flag that is its country's): ``anchors`` leaves out every emoji whose image is
pixel-identical (:mod:`align.data.duplicates`) to a ``test`` emoji's in this style, so no test image
is seen while fitting (Google: 948 anchors / 956 test; recipe r2). ``all`` is every item.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.prompts import load_templates
from align.data.subsample import seeded_order
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "r2"  # r2: anchors drop images pixel-identical to a test image
STYLES = ("google", "twitter", "apple", "facebook")
_LICENSES = {
    "google": "MIT (package); Apache-2.0 (Noto images)",
    "twitter": "MIT (package); CC-BY-4.0 (Twemoji images)",
    "apple": "MIT (package); Apple images: see package README",
    "facebook": "MIT (package); Facebook images: see package README",
}


@dataclass(frozen=True)
class EmojiEntry:
    code: str  # the "unified" code point sequence, e.g. "1F34E"
    image: str  # file name under 64/
    captions: tuple[str, ...]
    category: str
    subcategory: str  # readable: "animal mammal"
    styles: frozenset[str]  # styles whose has_img_<style> is true


def readable(subcategory: str) -> str:
    """``"animal-mammal"`` → ``"animal mammal"``: a class name a text encoder can read."""
    return subcategory.replace("-", " ").replace("_", " ")


def captions_of(record: dict[str, Any]) -> tuple[str, ...]:
    """The name (lower-cased) first, then the short names with "_" → " ", without duplicates."""
    name = record.get("name") or record.get("short_name") or ""
    candidates = [name.lower(), *(s.replace("_", " ") for s in record.get("short_names") or ())]
    return tuple(dict.fromkeys(c.strip() for c in candidates if c and c.strip()))


@functools.lru_cache(maxsize=8)
def read_emoji_json(path: Path) -> tuple[EmojiEntry, ...]:
    """Base emoji of ``emoji.json`` in ``sort_order``."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BadInputError(f"{path}: not a readable emoji.json ({err})") from None
    if not isinstance(records, list):
        raise BadInputError(f"{path}: expected a JSON list of emoji")
    entries = []
    for number, record in enumerate(sorted(records, key=lambda r: r.get("sort_order", 0)), start=1):
        try:
            entries.append(EmojiEntry(
                code=record["unified"], image=record["image"], captions=captions_of(record),
                category=record["category"], subcategory=readable(record["subcategory"]),
                styles=frozenset(s for s in STYLES if record.get(f"has_img_{s}")),
            ))
        except (KeyError, TypeError, AttributeError) as err:
            raise BadInputError(f"{path}: emoji #{number} lacks a field ({err!r})") from None
    return tuple(entries)


def open_rgba(path: Path) -> Image.Image:
    """An emoji image as RGBA (palette PNGs, as in Twemoji, converted)."""
    from align.data.images import open_image

    image = open_image(path)
    return image if image.mode == "RGBA" else image.convert("RGBA")


def pixel_hashes(folder: Path, images: Sequence[str]) -> tuple[str, ...]:
    """The decoded pixels' hash of each image file under ``folder``; kept in memory for the files as they
    are (a file rewritten in place is decoded again: the key holds each file's size, times and inode)."""
    stats = []
    for name in images:
        try:
            st = (folder / name).stat()
        except OSError as err:
            raise BadInputError(f"{folder / name}: cannot read the emoji image ({err.strerror or err})") from None
        stats.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return _pixel_hashes(folder, tuple(stats))


@functools.lru_cache(maxsize=8)
def _pixel_hashes(folder: Path, files: tuple[tuple[str, int, int, int, int], ...]) -> tuple[str, ...]:
    from align.data.duplicates import pixel_hash

    return tuple(pixel_hash(open_rgba(folder / name)) for name, *_ in files)


def concept_halves(codes: Sequence[str]) -> frozenset[str]:
    """The ``anchors`` half of ``codes``: the first ``floor(n / 2)`` in seeded order."""
    order = seeded_order(list(codes))
    return frozenset(codes[i] for i in order[: len(codes) // 2])


def _classes(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


class Emoji(Dataset):
    splits = ("anchors", "test", "all")
    label_sets = ("subcategory",)

    def __init__(self, style: str = "google", *, name: str | None = None, root: str | Path | None = None) -> None:
        if style not in STYLES:
            raise BadInputError(f"unknown emoji style {style!r}; styles: {', '.join(STYLES)}")
        self.style = style
        self.name = name or f"emoji.{style}"
        self._root = None if root is None else Path(root)

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"emoji-datasource-16.0.0-{self.style}+{RECIPE}"

    def root(self) -> Path:
        if self._root is None:
            from align.assets import require

            self._root = require(f"emoji-{self.style}")
        return self._root

    def items(self) -> list[EmojiEntry]:
        """Every emoji of this style with an image on disk, in ``sort_order``."""
        entries = read_emoji_json(self.root() / "emoji.json")
        return [e for e in entries if self.style in e.styles and (self.root() / "64" / e.image).is_file()]

    def build_split(self, split: str) -> DatasetSplit:
        entries = read_emoji_json(self.root() / "emoji.json")
        items = self.items()
        folder = self.root() / "64"
        if split != "all":
            anchors = concept_halves([e.code for e in entries])
            if split == "anchors":  # a picture also in test is never fitted on
                hashes = dict(zip((e.code for e in items), pixel_hashes(folder, [e.image for e in items])))
                in_test = {hashes[e.code] for e in items if e.code not in anchors}
                items = [e for e in items if e.code in anchors and hashes[e.code] not in in_test]
            else:
                items = [e for e in items if e.code not in anchors]
        categories = _classes([e.category for e in entries])
        subcategories = _classes([e.subcategory for e in entries])
        templates = load_templates("emoji")
        paths = [folder / e.image for e in items]

        def load_image(i: int) -> Image.Image:
            return open_rgba(paths[i])

        return DatasetSplit(
            dataset=self.name,
            split=split,
            version=self.version,
            num_items=len(items),
            load_image=load_image,
            captions=[list(e.captions) for e in items],
            labels=LabelSet(np.array([categories.index(e.category) for e in items], dtype=np.int64),
                            categories, templates),
            extra_labels={"subcategory": LabelSet(
                np.array([subcategories.index(e.subcategory) for e in items], dtype=np.int64),
                subcategories, templates)},
            item_ids=[e.code for e in items],
        )


def _register(style: str, name: str) -> None:
    def factory(root: str | Path | None = None) -> Emoji:
        """``root`` overrides the asset folder (``emoji.json`` + ``64/``)."""
        return Emoji(style, name=name, root=root)

    alias = " (alias of emoji.google)" if name == "emoji" else ""
    DATASETS.add(name, factory, license=_LICENSES[style], weights=f"emoji-{style}", description=(
        f"{style} emoji 64x64 RGBA with names, categories, subcategories{alias}; "
        "concept-disjoint anchors/test halves + all"))


_register("google", "emoji")
for _style in STYLES:
    _register(_style, f"emoji.{_style}")
