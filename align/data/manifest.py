"""``manifest:<path>``: image–caption (and/or label) pairs listed in a CSV or JSONL file.

Formats (image paths are relative to the manifest's folder; absolute paths work too):

* CSV (``.csv``, UTF-8, header on line 1): columns ``image`` plus ``caption`` and/or ``label``. An image
  with several captions takes several rows, one caption each, with the same ``image`` (rows are
  safer than a separator inside a cell: captions may contain any character). Other column names
  are an error, so a typo such as ``captions`` cannot silently drop the captions.
* JSONL (``.jsonl``/``.ndjson``): one object per line, ``{"image": "...", "captions": [...],
  "label": "..."}``; ``"caption": "..."`` is accepted for a single caption; other keys are ignored.
  Lines repeating an image add their captions to it.

Items are the distinct images in order of first appearance; item ids are the paths as written.
Labels: ``classes=`` (a list, or a text file with one class per line) fixes the class list and its
order; without it the classes are the sorted distinct labels.

Bad rows, each a one-line :class:`BadInputError` ``"<manifest>, line <n>: ..."`` where ``n`` is the
file's line number (the CSV header is line 1, so the first data row is line 2): a missing or
unreadable image (every image is opened and decoded when the first split is built), an empty
caption, a missing label, a label not in the class list, a label contradicting an earlier row for
the same image, a malformed row. With ``skip_bad=True`` each bad row is dropped and counted in
``DatasetSplit.skipped`` (the manifest's total, for every split), with one warning giving the count.

Splits: ``all``; ``train`` / ``test`` = seeded 50/50 (seed 0, keyed by image path), stratified by
label when there are labels. ``version`` hashes the manifest, the class list and the referenced
files' names and contents (sha256; unchanged files are not re-read, see :mod:`align.data.filehash`),
so an image whose bytes change gives a new version even when its size and mtime stay.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from align.data.badrows import BadRows, image_problem
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.filehash import content_digest
from align.data.options import resolve_classes, resolve_templates
from align.data.subsample import select, stratified_halves
from align.data.textfile import read_text, split_lines
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "r1"
CSV_COLUMNS = ("image", "caption", "label")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Row:
    """One manifest line before validation."""

    line: int
    image: str = ""
    captions: list[str] = field(default_factory=list)
    label: str | None = None
    problem: str | None = None  # malformed row, found while parsing


@dataclass
class Parsed:
    rows: list[Row]
    has_captions: bool
    has_labels: bool


def _csv_lines(path: Path) -> list[str]:
    """The file's lines, each ending in ``\n``, cut at ``\n`` only (see :mod:`align.data.textfile`)."""
    return [line + "\n" for line in split_lines(read_text(path, "manifest"))]


