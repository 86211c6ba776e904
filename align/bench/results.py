"""One JSON file per result, with CLIP_benchmark's top-level fields first.

``dataset``, ``model``, ``pretrained``, ``task`` and ``metrics`` read exactly as CLIP_benchmark's
files do (``model`` is the aligner, ``pretrained`` the encoder pair); everything needed to reproduce
or audit the number follows: aligner hyper-parameters, seed, splits, package versions, dataset and
weight hashes, the resolved config and wall time.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from align.atomic import write_json_atomic
from align.checksum import seal
from align.errors import AlignError, BadInputError

PACKAGES = ("align", "torch", "torchvision", "transformers", "sentence-transformers", "open_clip_torch", "timm",
            "pot", "faiss-cpu", "pytorch-lightning", "numpy", "scikit-learn", "torchmetrics")
_SAFE = re.compile(r"[^A-Za-z0-9._@-]+")
_MAX_PART = 100  # every file name built from parts stays far below the usual 255-byte limit
_RESERVED = ("fitted",)  # folder names the layout itself uses


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["python"] = platform.python_version()
    return versions


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


def make_result(*, dataset: str, aligner: str, image_encoder: str, text_encoder: str, task: str,
                metrics: dict[str, float], **details: Any) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "model": aligner,
        "pretrained": f"{image_encoder}+{text_encoder}",
        "task": task,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "aligner": aligner,
        "image_encoder": image_encoder,
        "text_encoder": text_encoder,
        **details,
        "versions": package_versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def check_folder(path: Path, what: str = "results folder") -> Path:
    """``path`` as a folder a run can write into, or a one-line error naming it (a file in the way, no
    permission, a NUL character). Nothing is created: a run that fails later leaves no empty folder."""
    path = Path(path)
    if "\0" in str(path):
        raise BadInputError(f"{str(path)!r}: a {what} path cannot contain a NUL character")
    if path.exists():
        if not path.is_dir():
            raise BadInputError(f"{path}: is a file, not a {what}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise BadInputError(f"{path}: cannot write into this {what} (permission denied)")
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInputError(f"{path}: cannot create this {what}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{path}: cannot create this {what} (no permission to write in {parent})")
    return path


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` sealed with its checksum (:mod:`align.checksum`), atomically; CLIP_benchmark's
    fields stay first. A folder that cannot take it is a one-line error naming the file."""
    try:
        write_json_atomic(path, seal(result), sort_keys=False)
    except OSError as err:
        raise AlignError(f"{path}: cannot write this result ({err.strerror or err})") from None
