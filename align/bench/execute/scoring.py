"""The benchmark tasks, each scoring a fitted aligner on held-out features.

Every task sees the aligner's shared space only: image features go through ``encode_image``, texts
(captions, class prompts) through ``encode_text`` (as the text encoder's cached features, or as the
strings themselves for a strings aligner such as VLAP). Labels of the fit split are used only by the
tasks that train a classifier (linear probe, few-shot); zero-shot tasks never see eval labels
except to score. Captioning needs an aligner that can caption (``can_caption``: a generative LM behind it).
Visual arithmetic and attribute questions also read the dataset's ground truth about the eval images
(:mod:`align.bench.execute.truth`), only to score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from align.bench.execute.features import FeatureBank, SplitInputs, flat_captions, label_set
from align.bench.plan.config import DatasetSpec
from align.errors import BadInputError
from align.methods.framework.base import Aligner


class Scored(NamedTuple):
    """A task's output: its metrics, what else the result records, and the per-item outputs the metrics
    were computed from (:mod:`align.eval.items`; None for a task that has none)."""

    metrics: dict[str, float]
    details: dict[str, Any]
    items: Any = None


@dataclass
class TaskContext:
    spec: DatasetSpec
    aligner: Aligner
    bank: FeatureBank
    text_encoder: str
    fit: SplitInputs
    eval: SplitInputs
    seed: int
    # (part, its images in the shared space) by id(part): every task of a unit shares one context, and
    # an aligner that embeds through a frozen LM (LQAE) would otherwise redo the fit and eval images per task
    _embedded: dict[int, tuple[SplitInputs, torch.Tensor]] = field(default_factory=dict, init=False, repr=False,
                                                                  compare=False)

    def embed_images(self, part: SplitInputs) -> torch.Tensor:
        """``part``'s images in the shared space, from the input kind the aligner declares (computed once
        per context: ``encode_image`` is a pure function of the fitted aligner and its input)."""
        found = self._embedded.get(id(part))
        if found is None or found[0] is not part:
            found = self._embedded[id(part)] = part, self.aligner.encode_image(part.for_aligner(self.aligner))
        return found[1]

    def texts(self, strings: list[str], what: str) -> torch.Tensor | list[str]:
        """What the aligner's ``encode_text`` takes for these eval-split texts: cached features, or strings."""
        if self.aligner.text_input == "strings":
            return list(strings)
        return self.bank.texts(self.text_encoder, strings, self.eval.split, what)


def zeroshot_classification(ctx: TaskContext) -> Scored:
    from align.eval.metrics import classification_items
    from align.eval.zeroshot import class_prompts, zeroshot_logits

    labels = label_set(ctx.eval.split, ctx.spec.label_set)
    prompts = class_prompts(labels.class_names, labels.templates)
    prompt_features = ctx.texts(prompts, f"prompts-{ctx.spec.label_set or 'main'}")
    logits = zeroshot_logits(ctx.embed_images(ctx.eval), ctx.aligner.encode_text(prompt_features),
                             num_classes=len(labels.class_names), reducer=ctx.spec.reducer)
    items = classification_items(logits, torch.as_tensor(labels.labels))
    return Scored(items.metrics(), {"reducer": ctx.spec.reducer, "num_classes": len(labels.class_names),
                                    "templates": list(labels.templates)}, items)


def zeroshot_retrieval(ctx: TaskContext) -> Scored:
    """Recall@k by cosine in the shared space; an aligner with a ``retrieval_scores(images, texts)``
    method that returns ``(image->text, text->image)`` score matrices (e.g. Codebook-VLP re-ranking
    candidates with its matching head) is scored on those instead (it returns None when not re-ranking)."""
    from align.eval.retrieval import retrieval_items, retrieval_items_from_scores

    captions, owner = flat_captions(ctx.eval.split)
    texts = ctx.texts(captions, "captions")
    info: dict[str, Any] = {"num_images": len(ctx.eval), "num_captions": len(captions)}
    scores = ctx.aligner.retrieval_scores(ctx.eval.for_aligner(ctx.aligner), texts) if ctx.aligner.reranks_retrieval else None
    if scores is not None:
        items = retrieval_items_from_scores(*scores, owner, ks=ctx.spec.recall_k)
        return Scored(items.metrics(), info | {"reranked": True}, items)
    items = retrieval_items(ctx.embed_images(ctx.eval), ctx.aligner.encode_text(texts), owner, ks=ctx.spec.recall_k)
    return Scored(items.metrics(), info, items)


def _train_test_labels(ctx: TaskContext) -> tuple[Any, Any]:
    """The fit and eval label sets of a probe; a shifted entry's eval dataset must name the same classes
    in the same order, or its label ids would mean other classes."""
    train = label_set(ctx.fit.split, ctx.spec.label_set)
    test = label_set(ctx.eval.split, ctx.spec.label_set)
    if list(train.class_names) != list(test.class_names):
        raise BadInputError(f"{ctx.fit.split.dataset}/{ctx.fit.split.split} and {ctx.eval.split.dataset}/"
                            f"{ctx.eval.split.split}: different class lists, so a probe trained on one cannot "
                            "be scored on the other")
    return train, test


def linear_probe(ctx: TaskContext) -> Scored:
    from align.eval.linear_probe import linear_probe as probe

    train, test = _train_test_labels(ctx)
    result = probe(ctx.embed_images(ctx.fit), train.labels,
                   ctx.embed_images(ctx.eval), test.labels, seed=ctx.seed)
    return Scored(result.metrics, {"C": result.C}, result.items)


