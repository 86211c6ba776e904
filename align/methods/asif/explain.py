"""Why ASIF matched an image with a text: the anchors that contribute most to their score.

The score is ``<r_I, r_T> = sum_a r_I[a] r_T[a]`` over anchors kept by both sides, so each shared
anchor pair's product is its exact share of the decision; the largest products name the anchor
images and captions that drove it (papers.md §7.2, claim 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from align.errors import BadInputError
from align.methods.asif.aligner import ASIFAligner, SparseRel


@dataclass(frozen=True)
class Contribution:
    """One anchor's part of a score: ``contribution = r_I[anchor] * r_T[anchor]``, ``share`` of the score."""

    anchor: int
    contribution: float
    share: float
    anchor_id: Any = None
    caption: str | None = None


@dataclass(frozen=True)
class Explanation:
    score: float
    contributions: list[Contribution]


def anchor_products(image: SparseRel, text: SparseRel, image_row: int = 0, text_row: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors kept by both rows and their products ``r_I[a] * r_T[a]`` (unordered, zeros dropped)."""
    if image.num_anchors != text.num_anchors:
        raise BadInputError(f"asif explain: {image.num_anchors} vs {text.num_anchors} anchors; not the same anchor set")
    for rel, row, what in ((image, image_row, "image_row"), (text, text_row, "text_row")):
        if not -len(rel) <= row < len(rel):
            raise BadInputError(f"asif explain: {what}={row} is out of range for {len(rel)} rows")
    ia, va = image.indices[image_row], image.values[image_row]
    it, vt = text.indices[text_row], text.values[text_row]
    keep_t = it >= 0
    it, vt = it[keep_t], vt[keep_t]
    if it.numel() == 0:
        return torch.empty(0, dtype=torch.long), torch.empty(0)
    sorted_t, order = it.sort()
    where = torch.searchsorted(sorted_t, ia).clamp(max=sorted_t.numel() - 1)
    shared = (sorted_t[where] == ia) & (ia >= 0)
    anchors = ia[shared]
    products = va[shared] * vt[order[where[shared]]]
    nonzero = products != 0
    return anchors[nonzero], products[nonzero]


def explain_pair(
    image: SparseRel,
    text: SparseRel,
    top: int = 5,
    *,
    image_row: int = 0,
    text_row: int = 0,
    anchor_ids: Sequence[Any] | None = None,
    anchor_captions: Sequence[str] | None = None,
) -> Explanation:
    """The ``top`` anchors with the largest products for row ``image_row`` of ``image`` against row
    ``text_row`` of ``text``; ``anchor_ids``/``anchor_captions`` (one per anchor) are attached if given."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise BadInputError(f"asif explain: top must be a positive integer, got {top!r}")
    for name, extra in (("anchor_ids", anchor_ids), ("anchor_captions", anchor_captions)):
        if extra is not None and len(extra) != image.num_anchors:
            raise BadInputError(f"asif explain: {len(extra)} {name} for {image.num_anchors} anchors")
    anchors, products = anchor_products(image, text, image_row, text_row)
    score = float(products.sum())
    # largest first; equal products by anchor index, so the order is deterministic
    order = sorted(range(anchors.numel()), key=lambda i: (-float(products[i]), int(anchors[i])))[:top]
    found = []
    for i in order:
        a = int(anchors[i])
        found.append(Contribution(
            anchor=a, contribution=float(products[i]), share=float(products[i]) / score if score else 0.0,
            anchor_id=None if anchor_ids is None else anchor_ids[a],
            caption=None if anchor_captions is None else anchor_captions[a]))
    return Explanation(score, found)


def explain(
    aligner: ASIFAligner,
    image: torch.Tensor | SparseRel,
    text: torch.Tensor | SparseRel,
    top: int = 5,
    *,
    image_row: int = 0,
    text_row: int = 0,
    anchor_ids: Sequence[Any] | None = None,
    anchor_captions: Sequence[str] | None = None,
) -> Explanation:
    """Explain a fitted ASIF aligner's score of an image against a text: each given as raw features
    (``[D]`` or ``[M, D]``) or as representations already computed (``SparseRel``)."""
    if not isinstance(image, SparseRel):
        image = torch.as_tensor(image)
        image = aligner.represent_image(image[None] if image.ndim == 1 else image)
    if not isinstance(text, SparseRel):
        text = torch.as_tensor(text)
        text = aligner.represent_text(text[None] if text.ndim == 1 else text)
    return explain_pair(image, text, top, image_row=image_row, text_row=text_row,
                        anchor_ids=anchor_ids, anchor_captions=anchor_captions)
