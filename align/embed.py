"""Embedding a folder of images or a file of sentences with a registered encoder.

Used by ``align embed``. The per-batch encoding it shares with the dataset-aware feature cache lives in
:mod:`align.features.encoding` (re-exported here). Output is a safetensors file (``features``
``[N, D]`` float32) plus a JSON sidecar naming each row, the encoder and its weights, written
atomically so an interrupted run or a full disk never leaves a file that looks complete, and never in
place of one of the inputs (:func:`check_outputs`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from align.atomic import atomic_path
from align.data.images import open_image
from align.errors import BadInputError
from align.features.encoding import encode_pil, encode_pil_tokens, encode_texts  # noqa: F401  (re-exported)


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class ImageEmbeddings:
    features: torch.Tensor  # [N, D] pooled
    logits: torch.Tensor | None = None  # [N, C] from the weights' own head, when it has one
    paths: list[Path] = field(default_factory=list)


def embed_images(encoder: Any, paths: Sequence[Path], batch_size: int = 32) -> ImageEmbeddings:
    """Pooled features of every image file (opened one batch at a time), plus head logits if any."""
    features, logits = [], []
    for batch in _batches(list(paths), batch_size):
        pooled, batch_logits = encode_pil(encoder, [open_image(p) for p in batch])
        features.append(pooled)
        if batch_logits is not None:
            logits.append(batch_logits)
    return ImageEmbeddings(torch.cat(features), torch.cat(logits) if logits else None, list(paths))


def top_classes(logits: torch.Tensor, class_names: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    probs = logits.softmax(dim=-1)
    values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(class_names[i], round(float(v), 4)) for v, i in zip(row_v, row_i)]
            for row_v, row_i in zip(values.tolist(), indices.tolist())]


def sidecar_of(path: Path) -> Path:
    """The JSON sidecar written beside an output: ``path`` + ``.json``."""
    return Path(path).with_name(Path(path).name + ".json")


def check_outputs(path: Path, inputs: Sequence[Path]) -> None:
    """Refuse (one line naming both) an output ``path`` or its sidecar that is one of ``inputs``: the
    same resolved path, or the same file under another name (a symlink, a hard link)."""
    targets = [t for t in (Path(path), sidecar_of(path)) if t.exists()]
    if not targets:  # an input exists, so a path where nothing exists is none of them
        return
    found: dict[Path, tuple[str, os.stat_result]] = {}
    for target in targets:
        try:
            found[target] = (os.path.realpath(target), os.stat(target))
        except OSError:
            continue
    for source in inputs:
        try:
            resolved, status = os.path.realpath(source), os.stat(source)
        except OSError:
            continue  # not there: nothing of it to overwrite
        for target, (target_resolved, target_status) in found.items():
            if resolved == target_resolved or os.path.samestat(status, target_status):
                what = "output" if target == Path(path) else "output's sidecar"
                raise BadInputError(f"{target}: the {what} would overwrite the input {source}; "
                                    f"give another -o (inputs are never overwritten)")


def save_features(path: Path, features: torch.Tensor, metadata: dict[str, Any], *,
                  inputs: Sequence[Path] = ()) -> Path:
    """Write ``features`` to ``path`` (safetensors) and ``metadata`` to ``path`` + ``.json``, atomically;
    refused if either would overwrite one of ``inputs`` (:func:`check_outputs`)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    if not torch.isfinite(features).all():
        raise BadInputError(f"{path}: refusing to save features with NaN or inf")
    path = Path(path)
    sidecar = sidecar_of(path)
    for target in (path, sidecar):
        if target.is_dir():
            raise BadInputError(f"{target}: is a folder; give a file name for the output (e.g. features.safetensors)")
    check_outputs(path, inputs)
    writing = path  # the file named if a write fails
    try:
        with atomic_path(path) as tmp:  # both written before either moves
            writing = sidecar
            with atomic_path(sidecar) as tmp_sidecar:
                writing = path
                save_file({"features": features.contiguous().cpu()}, str(tmp))
                writing = sidecar
                tmp_sidecar.write_text(json.dumps(metadata, indent=2) + "\n")
            writing = path
    except OSError as err:
        raise BadInputError(f"{writing}: cannot write the output ({err.strerror or type(err).__name__})") from None
    except SafetensorError as err:  # the library's own writes: a full disk is "I/O error: No space left ..."
        reason = str(err).splitlines()[0].removeprefix("Error while serializing: ") if str(err) else type(err).__name__
        raise BadInputError(f"{path}: cannot write the output ({reason})") from None
    return path