def fewshot(ctx: TaskContext) -> Scored:
    from align.eval.fewshot import fewshot_items

    train, test = _train_test_labels(ctx)
    items = fewshot_items(ctx.embed_images(ctx.fit), train.labels,
                          ctx.embed_images(ctx.eval), test.labels, k=ctx.spec.fewshot_k, seed=ctx.seed)
    return Scored(items.metrics(), {"k": ctx.spec.fewshot_k}, items)


def captioning(ctx: TaskContext) -> Scored:
    """Greedy captions of the eval images scored against their reference captions (BLEU, ROUGE-L, CIDEr)."""
    from align.eval.captioning import caption_scores
    from align.eval.items import CaptionItems

    if not ctx.aligner.can_caption:
        raise BadInputError(f"captioning: aligner {ctx.aligner.name!r} cannot generate captions (no language model)")
    if ctx.eval.split.captions is None:
        raise BadInputError(f"{ctx.eval.split.dataset}/{ctx.eval.split.split}: has no reference captions")
    generated = ctx.aligner.caption(ctx.eval.for_aligner(ctx.aligner))
    metrics, per_image = caption_scores(generated, ctx.eval.split.captions)
    examples = [{"image": i, "generated": generated[i], "references": list(ctx.eval.split.captions[i])}
                for i in range(min(20, len(generated)))]
    items = CaptionItems(per_image, tuple(generated), tuple(tuple(r) for r in ctx.eval.split.captions))
    return Scored(metrics, {"num_images": len(generated), "examples": examples}, items)


def code_statistics(ctx: TaskContext) -> Scored:
    """How the aligner's discrete image codes (``image_codes``: ``[N, T]`` ids) are used and how much they
    say about the eval labels: distinct codes and their perplexity (collapse), code/class NMI over
    token occurrences and k-means NMI of code histograms (:mod:`align.eval.token_stats`)."""
    from align.eval.items import CodeItems

    codes = ctx.aligner.image_codes(ctx.eval.for_aligner(ctx.aligner))
    labels = label_set(ctx.eval.split, ctx.spec.label_set).labels
    codes = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != len(labels):
        raise BadInputError(f"code_statistics: expected codes [N, T] for {len(labels)} images, got {codes.shape}")
    items = CodeItems(codes.astype(np.int64), np.asarray(labels, dtype=np.int64), int(ctx.seed))
    return Scored(items.metrics(), {"num_images": int(codes.shape[0]), "tokens_per_image": int(codes.shape[1])}, items)


def visual_arithmetic(ctx: TaskContext) -> Scored:
    """``image - old word + new word`` searched among the other eval images (:mod:`align.eval.arithmetic`),
    on the dataset's swaps with both images in the eval split (:mod:`align.bench.execute.truth`); the
    words are embedded as texts of their own, and the same search without them is recorded beside."""
    from align.bench.execute.truth import arithmetic_swaps
    from align.eval.arithmetic import arithmetic_items, arithmetic_queries, image_only_items, recall_by_attribute

    swaps = arithmetic_swaps(ctx.spec, ctx.eval.split)
    queries = arithmetic_queries(swaps)
    if not queries:
        raise BadInputError(f"{ctx.eval.split.dataset}/{ctx.eval.split.split}: no visual arithmetic swap has both "
                            "its images in the split; score a larger split")
    words = sorted({w for q in queries for w in (q.old, q.new)})
    word_emb = ctx.aligner.encode_text(ctx.texts(words, "arithmetic-words"))
    images = ctx.embed_images(ctx.eval)
    items = arithmetic_items(images, word_emb, words, queries)
    alone = image_only_items(images, queries).metrics()
    info = {"query": "normalize(image[source]) - normalize(text(old)) + normalize(text(new)), cosine",
            "candidates": "every eval image but the source", "num_images": len(ctx.eval), "num_swaps": len(swaps),
            "num_queries": len(queries), "image_only": alone, "by_attribute": recall_by_attribute(items, queries)}
    return Scored(items.metrics(), info, items)


def attribute_questions(ctx: TaskContext) -> Scored:
    """One-word answers chosen by the similarity of ``question + " " + answer`` prompts with the image
    (:mod:`align.eval.questions`), on the dataset's questions about the eval images; acc1 per attribute beside."""
    from align.bench.execute.truth import split_questions
    from align.eval.questions import accuracy_by_attribute, answer_choices, answer_prompt, question_items

    asked = split_questions(ctx.spec, ctx.eval.split)
    if not asked.questions:
        raise BadInputError(f"{ctx.eval.split.dataset}/{ctx.eval.split.split}: has no attribute questions")
    choices = answer_choices(asked.questions, asked.answers, asked.attributes, asked.candidates)
    prompts = ctx.aligner.encode_text(ctx.texts(list(choices.prompts), "question-answers"))
    items = question_items(ctx.embed_images(ctx.eval), asked.images, prompts, choices)
    info = {"prompt": answer_prompt("{question}", "{answer}"), "num_images": len(ctx.eval),
            "num_questions": len(asked.questions), "candidates": asked.candidates,
            "by_attribute": accuracy_by_attribute(items, asked.attributes)}
    return Scored(items.metrics(), info, items)


TASKS: dict[str, Callable[[TaskContext], Scored]] = {
    "zeroshot_classification": zeroshot_classification,
    "zeroshot_retrieval": zeroshot_retrieval,
    "linear_probe": linear_probe,
    "fewshot": fewshot,
    "captioning": captioning,
    "code_statistics": code_statistics,
    "visual_arithmetic": visual_arithmetic,
    "attribute_questions": attribute_questions,
}
