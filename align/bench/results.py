"""One JSON file per result, with CLIP_benchmark's top-level fields first.

``dataset``, ``model``, ``pretrained``, ``task`` and ``metrics`` read exactly as CLIP_benchmark's
files do (``model`` is the aligner, ``pretrained`` the encoder pair); everything needed to reproduce
or audit the number follows: aligner hyper-parameters, seed, splits, package versions, dataset and
weight hashes, the resolved config and wall time.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from align.atomic import write_json_atomic

PACKAGES = ("align", "torch", "torchvision", "transformers", "sentence-transformers", "open_clip_torch", "timm",
            "pot", "faiss-cpu", "pytorch-lightning", "numpy", "scikit-learn", "torchmetrics")
_SAFE = re.compile(r"[^A-Za-z0-9._@-]+")


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
    return _SAFE.sub("_", name.replace(":", "__").replace("/", "--"))


def result_path(root: Path, *, image_encoder: str, text_encoder: str, aligner: str, dataset: str,
                task: str, seed: int) -> Path:
    """``root/<image>__<text>/<aligner>/<dataset>__<task>__seed<k>.json``."""
    return (Path(root) / f"{path_part(image_encoder)}+{path_part(text_encoder)}" / path_part(aligner)
            / f"{path_part(dataset)}__{task}__seed{seed}.json")


def aligner_path(root: Path, *, image_encoder: str, text_encoder: str, aligner: str, dataset: str, fit_split: str,
                 seed: int) -> Path:
    """``root/<image>+<text>/<aligner>/fitted/<dataset>__<fit split>__seed<k>`` (+ .json/.safetensors, ``Aligner.save``)."""
    return (Path(root) / f"{path_part(image_encoder)}+{path_part(text_encoder)}" / path_part(aligner) / "fitted"
            / f"{path_part(dataset)}__{path_part(fit_split)}__seed{seed}")


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


def write_result(path: Path, result: dict[str, Any]) -> None:
    write_json_atomic(path, result, sort_keys=False)  # CLIP_benchmark's fields stay first


def read_results(root: Path) -> list[dict[str, Any]]:
    """Every result JSON under ``root`` (files that are not results are ignored)."""
    results = []
    for path in sorted(Path(root).rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and {"dataset", "model", "task", "metrics"} <= set(data):
            results.append(data)
    return results