def parse_csv(path: Path) -> Parsed:
    """Rows of a CSV manifest. A record may not span lines: captions hold no line breaks, so a quoted
    field running past its line is an unclosed quote, which would swallow the rows after it."""
    lines = _csv_lines(path)
    reader = csv.reader(lines, strict=True)
    first = 1  # line where the record being read starts
    try:
        header = next(reader, None)
        if header is None:
            raise BadInputError(f"{path}: empty manifest (expected a header such as image,caption,label)")
        if reader.line_num > 1:
            raise BadInputError(f"{path}, line 1: unclosed quote in the header (it runs to line {reader.line_num})")
        columns = [c.strip().lower() for c in header]
        unknown = [c for c in columns if c not in CSV_COLUMNS]
        if unknown or len(set(columns)) != len(columns) or "image" not in columns or len(columns) < 2:
            raise BadInputError(
                f"{path}, line 1: header {','.join(header)!r} must name 'image' and 'caption' and/or 'label', "
                f"each once" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        rows = []
        first = reader.line_num + 1
        for record in reader:
            if reader.line_num > first:
                raise BadInputError(
                    f"{path}, line {first}: unclosed quote (the quoted field runs on to line {reader.line_num}); "
                    "close it, or double a quote inside a quoted field (\"\")")
            row, first = Row(reader.line_num), reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if len(record) != len(columns):
                row.problem = f"expected {len(columns)} fields ({','.join(columns)}), found {len(record)}"
            else:
                values = dict(zip(columns, record))
                row.image = values["image"].strip()
                if "caption" in values:
                    row.captions = [values["caption"].strip()]
                row.label = values["label"].strip() if "label" in values else None
            rows.append(row)
    except csv.Error as err:
        if reader.line_num > first or "unexpected end of data" in str(err):
            end = "the end of the file" if reader.line_num >= len(lines) else f"line {reader.line_num}"
            raise BadInputError(f"{path}, line {first}: unclosed quote (the quoted field runs on to {end})") from None
        raise BadInputError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from None
    return Parsed(rows, "caption" in columns, "label" in columns)


def _parse_json_line(row: Row, text: str) -> bool:
    """Fill ``row`` from one JSONL line; True when the line carried captions."""
    try:
        obj = json.loads(text)
    except ValueError as err:
        row.problem = f"not valid JSON ({err})"
        return False
    if not isinstance(obj, dict):
        row.problem = "expected a JSON object with an 'image' key"
        return False
    image = obj.get("image")
    if not isinstance(image, str):
        row.problem = "'image' must be a string (a path relative to the manifest)"
        return False
    row.image = image.strip()
    if "captions" in obj or "caption" in obj:
        captions = obj.get("captions", [obj.get("caption")] if "caption" in obj else [])
        if isinstance(captions, str) or not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            row.problem = "'captions' must be a list of strings ('caption' a string)"
        elif not captions:
            row.problem = "'captions' is an empty list"
        else:
            row.captions = [c.strip() for c in captions]
    if "label" in obj:
        label = obj["label"]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            row.problem = row.problem or "'label' must be a string"
        else:
            row.label = str(label).strip()
    return "captions" in obj or "caption" in obj


def parse_jsonl(path: Path) -> Parsed:
    rows, has_captions, has_labels = [], False, False
    for number, text in enumerate(split_lines(read_text(path, "manifest")), start=1):
        if not text.strip():
            continue
        row = Row(number)
        has_captions |= _parse_json_line(row, text)
        has_labels |= row.label is not None
        rows.append(row)
    if has_labels:  # a line without "label" in a labelled manifest is a bad row, not an unlabelled one
        for row in rows:
            if row.label is None and row.problem is None:
                row.label = ""
    return Parsed(rows, has_captions, has_labels)


class Manifest(Dataset):
    splits = ("all", "train", "test")
    user_copy = True
    label_sets = ()

    def __init__(self, path: str | Path, *, classes: str | Path | Sequence[str] | None = None,
                 skip_bad: bool = False, templates: str | Path | Sequence[str] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.name = f"manifest:{path}"
        self.skip_bad = skip_bad
        self.classes = resolve_classes(classes)
        self.templates = resolve_templates(templates)
        if not self.path.is_file():
            raise BadInputError(f"{self.path}: no such manifest file")
        if self.path.suffix.lower() not in (".csv", *JSONL_SUFFIXES):
            raise BadInputError(f"{self.path}: manifest must be .csv or .jsonl")

    @functools.cached_property
    def parsed(self) -> Parsed:
        try:
            parsed = parse_csv(self.path) if self.path.suffix.lower() == ".csv" else parse_jsonl(self.path)
        except UnicodeDecodeError as err:
            raise BadInputError(f"{self.path}: not UTF-8 text (byte {err.start})") from None
        except csv.Error as err:
            raise BadInputError(f"{self.path}: malformed CSV ({err})") from None
        if self.classes is not None and not parsed.has_labels:
            raise BadInputError(f"{self.path}: classes= given but the manifest has no labels")
        if not parsed.has_captions and not parsed.has_labels:
            raise BadInputError(f"{self.path}: no captions and no labels")
        return parsed

    @functools.cached_property
    def version(self) -> str:  # type: ignore[override]
        folder = self.path.parent
        images = sorted({folder / row.image for row in self.parsed.rows if row.image})
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]
        return f"manifest+{RECIPE}-{digest}-" + content_digest(self.path, folder, images, self.classes or ())

    def _row_problem(self, row: Row, image_problems: dict[Path, str | None]) -> str | None:
        """Why ``row`` is bad (label-list checks aside), or ``None``."""
        if row.problem:
            return row.problem
        if not row.image:
            return "empty image path"
        full = self.path.parent / row.image
        if full not in image_problems:
            image_problems[full] = image_problem(full)
        if image_problems[full]:
            return image_problems[full]
        if any(not c for c in row.captions):
            return "empty caption"
        if self.parsed.has_labels and not row.label:
            return "missing label"
        if self.classes is not None and row.label not in self.classes:
            shown = ", ".join(self.classes[:8]) + (", ..." if len(self.classes) > 8 else "")
            return f"label {row.label!r} is not in the class list ({len(self.classes)} classes: {shown})"
        return None

    @functools.cached_property
    def _all(self) -> DatasetSplit:
        bad = BadRows(str(self.path), self.skip_bad)
        image_problems: dict[Path, str | None] = {}
        items: dict[str, tuple[list[str], str | None, int]] = {}  # image → (captions, label, first line)
        for row in self.parsed.rows:
            problem = self._row_problem(row, image_problems)
            earlier = items.get(row.image)
            if problem is None and earlier is not None and earlier[1] != row.label:
                problem = (f"label {row.label!r} contradicts label {earlier[1]!r} given for the same image "
                           f"on line {earlier[2]}")
            if problem is not None:
                bad.flag(f"{self.path}, line {row.line}: {problem}")
                continue
            if earlier is None:
                items[row.image] = (list(row.captions), row.label, row.line)
            else:
                earlier[0].extend(row.captions)
        bad.done()
        if not items:
            skipped = f" ({bad.count} bad row(s) skipped)" if bad.count else ""
            raise BadInputError(f"{self.path}: no usable rows{skipped}")
        images = list(items)
        paths = [self.path.parent / image for image in images]
        labels = None
        if self.parsed.has_labels:
            class_names = self.classes or tuple(sorted({label for _, label, _ in items.values() if label}))
            index = {name: i for i, name in enumerate(class_names)}
            labels = LabelSet(np.array([index[items[i][1]] for i in images], dtype=np.int64),
                              class_names, self.templates)

        def load_image(i: int) -> Image.Image:
            from align.data.images import open_image

            return open_image(paths[i])

        return DatasetSplit(
            dataset=self.name, split="all", version=self.version, num_items=len(images), load_image=load_image,
            captions=[items[i][0] for i in images] if self.parsed.has_captions else None,
            labels=labels, item_ids=images, skipped=bad.count,
        )

    def build_split(self, split: str) -> DatasetSplit:
        everything = self._all
        if split == "all":
            return everything
        labels = None if everything.labels is None else everything.labels.labels
        train, test = stratified_halves(labels, list(everything.item_ids or ()))
        return select(everything, train if split == "train" else test, split)


@DATASETS.register_source("manifest", license="(your data)",
                          description="manifest:<file.csv|file.jsonl>: image,caption[,label] rows; "
                                      "options classes=, skip_bad=; splits all, train/test")
def manifest(path: str, *, classes: str | Sequence[str] | None = None, skip_bad: bool = False,
             templates: str | Sequence[str] | None = None) -> Manifest:
    return Manifest(path, classes=classes, skip_bad=skip_bad, templates=templates)
