"""Word-embedding tables read straight from GGUF files (``gguf:<asset or path.gguf>``).

Only ``token_embd.weight`` and the tokenizer metadata are read (``gguf.GGUFReader`` +
``gguf.quants.dequantize``), so a table costs seconds and ~4 bytes x V x D of memory, not a model
load. The matrix is the raw stored one: Gemma multiplies embeddings by ``sqrt(D)`` inside its forward
pass, and that scale is *not* applied here (it equals ``lm.get_input_embeddings().weight``).

``tokens`` are the GGUF vocabulary (``tokenizer.ggml.tokens``, SentencePiece pieces with "▁" for a
leading space); ``special_ids`` are every row whose ``tokenizer.ggml.token_type`` is not NORMAL:
control tokens (<pad>, <bos>, <unusedN>, ...), user-defined ones (whitespace runs, HTML tags,
<start_of_image>) and byte fallbacks (<0x00>...). The tokenizer (~20 s for Gemma's 262k pieces) and
the causal LM (~45 s on 2 cores: transformers dequantises every tensor) are built on first use, and
the converted forms are kept in ``$ALIGN_HOME/gguf/converted`` (keyed by the file's size and mtime;
each file's sha256 recorded and checked before it is loaded again), so later processes load them in
seconds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from align.errors import BadInputError
from align.registry import EMBEDDING_TABLES
from align.text.base import EmbeddingTable

log = logging.getLogger(__name__)

_GEMMA_CITATION = "Gemma Team, Gemma 3 Technical Report, arXiv:2503.19786, 2025"


def read_gguf_table(path: Path) -> tuple[torch.Tensor, list[str], list[int]]:
    """``(weight [V, D] float32, tokens, special_ids)`` from a GGUF file, dequantised."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    tensor = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if tensor is None or "tokenizer.ggml.tokens" not in reader.fields:
        raise BadInputError(f"{path} has no token_embd.weight / tokenizer.ggml.tokens; not a GGUF language model")
    weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
    weight = weight.reshape(-1, int(tensor.shape[0]))  # GGUF shapes are (D, V), rows are tokens
    tokens = [str(t) for t in reader.fields["tokenizer.ggml.tokens"].contents()]
    field = reader.fields.get("tokenizer.ggml.token_type")
    types = np.asarray(field.contents()) if field is not None else np.full(len(tokens), gguf.TokenType.NORMAL)
    special = np.flatnonzero(types != gguf.TokenType.NORMAL).tolist()
    if len(tokens) < weight.shape[0]:  # tables padded past the vocabulary
        special += list(range(len(tokens), weight.shape[0]))
        tokens += [f"<row {i}>" for i in range(len(tokens), weight.shape[0])]
    return torch.from_numpy(np.ascontiguousarray(weight)), tokens[: weight.shape[0]], special


def converted_dir(path: Path) -> Path:
    """Where the transformers forms of ``path`` are kept; a re-pulled (re-written) file gets a new folder."""
    from align.assets import align_home

    stat = path.stat()
    return align_home() / "gguf" / "converted" / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}"


def _checksums(folder: Path) -> dict[str, str]:
    from align.assets.hashing import file_sha256

    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".complete"}


def _intact(folder: Path) -> bool:
    """Whether a finished conversion's files are exactly those recorded in its ``.complete`` (same
    sha256, nothing added: a dropped-in pickle is never loaded)."""
    try:
        recorded = json.loads((folder / ".complete").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and bool(recorded) and _checksums(folder) == recorded


def load_or_convert(folder: Path, convert: Callable[[], Any], load: Callable[[Path], Any]) -> Any:
    """``load(folder)`` if a finished conversion is there and verifies; else ``convert()`` and save it
    with the sha256 of every file in its ``.complete`` (renamed into place when complete, so an
    interrupted save is never read). A damaged conversion is logged and redone; a cache that cannot
    be written is skipped."""
    if (folder / ".complete").is_file():
        if _intact(folder):
            return load(folder)
        log.warning("%s: converted files do not match their recorded sha256; converting again", folder)
        stale = folder.with_name(f"{folder.name}.stale-{os.getpid()}")
        try:
            folder.replace(stale)
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    converted = convert()
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    try:
        converted.save_pretrained(str(partial))
        (partial / ".complete").write_text(json.dumps(_checksums(partial), sort_keys=True))
        partial.replace(folder)
    except (OSError, ValueError):  # read-only cache, another process finished first, or not serialisable
        shutil.rmtree(partial, ignore_errors=True)
    return converted


def gguf_table(path: Path, name: str) -> EmbeddingTable:
    """The table of a GGUF causal LM, with its tokenizer and LM loaded lazily through transformers."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"GGUF file {path} does not exist")
    weight, tokens, special = read_gguf_table(path)

    def tokenizer() -> Any:
        from transformers import AutoTokenizer

        return load_or_convert(converted_dir(path) / "tokenizer",
                               lambda: AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name),
                               lambda folder: AutoTokenizer.from_pretrained(str(folder)))

    def convert_lm() -> nn.Module:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # the weights are already dequantised float32; only the marker blocks saving
            quantizer.remove_quantization_config(model)
        return model

    def lm() -> nn.Module:
        from transformers import AutoModelForCausalLM

        return load_or_convert(converted_dir(path) / "lm", convert_lm,
                               lambda folder: AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32,
                                                                                   use_safetensors=True))

    return EmbeddingTable(name=name, weight=weight, tokens=tokens, special_ids=special, lm_kind="causal",
                          tokenizer_loader=tokenizer, lm_loader=lm)


@EMBEDDING_TABLES.register(
    "gguf:gemma-3-270m.q4_k_m",
    embed_dim=640,
    license="Gemma Terms of Use",
    citation=_GEMMA_CITATION,
    weights="gemma-3-270m.q4_k_m",
    description="Gemma-3 270M (base) table, 262144 x 640 (stored Q8_0, dequantised); causal LM from the Q4_K_M GGUF",
)
def gemma_3_270m_table() -> EmbeddingTable:
    from align.assets import require

    folder = require("gemma-3-270m.q4_k_m")
    return gguf_table(folder / "gemma-3-270m-q4_k_m.gguf", "gguf:gemma-3-270m.q4_k_m")


@EMBEDDING_TABLES.register_source("gguf", description="table of any local GGUF language model: gguf:/path/model.gguf")
def gguf_source_table(identifier: str) -> EmbeddingTable:
    return gguf_table(Path(identifier).expanduser(), f"gguf:{identifier}")
