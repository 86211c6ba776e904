"""One JSON file per result, with CLIP_benchmark's top-level fields first.

``dataset``, ``model``, ``pretrained``, ``task`` and ``metrics`` read exactly as CLIP_benchmark's
files do (``model`` is the aligner, ``pretrained`` the encoder pair); everything needed to reproduce
or audit the number follows: aligner hyper-parameters, seed, splits, package versions, dataset and
weight hashes, the resolved config and wall time.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from align.atomic import write_json_atomic
from align.bench.plan.specs import ResultSpec
from align.bench.record.item_files import write_items
from align.checksum import seal
from align.errors import AlignError, BadInputError
from align.eval.items import Items

PACKAGES = ("align", "torch", "torchvision", "transformers", "sentence-transformers", "open_clip_torch", "timm",
            "pot", "faiss-cpu", "pytorch-lightning", "numpy", "scikit-learn", "torchmetrics")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["python"] = platform.python_version()
    return versions


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


def record_result(path: Path, result: ResultSpec, *, metrics: dict[str, float], details: dict[str, Any],
                  items: Items | None, hparams: dict[str, Any], image_input: dict[str, Any],
                  provenance: dict[str, Any]) -> None:
    """Write the result of ``result`` at ``path``, and its per-item outputs beside it, sealed by it.
    ``provenance``: what else the run records (fit pairing and sizes, dataset version as read, skipped
    rows, the sweep's record, the config, wall time)."""
    fit = result.fit
    shifted = result.eval_dataset["name"] if result.eval_dataset is not None else None
    record = make_result(
        dataset=fit.data.name, aligner=fit.aligner.display, image_encoder=fit.image.name,
        text_encoder=fit.text.name, task=result.task, metrics=metrics, aligner_name=fit.aligner.name,
        hparams=hparams, seed=fit.seed, image_input=image_input, text_side=fit.text_side,
        fit_split=fit.data.fit, eval_split=result.eval_split, label_set=result.label_set,
        **{k: provenance[k] for k in ("fit_pairs", "num_fit_pairs", "num_eval", "dataset_version")},
        dataset_hashes=dict(fit.data.assets), skipped_rows=provenance["skipped_rows"],
        weights_sha256={"image": fit.image.weights_sha256, "text": fit.text.weights_sha256},
        **({"shift": {"fit": fit.data.name, "eval": shifted}} if shifted else {}),
        task_details=details, **{k: provenance[k] for k in ("sweep", "config", "config_path", "wall_time_s")},
        identity=result.identity, **({"items": write_items(path, items)} if items is not None else {}),
    )
    write_result(path, record)


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` sealed with its checksum (:mod:`align.checksum`), atomically; CLIP_benchmark's
    fields stay first. A folder that cannot take it is a one-line error naming the file."""
    try:
        write_json_atomic(path, seal(result), sort_keys=False)
    except OSError as err:
        raise AlignError(f"{path}: cannot write this result ({err.strerror or err})") from None
