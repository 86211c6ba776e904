"""Where a results folder keeps each file: one path per result, fit, curves and report pictures.

``<root>/<image>+<text>/<aligner>/<dataset>__<task>__seed<k>.json`` for a result (its per-item outputs
beside it), ``…/<aligner>/fitted/<dataset>__<fit split>__seed<k>`` for a saved fit, and ``curves/`` and
``examples/`` beside ``fitted/``. Every part is a user string made safe (:func:`path_part`), so no
config name or label can lead a write outside its folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._@-]+")
_MAX_PART = 100  # every file name built from parts stays far below the usual 255-byte limit
_RESERVED = ("fitted",)  # folder names the layout itself uses


def path_part(name: str) -> str:
    """A user string (config name, aligner label, dataset, encoder, split) as one path component that
    cannot leave its folder: no separator or NUL, never ``.``/``..`` or hidden, at most 100 characters
    (a longer one keeps the start and a hash of the whole, so distinct names stay distinct)."""
    part = _SAFE.sub("_", name.replace(":", "__").replace("/", "--"))
    if not part or part.startswith("."):
        part = "_" + part
    if part in _RESERVED:
        part += "_"
    if len(part) > _MAX_PART:
        part = part[:_MAX_PART - 13] + "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return part


def dataset_part(dataset: str, label_set: str | None, eval_dataset: str | None = None) -> str:
    """Dataset part of a result's file name; the label set keeps e.g. emoji categories and subcategories apart,
    and ``eval_dataset`` a shifted evaluation (fit on ``dataset``, scored on it) apart from the unshifted one."""
    return dataset + (f"-to-{eval_dataset}" if eval_dataset else "") + (f"-{label_set}" if label_set else "")


def result_path(root: Path, *, image_encoder: str, text_encoder: str, aligner: str, dataset: str,
                task: str, seed: int) -> Path:
    """``root/<image>__<text>/<aligner>/<dataset>__<task>__seed<k>.json``."""
    return (Path(root) / f"{path_part(image_encoder)}+{path_part(text_encoder)}" / path_part(aligner)
            / f"{path_part(dataset)}__{path_part(task)}__seed{int(seed)}.json")


def aligner_path(root: Path, *, image_encoder: str, text_encoder: str, aligner: str, dataset: str, fit_split: str,
                 seed: int, variant: str = "") -> Path:
    """``root/<image>+<text>/<aligner>/fitted/<dataset>__<fit split>__seed<k>`` (+ .json/.safetensors,
    ``Aligner.save``); ``variant`` tells apart fits of one entry with other hyper-parameters (a sweep's choice)."""
    return (Path(root) / f"{path_part(image_encoder)}+{path_part(text_encoder)}" / path_part(aligner) / "fitted"
            / (f"{path_part(dataset)}__{path_part(fit_split)}__seed{int(seed)}" + (f"__{variant}" if variant else "")))


def beside_fit(fitted: Path, kind: str) -> Path:
    """``root/<image>+<text>/<aligner>/<kind>/<dataset>__<fit split>__seed<k>``: what else a fit leaves, named
    like its ``aligner_path`` (``kind``: ``curves``, the training logs; ``examples``, the report's pictures)."""
    return Path(fitted).parent.parent / kind / Path(fitted).name


def check_inside(root: Path, path: Path) -> Path:
    """``path``, or a one-line error when writing it would leave ``root``: every part of a results folder's
    layout is a safe name, but a folder inside it may be a symlink to elsewhere. The nearest existing
    folder on the way to ``path`` must resolve inside the resolved ``root`` (what does not exist yet is
    created inside it)."""
    from align.errors import BadInputError

    root, existing = Path(root), Path(path).parent
    while not existing.exists() and existing != root and existing != existing.parent:
        existing = existing.parent
    if not existing.exists() or not existing.is_relative_to(root):
        return Path(path)  # nothing of the results folder exists yet: all of it is made inside
    if not existing.resolve().is_relative_to(root.resolve()):
        raise BadInputError(f"{path}: would be written outside the results folder {root} ({existing} leads to "
                            f"{existing.resolve()}); remove that link or use another results folder")
    return Path(path)
