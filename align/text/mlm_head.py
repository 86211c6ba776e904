"""A BERT MLM prediction head trained for a masked LM whose checkpoint ships without one (MiniLM).

Why: sentence-transformers' MiniLM has the BERT WordPiece table and encoder but no ``cls.predictions``
weights (shared/assets.md §4), and nothing offline ships a BERT with its head. A bidirectional
denoiser needs one, so it is trained here from what ships: the frozen encoder's last hidden states and
English text that comes with Python itself (``pydoc_data.topics.topics``, the language reference).

The head is BERT's: transform (dense D->D, GELU, LayerNorm), decoder tied to the frozen word-embedding
rows, a trainable output bias; its parameter names are ``lm.cls.predictions``' (``transform.dense.*``,
``transform.LayerNorm.*``, ``bias``), so its state dict drops into a ``BertForMaskedLM``. Masking is
BERT's: 15 % of the non-special tokens, of which 80 % become [MASK], 10 % a random word, 10 % stay.

Whole topics are held out for evaluation (chosen by the hash of their name, never trained on). The
trained head is cached under ``$ALIGN_HOME/text/mlm-heads/`` as safetensors keyed by the LM's weights
hash, the training corpus hash and every setting; a file whose key or tensor hash does not match is
logged and retrained, never trusted (safetensors holds no pickle).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from align.atomic import atomic_path
from align.text.base import EmbeddingTable, seeded

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
IGNORE = -100  # label of positions that are not predicted (F.cross_entropy's ignore_index)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class HeadSettings:
    """Everything besides the LM and the corpus that decides the trained head (all in the cache key)."""

    seed: int = 0
    steps: int = 400  # ~2 s a step for MiniLM on one busy CPU core: ~14 minutes
    batch_size: int = 32
    seq_len: int = 64  # tokens per chunk, [CLS] and [SEP] included
    lr: float = 2e-3
    bias_lr_scale: float = 10.0  # the output bias's lr is lr x this (see train_head)
    weight_decay: float = 0.01
    warmup: int = 20
    mask_prob: float = 0.15
    eval_fraction: float = 0.1


# ------------------------------------------------------------------ corpus


_RULE = re.compile(r"^[ \t]*[-+=*~^#]{3,}[ \t]*$", re.M)  # heading rules and table borders: "****", "+---+--+"


def python_docs() -> dict[str, str]:
    """English text shipped with the interpreter: the language reference's pydoc topics, without the
    reStructuredText heading rules and table borders (runs of "*", "-", "=" that are no language and
    would be free predictions)."""
    from pydoc_data.topics import topics

    return {name: _RULE.sub("", text) for name, text in topics.items()}


def split_documents(docs: Mapping[str, str], eval_fraction: float) -> tuple[list[str], list[str]]:
    """``(train names, eval names)``: whole documents held out, chosen by the sha256 of their name (the
    same split on every machine, and no chunk of a held-out topic is ever trained on)."""
    ranked = sorted(docs, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    n_eval = max(1, round(eval_fraction * len(ranked))) if eval_fraction > 0 else 0
    return sorted(ranked[n_eval:]), sorted(ranked[:n_eval])


def chunk_ids(table: EmbeddingTable, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """``[N, seq_len]`` token ids: each text's tokens (paragraph by paragraph, in order) cut into windows
    of ``seq_len - 2``, each wrapped as ``[CLS] ... [SEP]`` and right-padded with [PAD]."""
    tok = table.tokenizer
    width = seq_len - 2
    rows = []
    for text in texts:
        ids: list[int] = []
        for paragraph in re.split(r"\n\s*\n", text):
            paragraph = " ".join(paragraph.split())
            if paragraph:
                ids += tok(paragraph, add_special_tokens=False, verbose=False)["input_ids"]
        rows += [[tok.cls_token_id, *ids[i:i + width], tok.sep_token_id] for i in range(0, len(ids), width)]
    out = torch.full((len(rows), seq_len), int(tok.pad_token_id), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


def ids_sha256(ids: torch.Tensor) -> str:
    return hashlib.sha256(ids.contiguous().numpy().tobytes()).hexdigest()


# ------------------------------------------------------------------ masking


def maskable_rows(table: EmbeddingTable) -> torch.Tensor:
    """``[V]`` bool: rows that may be masked or drawn as a random replacement (the words, no specials)."""
    keep = torch.ones(table.vocab_size, dtype=torch.bool)
    keep[list(table.special_ids)] = False
    return keep


def bert_mask(ids: torch.Tensor, maskable: torch.Tensor, mask_id: int, prob: float,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)``: each maskable token selected with probability ``prob``; a selected one becomes
    [MASK] (80 %), a random word (10 %) or stays (10 %); ``labels`` is the original id there, else IGNORE."""
    selected = (torch.rand(ids.shape, generator=generator) < prob) & maskable[ids]
    how = torch.rand(ids.shape, generator=generator)
    words = maskable.nonzero().squeeze(1)
    random_words = words[torch.randint(len(words), ids.shape, generator=generator)]
    inputs = torch.where(selected & (how < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(selected & (how >= 0.8) & (how < 0.9), random_words, inputs)
    return inputs, torch.where(selected, ids, torch.full_like(ids, IGNORE))


# ------------------------------------------------------------------ the head


class HeadTransform(nn.Module):
    """BERT's ``BertPredictionHeadTransform`` (same parameter names)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.transform_act_fn = nn.GELU()
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(h)))


class MLMHead(nn.Module):
    """Transform + decoder tied to the frozen word rows (a buffer, never trained) + output bias."""

    def __init__(self, rows: torch.Tensor, eps: float = 1e-12) -> None:
        super().__init__()
        self.transform = HeadTransform(rows.shape[1], eps)
        self.register_buffer("rows", rows.detach().float(), persistent=False)
        self.bias = nn.Parameter(torch.zeros(rows.shape[0]))
        nn.init.normal_(self.transform.dense.weight, std=0.02)  # BERT's initializer_range
        nn.init.zeros_(self.transform.dense.bias)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.transform(states) @ self.rows.T + self.bias


def new_head(lm: nn.Module, seed: int) -> MLMHead:
    """The untrained head for ``lm``: BERT's initialisation, seeded."""
    rows = lm.get_input_embeddings().weight
    eps = float(getattr(lm.config, "layer_norm_eps", 1e-12))
    return seeded(seed, lambda: MLMHead(rows, eps))


@torch.no_grad()
def encoder_states(lm: nn.Module, inputs: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The frozen encoder's last hidden states ``[B, T, D]`` (padding not attended)."""
    return lm.base_model(input_ids=inputs, attention_mask=(inputs != pad_id).long()).last_hidden_state


# ------------------------------------------------------------------ training and evaluation


def train_head(lm: nn.Module, table: EmbeddingTable, train: torch.Tensor,
               settings: HeadSettings) -> tuple[MLMHead, dict]:
    """Train a fresh head on chunks ``train [N, T]`` over the frozen ``lm``; ``(head, info)``.

    AdamW (decay on the dense weight only), linear warm-up then cosine decay, batches drawn by a seeded
    permutation per epoch, masks drawn afresh each step (dynamic masking). Adam moves each parameter by
    about its lr a step, while the output bias must travel several nats (the log-frequency gaps between
    words) within a few hundred steps: it gets ``bias_lr_scale`` times the lr."""
    head = new_head(lm, settings.seed)
    t = head.transform
    opt = torch.optim.AdamW([
        {"params": [t.dense.weight], "weight_decay": settings.weight_decay},
        {"params": [t.dense.bias, t.LayerNorm.weight, t.LayerNorm.bias], "weight_decay": 0.0},
        {"params": [head.bias], "weight_decay": 0.0, "lr": settings.lr * settings.bias_lr_scale},
    ], lr=settings.lr)

    def factor(step: int) -> float:
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - settings.warmup) / max(1, settings.steps - settings.warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(settings.seed)
    maskable = maskable_rows(table)
    mask_id, pad_id = int(table.tokenizer.mask_token_id), int(table.tokenizer.pad_token_id)
    order, losses, start = torch.empty(0, dtype=torch.long), [], time.perf_counter()
    for step in range(settings.steps):
        if len(order) < settings.batch_size:
            order = torch.cat([order, torch.randperm(len(train), generator=gen)])
        batch, order = train[order[:settings.batch_size]], order[settings.batch_size:]
        inputs, labels = bert_mask(batch, maskable, mask_id, settings.mask_prob, gen)
        where = labels != IGNORE
        if not where.any():
            continue
        states = encoder_states(lm, inputs, pad_id)[where]
        loss = F.cross_entropy(head(states), labels[where])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    tail = losses[-50:]
    info = {"steps": settings.steps, "train_chunks": len(train), "train_seconds": time.perf_counter() - start,
            "final_train_loss": sum(tail) / max(1, len(tail))}
    return head.requires_grad_(False).eval(), info


@dataclass(frozen=True)
class Masked:
    """One fixed masking of held-out chunks, so every predictor is scored at the same positions."""

    inputs: torch.Tensor
    labels: torch.Tensor

    @property
    def targets(self) -> torch.Tensor:
        return self.labels[self.labels != IGNORE]


def fixed_mask(table: EmbeddingTable, chunks: torch.Tensor, prob: float = 0.15, seed: int = 12345) -> Masked:
    gen = torch.Generator().manual_seed(seed)
    return Masked(*bert_mask(chunks, maskable_rows(table), int(table.tokenizer.mask_token_id), prob, gen))


@torch.no_grad()
def score_head(head: MLMHead, lm: nn.Module, masked: Masked, pad_id: int, batch_size: int = 64) -> dict[str, float]:
    """Masked-token accuracy and mean cross-entropy (nats) of ``head`` over ``masked``'s positions."""
    correct, total_ce, n = 0, 0.0, 0
    for i in range(0, len(masked.inputs), batch_size):
        inputs, labels = masked.inputs[i:i + batch_size], masked.labels[i:i + batch_size]
        where = labels != IGNORE
        if not where.any():
            continue
        logits = head(encoder_states(lm, inputs, pad_id)[where])
        correct += int((logits.argmax(-1) == labels[where]).sum())
        total_ce += float(F.cross_entropy(logits, labels[where], reduction="sum"))
        n += int(where.sum())
    return {"accuracy": correct / max(1, n), "cross_entropy": total_ce / max(1, n), "positions": n}


def score_unigram(table: EmbeddingTable, train: torch.Tensor, masked: Masked) -> dict[str, float]:
    """The baseline that ignores context: always the most frequent training word (accuracy), and the
    training words' unigram distribution, add-one smoothed over the maskable rows (cross-entropy)."""
    maskable = maskable_rows(table)
    counts = torch.bincount(train[maskable[train]], minlength=table.vocab_size).double()
    counts = torch.where(maskable, counts + 1, torch.zeros_like(counts))
    log_p = (counts / counts.sum()).log()
    targets = masked.targets
    return {"accuracy": float((targets == counts.argmax()).double().mean()),
            "cross_entropy": float(-log_p[targets].mean()), "positions": len(targets)}


# ------------------------------------------------------------------ the cache


def lm_fingerprint(lm: nn.Module) -> str:
    """sha256 of the frozen weights the head reads (encoder and embeddings: the LM's base model), by name,
    dtype, shape and bytes: what was really loaded, so a replaced or damaged LM never reuses a head."""
    sha = hashlib.sha256()
    for name, tensor in sorted(lm.base_model.state_dict().items()):
        t = tensor.detach().contiguous().cpu()
        sha.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def head_key(table: EmbeddingTable, lm: nn.Module, train: torch.Tensor, settings: HeadSettings) -> dict[str, Any]:
    """Everything that decides the trained head; the cache file is named by its digest."""
    return {"format": FORMAT_VERSION, "table": table.name, "lm_sha256": lm_fingerprint(lm),
            "corpus_sha256": ids_sha256(train), "settings": dataclasses.asdict(settings)}


def key_digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cache_path(key: Mapping[str, Any], root: Path | None = None) -> Path:
    """``$ALIGN_HOME/text/mlm-heads/<table>/<digest16>.safetensors``."""
    if root is None:
        from align.assets import align_home

        root = align_home() / "text" / "mlm-heads"
    return Path(root) / _SAFE.sub("_", str(key["table"]).replace(":", "__").replace("/", "--")) / \
        f"{key_digest(key)[:16]}.safetensors"


def _tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        sha.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        sha.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def save_head(path: Path, head: MLMHead, key: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Write the head's trained tensors, its key and the tensors' sha256 in one atomic rename."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    meta = {"key": json.dumps(key, sort_keys=True), "tensors_sha256": _tensors_sha256(tensors),
            "info": json.dumps(dict(info), sort_keys=True)}
    blob = save(tensors, metadata=meta)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def load_head(path: Path, key: Mapping[str, Any], lm: nn.Module) -> tuple[MLMHead, dict] | None:
    """The cached head at ``path`` if it is intact and was trained under exactly ``key``, else None
    (logged). Only safetensors is parsed: nothing in the file is ever unpickled or executed."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        if meta.get("key") != json.dumps(key, sort_keys=True):
            raise ValueError("trained under another key")
        if meta.get("tensors_sha256") != _tensors_sha256(tensors):
            raise ValueError("tensor data does not match its recorded sha256")
        head = new_head(lm, 0)
        head.load_state_dict(tensors, strict=True)
        return head.requires_grad_(False).eval(), json.loads(meta.get("info", "{}"))
    except Exception as err:  # a damaged or foreign file is a cache miss: retrain and overwrite it
        log.warning("%s: cached MLM head not used (%s); training it again", path, str(err).splitlines()[0][:200])
        return None


def pretrained_head(table: EmbeddingTable, settings: HeadSettings = HeadSettings(),
                    docs: Mapping[str, str] | None = None, root: Path | None = None) -> tuple[MLMHead, dict]:
    """The head for ``table``'s masked LM trained on ``docs`` (default: :func:`python_docs`' training
    topics): loaded from the cache when a file of the same key is intact, else trained and cached.
    ``info`` says which (``"cached"``), the training figures and the cache file."""
    if table.lm_kind != "masked":
        raise ValueError(f"table {table.name}: an MLM head needs a masked LM, not {table.lm_kind!r}")
    lm = table.load_lm()
    docs = python_docs() if docs is None else docs
    train_names, _ = split_documents(docs, settings.eval_fraction)
    train = chunk_ids(table, [docs[n] for n in train_names], settings.seq_len)
    key = head_key(table, lm, train, settings)
    path = cache_path(key, root)
    found = load_head(path, key, lm)
    if found is not None:
        return found[0], {**found[1], "cached": True, "path": str(path), "key": key}
    head, info = train_head(lm, table, train, settings)
    save_head(path, head, key, info)
    return head, {**info, "cached": False, "path": str(path), "key": key}
