"""Caption scores as the COCO caption evaluation computes them (pycocoevalcap: BLEU, ROUGE-L, CIDEr-D).

The scorers are the reference implementations; only the tokenizer differs. COCO's ``PTBTokenizer``
runs Stanford CoreNLP in Java, so texts here are lower-cased and split into alphanumeric runs, which
is what the PTB tokenizer plus its punctuation filter gives on short captions such as emoji names.
METEOR and SPICE also need Java and are not computed. Field names follow pycocoevalcap (and
CLIP_benchmark's captioning results): ``Bleu_1`` .. ``Bleu_4``, ``ROUGE_L``, ``CIDEr``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from align.errors import BadInputError

_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> str:
    """Lower-cased alphanumeric runs joined by single spaces ("Face: Tears of Joy!" -> "face tears of joy")."""
    return " ".join(_WORD.findall(text.lower()))


def caption_scores(generated: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict[str, float], np.ndarray]:
    """Corpus-level BLEU-1..4, ROUGE-L and CIDEr-D of one generated caption per image against its
    references, and each image's CIDEr-D (the corpus CIDEr-D is their mean)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(generated) != len(references):
        raise BadInputError(f"caption_metrics: {len(generated)} generated captions for {len(references)} images")
    if not generated:
        raise BadInputError("caption_metrics: no captions to score")
    for i, refs in enumerate(references):
        if not refs or not any(tokenize(r) for r in refs):
            raise BadInputError(f"caption_metrics: image {i} has no non-empty reference caption")
    res = {i: [tokenize(g) or "<empty>"] for i, g in enumerate(generated)}
    gts = {i: [tokenize(r) for r in refs if tokenize(r)] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, per_image = Cider().compute_score(gts, res)
    metrics = {f"Bleu_{n}": float(b) for n, b in enumerate(bleu, start=1)}
    metrics.update(ROUGE_L=float(rouge), CIDEr=float(cider))
    return metrics, np.asarray(per_image, dtype=np.float64)


def caption_metrics(generated: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus-level BLEU-1..4, ROUGE-L and CIDEr-D of one generated caption per image against its references."""
    return caption_scores(generated, references)[0]
