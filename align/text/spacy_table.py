"""Static word-vector tables of spaCy pipelines (``spacy:en_core_web_md``, ``spacy:<package or folder>``).

spaCy's md vectors are pruned: 514k keys share 20k unique rows (rare words point at a near
neighbour's row, so "cat" and "kitten" share one). The table has one entry per *row*, and
``tokens[row]`` is the word that owns the row: the first key mapping to it in ``vectors.key2row``.
spaCy inserts the kept, most frequent words first, in row order, and appends the remapped keys after
them, so the first key is the row's own word ("cat" for the cat/kitten row); the shortest string is
the fallback for rows whose keys have no string. Only the tokenizer and the vectors are loaded (no
tagger, parser or NER); there is no language model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from align.errors import BadInputError
from align.registry import EMBEDDING_TABLES
from align.text.base import EmbeddingTable

_SPACY_CITATION = "Honnibal, Montani, Van Landeghem & Boyd, spaCy: Industrial-strength NLP in Python, 2020"


class SpacyRowTokenizer:
    """spaCy's tokenizer with the call signature of a Hugging Face one: ``{"input_ids": rows}``.

    A token maps to the row of its exact string, else of its lower-cased string; tokens without a
    vector are dropped (these tables have no unknown row)."""

    def __init__(self, nlp: Any) -> None:
        self.nlp = nlp
        self.key2row = nlp.vocab.vectors.key2row

    def ids(self, text: str) -> list[int]:
        rows = (self.key2row.get(tok.orth, self.key2row.get(tok.lower)) for tok in self.nlp.tokenizer(text))
        return [int(r) for r in rows if r is not None]

    def __call__(self, text: str, add_special_tokens: bool = False, **_: Any) -> dict[str, list[int]]:
        return {"input_ids": self.ids(text)}


def load_spacy_vocab(folder: Path) -> Any:
    """A spaCy pipeline from ``folder`` with every component excluded (tokenizer + vocab only)."""
    import spacy

    config = spacy.util.load_config(folder / "config.cfg")
    with warnings.catch_warnings():  # W095: trained with a slightly older spaCy; vectors are unaffected
        warnings.filterwarnings("ignore", message=r"\[W095\]")
        return spacy.load(folder, exclude=list(config["nlp"]["pipeline"]))


def row_tokens(nlp: Any) -> list[str]:
    """One representative string per vector row (see the module docstring)."""
    vectors, strings = nlp.vocab.vectors, nlp.vocab.strings
    owner: dict[int, str] = {}
    for key, row in vectors.key2row.items():
        if row not in owner and key in strings:
            owner[row] = strings[key]
    n_rows = vectors.shape[0]
    return [owner.get(row, f"<row {row}>") for row in range(n_rows)]


def spacy_table(folder: Path, name: str) -> EmbeddingTable:
    nlp = load_spacy_vocab(folder)
    vectors = nlp.vocab.vectors
    if vectors.shape[0] == 0:
        raise BadInputError(f"spaCy pipeline {folder} has no word vectors (sm pipelines ship none)")
    tokens = row_tokens(nlp)
    special = [i for i, t in enumerate(tokens) if t.startswith("<") and t.endswith(">") and len(t) > 2]
    weight = torch.tensor(np.asarray(vectors.data), dtype=torch.float32)
    return EmbeddingTable(name=name, weight=weight, tokens=tokens, special_ids=special,
                          tokenizer=SpacyRowTokenizer(nlp))


def _pipeline_folder(identifier: str) -> Path:
    """A pipeline folder (containing config.cfg) from a path or an installed package name."""
    import spacy

    path = Path(identifier).expanduser()
    if not path.exists() and spacy.util.is_package(identifier):
        path = spacy.util.get_package_path(identifier)
    if (path / "config.cfg").is_file():
        return path
    nested = sorted(path.glob("*/config.cfg")) if path.is_dir() else []
    if not nested:
        raise BadInputError(f"{identifier!r} is neither a spaCy pipeline folder nor an installed pipeline package")
    return nested[0].parent


@EMBEDDING_TABLES.register(
    "spacy:en_core_web_md",
    embed_dim=300,
    license="MIT",
    citation=_SPACY_CITATION,
    weights="spacy-en-core-web-md",
    description="en_core_web_md 3.7.1 static vectors: 20000 unique rows x 300 (514k words map onto them)",
)
def en_core_web_md_table() -> EmbeddingTable:
    from align.assets import require

    folder = require("spacy-en-core-web-md") / "en_core_web_md-3.7.1"
    return spacy_table(folder, "spacy:en_core_web_md")


@EMBEDDING_TABLES.register_source("spacy", description="vectors of any spaCy pipeline: installed package or folder")
def spacy_source_table(identifier: str) -> EmbeddingTable:
    return spacy_table(_pipeline_folder(identifier), f"spacy:{identifier}")
