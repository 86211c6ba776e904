"""VLAP: one linear layer from visual features into a frozen causal LM's word-embedding space
(Park et al., ICLR 2024; papers.md §3, §7.3).

Trained objective, with gradients reaching only the linear layer ``g``:

    L = w_cap · L_cap + w_map · L_map          (defaults 1.0 and 0.1, as the draft code)

* ``L_map`` (:mod:`align.methods.vlap.assignment`): the mean projected visual token ``v̄`` and the caption's
  text feature ``t`` are both assigned to the frozen word embeddings by entropic OT, and each
  predicts the other's assignment (τ = ε = 0.01, 3 Sinkhorn iterations, prior uniform or wordfreq).
* ``L_cap``: mean negative log-likelihood of the caption tokens (and a closing ``<eos>``) under the
  frozen LM, whose input is ``[<bos>] + g(x) as inputs_embeds + embeddings("A picture of") + caption``;
  only the caption positions are scored (logits computed there only), and right padding is masked out.

Setting ``w_map=0`` gives the caption-only (LiMBeR-style) baseline, ``w_cap=0`` assignment only; the
switched-off term is not computed (the LM is then not even loaded) and is reported as 0.

Design decisions (deviations from the draft code, and why):

* **Text feature.** ``t`` = mean of the frozen LM's *input word embeddings* (raw table rows) of the
  caption's non-special tokens. The draft averages T5-*encoder* hidden states; a causal LM has no
  encoder, and its hidden states live in a different space from the table the OT scores against,
  whereas word embeddings are exactly that space.
* **Prefix length.** The :class:`Aligner` interface feeds pooled ``[N, d_img]`` features, so each image
  is ``num_prefix_tokens`` visual tokens: ``g = Linear(d_img, P·D)`` and its output is reshaped to
  ``[N, P, D]`` (LiMBeR's recipe for pooled features). With P = 1 (default) this is VLAP's layer
  exactly; token grids ``[N, T, d_img]`` are not supported yet.
* **Embedding scale.** ``g`` maps into the *raw* table space (where ``W`` and ``L_map`` live). Gemma
  multiplies embeddings by ``sqrt(D)`` inside its embedding module (transformers'
  ``Gemma3TextScaledWordEmbedding.forward``), and ``inputs_embeds`` bypasses that module, so the
  prompt and caption are embedded through ``lm.get_input_embeddings()`` (scaled) and the visual prefix
  is multiplied by the same factor, measured once from the module (1 for Llama/OPT).
* **Fit API.** VLAP needs caption strings (for ``L_cap`` and ``t``), not another encoder's sentence
  features: :meth:`VLAPAligner.fit_captions` takes them; ``fit`` accepts a list of strings too, and
  refuses feature tensors with a :class:`BadInputError` saying so.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.methods.vlap.assignment import AssignmentLoss
from align.methods.base import caption_strings, check_caption_pairs, check_features
from align.methods.hparams import param
from align.methods.trained import TrainedAligner, TrainedHParams
from align.registry import ALIGNERS, EMBEDDING_TABLES
from align.text.base import EmbeddingTable, check_texts
from align.text.table_mean import mean_word_embedding, pad_rows, special_mask

CORE = "align.methods.vlap.aligner:VLAPCore"
PROMPT = "A picture of"
PRIORS = ("uniform", "frequency")
DEFAULT_TABLE = "gguf:gemma-3-270m.q4_k_m"


@functools.lru_cache(maxsize=4)
def load_table(name: str) -> EmbeddingTable:
    """The table (and, on first use, its LM) built once per process: Gemma's LM costs ~45 s."""
    table = EMBEDDING_TABLES.create(name)
    if table.lm_kind != "causal":
        raise BadInputError(f"vlap: table {name!r} has lm_kind={table.lm_kind!r}; VLAP needs a causal LM")
    if table.tokenizer is None:
        raise BadInputError(f"vlap: table {name!r} has no tokenizer")
    return table


def vocabulary(table: EmbeddingTable, vocab_subset: int | None) -> torch.Tensor:
    """Row ids the OT assigns to: every non-special row, or the ``vocab_subset`` most frequent words."""
    if vocab_subset is None:
        return torch.tensor(table.word_ids, dtype=torch.long)
    from align.methods.vlap.word_prior import frequent_subset

    ids = frequent_subset(table.tokens, vocab_subset, special_ids=table.special_ids)
    if len(ids) < 2:
        raise BadInputError(f"vlap: the table {table.name!r} has fewer than 2 frequent words")
    return ids


def word_prior(table: EmbeddingTable, ids: torch.Tensor, prior: str) -> torch.Tensor:
    """OT row marginal over the vocabulary ``ids``: uniform, or wordfreq's plain frequency."""
    from align.methods.vlap.word_prior import frequency_prior, uniform_prior

    if prior == "uniform":
        return uniform_prior(len(ids))
    return frequency_prior([table.tokens[i] for i in ids.tolist()])


