"""Example records of a fitted aligner, for the pictures of ``align report --html``.

Computed here from a fitted aligner; the file they go into is :mod:`align.bench.record.examples`.
Written by the runner under ``--save-aligners`` (the fit is kept, so its pictures belong to something
that can be looked at again) into ``examples/<fit>/examples.jsonl`` beside the fitted aligner: a header
line naming the fit, then one line per evaluation image (a small PNG thumbnail and what the aligner
says about it). JSON Lines, not ``.json``: every ``*.json`` under a results folder is a result or a
fitted aligner. The report only reads these files; it never loads a model or a dataset.

What an aligner says comes from a generic hook, ``report_examples(images) -> list[dict]`` on an
aligner that declares ``reports_examples`` (one dict per image: ``{"lines": [[label, text], ...],
"anchors": [[fit row, weight], ...]}``), or, without one, from the capabilities it declares
(:mod:`align.methods.framework.capabilities`):

- ``can_caption``: the generated caption; ``finds_nearest_words``: the closest vocabulary words (VLAP);
- ``writes_token_strings`` (LQAE): the image as a string of the LM's tokens;
- ``represents_by_anchors`` (ASIF): the anchors with the largest weights in its relative
  representation, each shown as the anchor's thumbnail and caption;
- ``gives_code_indices`` (Codebook-VLP): the codes its token grid uses most (a code gallery is not drawn yet).

An aligner with none of these (ridge, Procrustes, contrastive) has no pictures.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from align.methods.framework.base import Aligner

ITEMS = 6  # evaluation images per fit
ANCHORS = 4  # ASIF anchors shown per image
THUMB = 96  # thumbnail side in pixels


def thumbnail(image: Any, size: int = THUMB) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URI no larger than ``size`` pixels a side."""
    image = image.convert("RGBA" if image.mode == "RGBA" else "RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pick_rows(count: int, items: int = ITEMS) -> list[int]:
    """``items`` rows spread evenly over ``count`` (the same ones on every run)."""
    if count <= items:
        return list(range(count))
    return sorted({round(i * (count - 1) / (items - 1)) for i in range(items)})


def _builtin(aligner: Aligner, inputs: torch.Tensor) -> list[dict[str, Any]] | None:
    """What the aligner's declared capabilities say about each image (module docstring), or None."""
    n = len(inputs)
    found: list[dict[str, Any]] = [{"lines": [], "anchors": []} for _ in range(n)]
    any_hook = False
    if aligner.can_caption:
        any_hook = True
        for record, text in zip(found, aligner.caption(inputs)):
            record["lines"].append(["caption", text])
    if aligner.finds_nearest_words:
        any_hook = True
        for record, words in zip(found, aligner.nearest_words(inputs)):
            record["lines"].append(["nearest words", ", ".join(words)])
    if aligner.writes_token_strings:
        any_hook = True
        for record, text in zip(found, aligner.token_strings(inputs)):
            record["lines"].append(["tokens", text])
    if aligner.represents_by_anchors:
        any_hook = True
        rel = aligner.represent_image(inputs)
        for record, values, indices in zip(found, rel.values, rel.indices):
            order = values.argsort(descending=True)[:ANCHORS]
            record["anchors"] = [[int(indices[j]), float(values[j])] for j in order if int(indices[j]) >= 0]
    if aligner.gives_code_indices:
        any_hook = True
        for record, codes in zip(found, aligner.code_indices(inputs)):
            top = Counter(int(c) for c in codes.reshape(-1)).most_common(5)
            record["lines"].append(["codes (uses)", ", ".join(f"#{code} ×{uses}" for code, uses in top)])
    return found if any_hook else None


def example_items(aligner: Aligner, evaluation: Any, fit: Any, fit_captions: Sequence[str] | None,
                  items: int = ITEMS) -> list[dict[str, Any]] | None:
    """Example records of ``aligner`` on a few images of ``evaluation`` (``SplitInputs``); anchors are rows
    of ``fit`` with their ``fit_captions``. None when the aligner has nothing to show."""
    rows = pick_rows(len(evaluation), items)
    if not rows:
        return None
    inputs = evaluation.for_aligner(aligner)[torch.tensor(rows)]
    said = aligner.report_examples(inputs) if aligner.reports_examples else _builtin(aligner, inputs)
    if not said:
        return None
    split, out = evaluation.split, []
    for row, record in zip(rows, said):
        anchors = [{"image": thumbnail(fit.split.load_image(int(a)), THUMB // 2), "weight": float(w),
                    "caption": fit_captions[int(a)] if fit_captions is not None and int(a) < len(fit_captions) else ""}
                   for a, w in record.get("anchors", [])]
        captions = split.captions[row] if split.captions is not None else []
        out.append({"row": row, "id": str(split.item_ids[row]) if split.item_ids is not None else str(row),
                    "truth": str(captions[0]) if captions else "", "image": thumbnail(split.load_image(row)),
                    "lines": [[str(label), str(text)] for label, text in record.get("lines", [])],
                    "anchors": anchors})
    return out
