"""The report pictures' file: ``examples/<fit>/examples.jsonl`` beside a saved fit.

JSON Lines, not ``.json``: every ``*.json`` under a results folder is a result or a fitted aligner. A
header line names the fit (aligner, fit and eval splits, seed, the fit's identity), then one line per
evaluation image (:mod:`align.bench.execute.examples` makes them). The report only reads these files;
it never loads a model or a dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from align.atomic import atomic_path

FORMAT = 1
# what makes an aligner's pictures (named by the report when a run has none)
SUPPORTED = ("report_examples (any aligner)", "caption + nearest_words (VLAP)", "token_strings (LQAE)",
             "represent_image anchors (ASIF)", "code_indices (Codebook-VLP, as text)")


def write_examples(folder: Path, *, aligner_label: str, fit: str, eval_split: str, seed: int, identity: str,
                   items: list[dict[str, Any]]) -> Path:
    """``folder/examples.jsonl`` (header line, then one line per item), written atomically."""
    target = Path(folder) / "examples.jsonl"
    header = {"format": FORMAT, "aligner": aligner_label, "fit": fit, "eval": eval_split, "seed": seed,
              "identity": identity}
    with atomic_path(target) as tmp:
        tmp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in [header, *items]), encoding="utf-8")
    return target


def read_examples(path: Path) -> dict[str, Any]:
    """The header of ``path`` with its ``items`` (a ``ValueError`` when a line is not a JSON object)."""
    lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines or not all(isinstance(line, dict) for line in lines):
        raise ValueError("not an examples file (each line must be a JSON object)")
    return {**lines[0], "items": lines[1:]}