def tokenize_captions(table: EmbeddingTable, captions: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [N, L], mask [N, L])``: each caption's tokens (truncated to ``max_tokens``) then
    ``<eos>`` when the tokenizer has one (so generation learns to stop), right-padded."""
    tok = table.tokenizer
    eos = getattr(tok, "eos_token_id", None)
    pad = getattr(tok, "pad_token_id", None) or 0
    rows = [list(tok(c, add_special_tokens=False)["input_ids"])[:max_tokens] for c in captions]
    for i, row in enumerate(rows):
        if not row:
            raise BadInputError(f"vlap: caption {i} has no tokens")
    return pad_rows([r + [eos] if eos is not None else r for r in rows], pad)


class VLAPCore(nn.Module):
    """The trainable linear layer ``g`` (its only parameters) plus the frozen parts needed for the loss.

    The frozen LM is held outside the module tree (not in ``state_dict``, not moved or switched to
    train mode by Lightning) and loaded only when ``L_cap`` or generation needs it.
    ``forward(x, ids, mask)`` returns the weighted loss and leaves the terms in ``self.parts``."""

    def __init__(self, image_dim: int, table: str, num_prefix_tokens: int = 1, w_cap: float = 1.0,
                 w_map: float = 0.1, tau: float = 0.01, eps: float = 0.01, sinkhorn_iters: int = 3,
                 prior: str = "uniform", vocab_subset: int | None = None, prompt: str = PROMPT) -> None:
        super().__init__()
        self.table_name, self.prompt = table, prompt
        self.num_prefix_tokens, self.w_cap, self.w_map = num_prefix_tokens, w_cap, w_map
        tab = load_table(table)
        self.embed_dim = tab.embed_dim
        self.g = nn.Linear(image_dim, num_prefix_tokens * tab.embed_dim)
        self.register_buffer("x_mean", torch.zeros(image_dim))  # input standardisation, set by calibrate()
        self.register_buffer("x_scale", torch.ones(()))
        ids = vocabulary(tab, vocab_subset)
        self.word_norm = float(tab.weight[ids].norm(dim=1).mean())  # the scale calibrate() gives g's output
        self.register_buffer("vocab_ids", ids, persistent=False)
        self.assignment = AssignmentLoss(tab.weight[ids], word_prior(tab, ids, prior), tau, eps, sinkhorn_iters)
        self.register_buffer("words", tab.weight, persistent=False)  # raw table, for text features
        self.register_buffer("special", special_mask(tab), persistent=False)
        self.parts: dict[str, float] = {}

    # ------------------------------------------------------------------ frozen LM

    @property
    def table(self) -> EmbeddingTable:
        return load_table(self.table_name)

    def lm(self) -> nn.Module:
        """The frozen causal LM (eval mode, no grad), on ``g``'s device."""
        lm = self.table.load_lm().requires_grad_(False).eval()
        return lm.to(self.g.weight.device)

    def embed_scale(self, lm: nn.Module) -> float:
        """What the LM's embedding module multiplies raw rows by (Gemma: sqrt(D); others: 1)."""
        emb = lm.get_input_embeddings()
        probe = torch.tensor([self.table.word_ids[0]], device=emb.weight.device)
        return float(emb(probe).norm() / emb.weight[probe].norm().clamp_min(1e-12))

    # ------------------------------------------------------------------ features

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Fit-time conditioning of ``g`` (the function class is unchanged: still one affine layer).

        Frozen image features are far from the word-embedding scale (MobileNetV2: mean norm 24, of which
        a shared mean vector of norm 19; Gemma's raw rows: norm 1.03), so the default ``nn.Linear`` init
        puts every prefix ~10x off the table's scale and nearly on one direction: the frozen LM sees an
        out-of-distribution token and the images start collapsed. So the input is centred and scaled to
        unit mean norm (a fixed affine map, saved with ``g``), and ``g``'s weight is drawn so that a
        prefix token has the mean norm of the assignment vocabulary's rows (bias 0)."""
        mean = x.mean(0)
        self.x_mean.copy_(mean)
        self.x_scale.copy_((x - mean).norm(dim=1).mean().clamp_min(1e-12))
        nn.init.normal_(self.g.weight, std=self.word_norm / self.embed_dim**0.5)
        nn.init.zeros_(self.g.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Visual tokens ``[N, P, D]`` in the raw word-embedding space."""
        return self.g((x - self.x_mean) / self.x_scale).view(len(x), self.num_prefix_tokens, self.embed_dim)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``v̄``: the mean projected visual token ``[N, D]``."""
        return self.project(x).mean(1)

    def text_feature(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``t``: mean raw word embedding of each caption's non-special tokens ``[N, D]``."""
        return mean_word_embedding(self.words, self.special, ids, mask)

    # ------------------------------------------------------------------ losses

    def _context(self, lm: nn.Module, prefix: torch.Tensor) -> torch.Tensor:
        """``[<bos>] + scaled prefix + prompt`` as input embeddings ``[N, 1? + P + Lp, D]``."""
        emb, tok = lm.get_input_embeddings(), self.table.tokenizer
        n, device = len(prefix), prefix.device
        head = [getattr(tok, "bos_token_id", None)]
        head = torch.tensor([i for i in head if i is not None], dtype=torch.long, device=device)
        prompt = torch.tensor(tok(self.prompt, add_special_tokens=False)["input_ids"], dtype=torch.long, device=device)
        parts = [emb(head).expand(n, -1, -1)] if len(head) else []
        parts += [prefix * self.embed_scale(lm), emb(prompt).expand(n, -1, -1)]
        return torch.cat(parts, dim=1)

    def caption_loss(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean NLL per caption token given the visual prefix and the prompt (frozen LM).

        Logits are computed only where a caption token (not padding) comes next (a boolean
        ``logits_to_keep``): over Gemma's 262k-word vocabulary the output projection otherwise costs as
        much as the whole transformer, and most of the memory."""
        lm = self.lm()
        context = self._context(lm, prefix)
        inputs = torch.cat([context, lm.get_input_embeddings()(ids)], dim=1)
        attention = torch.cat([mask.new_ones(context.shape[:2]), mask], dim=1)
        predicts_caption = torch.zeros(attention.shape, dtype=torch.bool, device=ids.device)
        predicts_caption[:, context.shape[1] - 1:-1] = mask.bool()  # position i predicts token i + 1
        logits = lm(inputs_embeds=inputs, attention_mask=attention, logits_to_keep=predicts_caption).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[mask.bool()])

    def forward(self, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        prefix = self.project(x)
        zero = prefix.new_zeros(())
        l_cap = self.caption_loss(prefix, ids, mask) if self.w_cap > 0 else zero
        l_map = self.assignment(prefix.mean(1), self.text_feature(ids, mask)).loss if self.w_map > 0 else zero
        self.parts = {"l_cap": float(l_cap.detach()), "l_map": float(l_map.detach())}
        return self.w_cap * l_cap + self.w_map * l_map

    @torch.no_grad()
    def generate(self, x: torch.Tensor, max_new_tokens: int) -> list[str]:
        """Greedy captions from ``[<bos>] + prefix + prompt``."""
        lm = self.lm()
        context = self._context(lm, self.project(x))
        tok = self.table.tokenizer
        out = lm.generate(inputs_embeds=context, attention_mask=torch.ones(context.shape[:2], dtype=torch.long,
                          device=context.device), max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=getattr(tok, "pad_token_id", None) or 0)
        return [s.strip() for s in tok.batch_decode(out, skip_special_tokens=True)]


@dataclass(frozen=True)
class VLAPHParams(TrainedHParams):
    table: str = param(DEFAULT_TABLE, want="an embedding-table name")  # a causal LM's table
    w_cap: float = param(1.0, low=0)  # weight of the captioning loss L_cap
    w_map: float = param(0.1, low=0)  # weight of the assignment loss L_map
    tau: float = param(0.01, above=0)  # softmax temperature of the assignment prediction
    eps: float = param(0.01, above=0)  # Sinkhorn's entropic regularisation
    sinkhorn_iters: int = param(3, low=1)
    prior: str = param("uniform", choices=PRIORS)  # OT marginal over the vocabulary
    vocab_subset: int | None = param(None, low=2)  # assign to the N most frequent words (None: all)
    weight_decay: float = param(0.0, low=0)
    batch_size: int = param(64, low=2)
    max_epochs: int = param(10, low=0)
    num_prefix_tokens: int = param(1, low=1)  # visual tokens per image
    max_caption_tokens: int = param(64, low=1)
    prompt: str = param(PROMPT, want="a non-empty string")

    def check(self, aligner: str) -> VLAPHParams:
        if self.w_cap == 0 and self.w_map == 0:
            raise BadInputError(f"{aligner}: w_cap and w_map are both 0; nothing would be trained")
        if not self.prompt.strip():
            raise self.bad(aligner, "prompt", "a non-empty string")
        return self


class VLAPAligner(TrainedAligner):
    """Linear map from image features into a frozen causal LM's word-embedding space (VLAP).

    Shared space = the LM's raw word-embedding space: ``encode_image`` gives ``v̄`` (mean projected
    visual token), ``encode_text_strings`` the mean word embedding ``t`` of a caption; compare them
    (and table rows) by cosine."""

    name = "vlap"
    text_input = "strings"
    config_class = VLAPHParams
    core_class = CORE

    # ------------------------------------------------------------------ training

    def fit(self, image_features: torch.Tensor, text_features: Any) -> VLAPAligner:
        """Caption strings are delegated to :meth:`fit_captions`; feature tensors are refused."""
        why = "VLAP trains through the frozen LM's captioning loss and its word embeddings"
        return self.fit_captions(image_features, caption_strings(text_features, "vlap.fit", why))

    def fit_captions(self, image_features: torch.Tensor, captions: Sequence[str],
                     ckpt_path: str | Path | None = None) -> VLAPAligner:
        """Train ``g`` on N images and their N captions; with ``checkpoint_dir`` set, ``last.ckpt`` is kept
        there and a later fit of the same pairs resumes from it exactly (or ``ckpt_path=`` names one)."""
        hp = self.hparams
        x = check_features(image_features, "vlap.fit_captions: image features")
        captions = check_caption_pairs(len(x), captions, "vlap.fit_captions")
        ids, mask = tokenize_captions(load_table(hp["table"]), captions, hp["max_caption_tokens"])
        return self._train("vlap.fit_captions", (x, ids, mask), dict(image_dim=x.shape[1]),
                           prepare=lambda core, data: core.calibrate(x), ckpt_path=ckpt_path)

    def _set_dims(self, module: Any) -> None:
        self.image_dim, self.text_dim = module.hparams.core_args["image_dim"], module.core.embed_dim

    def _load_shape(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        image_dim, _ = self._require_fitted()
        return dict(image_dim=image_dim)

    # ------------------------------------------------------------------ embedding

    def _images(self, image_features: torch.Tensor, what: str) -> torch.Tensor:
        image_dim, _ = self._require_fitted()
        x = check_features(image_features, f"vlap.{what}", image_dim)
        return x.to(self.core.g.weight.device)

    @torch.no_grad()
    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        """``v̄ [M, D]``: the mean projected visual token, in the LM's raw word-embedding space."""
        return self.core.encode_image(self._images(image_features, "encode_image")).cpu()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Captions (strings) as ``t``; feature tensors are refused (they are not in the LM's space)."""
        if isinstance(texts, torch.Tensor):
            raise BadInputError("vlap: encode_text takes caption strings, not text-encoder features (they do not "
                                "live in the LM's word-embedding space)")
        return self.encode_text_strings(texts)

    @property
    def text_encoder_name(self) -> str:
        """``table:<table>``: the mean-word-embedding encoder whose features are exactly ``t``."""
        return f"table:{self.hparams['table']}"

    @torch.no_grad()
    def encode_text_strings(self, captions: Sequence[str]) -> torch.Tensor:
        """``t [M, D]``: each caption's mean raw word embedding (the L_map text feature)."""
        self._require_fitted()
        table = load_table(self.hparams["table"])
        ids, mask = tokenize_captions(table, check_texts(captions), self.hparams["max_caption_tokens"])
        core = self.core
        return core.text_feature(ids.to(core.words.device), mask.to(core.words.device)).cpu()

    @torch.no_grad()
    def caption(self, image_features: torch.Tensor, max_new_tokens: int = 20) -> list[str]:
        """Greedy captions of the frozen LM given each image's prefix and the prompt."""
        if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
            raise BadInputError(f"vlap.caption: max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        return self.core.generate(self._images(image_features, "caption"), max_new_tokens)

    @torch.no_grad()
    def nearest_words(self, image_features: torch.Tensor, top: int = 5) -> list[list[str]]:
        """The ``top`` tokens of the assignment vocabulary closest (cosine) to each ``v̄``."""
        core = self.core
        if not (isinstance(top, int) and 1 <= top <= len(core.vocab_ids)):
            raise BadInputError(f"vlap.nearest_words: top must be an integer in [1, {len(core.vocab_ids)}], got {top!r}")
        v = F.normalize(core.encode_image(self._images(image_features, "nearest_words")), dim=-1)
        best = (v @ core.assignment.unit_words.T).topk(top, dim=-1).indices
        tokens = load_table(self.hparams["table"]).tokens
        return [[tokens[int(core.vocab_ids[j])] for j in row] for row in best.cpu()]


@ALIGNERS.register(
    "vlap",
    description="One linear layer into a frozen causal LM's word-embedding space, trained with captioning "
    "(L_cap) + 0.1 x optimal-transport assignment prediction over the word embeddings (L_map). "
    "Needs caption strings: fit_captions(images, captions). w_map=0: caption-only (LiMBeR); w_cap=0: L_map only.",
    citation="Park et al., Bridging Vision and Language Spaces with Assignment Prediction (VLAP), ICLR 2024",
)
def _vlap(**hparams: Any) -> VLAPAligner:
    return VLAPAligner(**hparams)
