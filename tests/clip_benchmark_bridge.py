"""Given embeddings scored by align's metric code and by CLIP_benchmark's own ``evaluate`` functions.

CLIP_benchmark scores a CLIP-like model through a dataloader and a tokenizer; here the model's
``encode_image`` / ``encode_text`` return rows of the given embedding matrices for index tensors, the
dataloader yields image indices, and the tokenizer maps each string to the row of its embedding. So
CLIP_benchmark's code runs unchanged (``amp=False``: on CPU autocast would round to bfloat16) on the
very embeddings align scores, and nothing of its metrics is written again here.

``Span`` says what the tie rule allows (:mod:`align.eval.ties`): align counts a tie against the query,
CLIP_benchmark takes ``torch.topk``'s order, so its number lies between align's (pessimistic) value
and the optimistic one, and equals align's wherever no tie straddles k.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from align.eval.items import ClassificationItems, RetrievalItems
from align.eval.metrics import classification_items
from align.eval.retrieval import retrieval_items
from align.eval.ties import label_positives, rank_of_best_positive, tied_below
from align.eval.zeroshot import zeroshot_logits


def _scalar(value: object) -> float:
    """``float`` of a one-element array, as NumPy < 2.4 allowed (a string such as ``"nan"`` too)."""
    return builtins.float(np.asarray(value).reshape(()))


@contextlib.contextmanager
def numpy_24_scalars(module: object) -> Iterator[None]:
    """CLIP_benchmark 1.6.2's ``accuracy`` calls ``float()`` on a one-element 1-D array, which NumPy 2.4
    refuses; its module's ``float`` is pointed at :func:`_scalar` while it runs (its code is otherwise
    untouched; the name is looked up in the module's globals before the builtins)."""
    module.float = _scalar  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del module.float  # type: ignore[attr-defined]


class RowModel(torch.nn.Module):
    """A CLIP-like model whose encoders look rows up: index tensors in, the given embeddings out."""

    def __init__(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> None:
        super().__init__()
        self.image_emb, self.text_emb = image_emb.float(), text_emb.float()

    def encode_image(self, index: torch.Tensor) -> torch.Tensor:
        return self.image_emb[index]

    def encode_text(self, index: torch.Tensor) -> torch.Tensor:
        return self.text_emb[index]


class RowTokenizer:
    """Strings to the rows of their embeddings (each string names one row)."""

    def __init__(self, strings: Sequence[str]) -> None:
        self.row = {s: i for i, s in enumerate(strings)}
        assert len(self.row) == len(strings), "every text must be a distinct string"

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.row[t] for t in texts], dtype=torch.long)


@dataclass
class RowLoader:
    """Batches of image indices with their targets (captions or labels); ``dataset.classes`` for CLIP_benchmark."""

    targets: Sequence
    classes: Sequence[str] = ()
    batch_size: int = 64

    @property
    def dataset(self) -> RowLoader:
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, object]]:
        for start in range(0, len(self.targets), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(self.targets)))
            batch = [self.targets[i] for i in index.tolist()]
            yield index, (torch.tensor(batch) if self.classes else batch)


@dataclass
class Span:
    """align's value (ties against the query), the optimistic value, and how many queries a tie straddles."""

    align: float
    optimistic: float
    straddling: int


def _recall(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k))


def _text_names(n: int) -> list[str]:
    return [f"text {j}" for j in range(n)]


def retrieval_both(image_emb: torch.Tensor, text_emb: torch.Tensor, text_image_index: Sequence[int],
                   ks: Sequence[int]) -> tuple[dict[str, Span], dict[str, float], RetrievalItems]:
    """``(align's spans, CLIP_benchmark's metrics, align's items)`` of retrieval on these embeddings."""
    from clip_benchmark.metrics import zeroshot_retrieval

    index = torch.as_tensor(text_image_index, dtype=torch.long)
    items = retrieval_items(image_emb, text_emb, index, ks)
    names = _text_names(len(index))
    captions = [[names[t] for t in np.flatnonzero(index.numpy() == i)] for i in range(len(image_emb))]
    theirs = zeroshot_retrieval.evaluate(RowModel(image_emb, text_emb), RowLoader(captions), RowTokenizer(names),
                                         "cpu", amp=False, recall_k_list=list(ks))
    sim = F.normalize(image_emb.float(), dim=-1) @ F.normalize(text_emb.float(), dim=-1).T
    positive = index[None, :] == torch.arange(len(image_emb))[:, None]  # [images, texts]
    ranks = {"image": rank_of_best_positive(sim.T, positive.T).numpy(),  # text queries, image candidates
             "text": rank_of_best_positive(sim, positive).numpy()}
    ties = {"image": tied_below(sim.T, positive.T).numpy(), "text": tied_below(sim, positive).numpy()}
    spans = {}
    for direction in ("image", "text"):
        low, tied = ranks[direction], ties[direction]
        for k in ks:
            straddle = int(((low - tied < k) & (low >= k)).sum())
            spans[f"{direction}_retrieval_recall@{k}"] = Span(_recall(low, k), _recall(low - tied, k), straddle)
    return spans, theirs, items


def classification_both(image_emb: torch.Tensor, prompt_emb: torch.Tensor, labels: Sequence[int],
                        templates: int) -> tuple[dict[str, Span], dict[str, float], ClassificationItems]:
    """``(align's spans, CLIP_benchmark's metrics, align's items)`` of zero-shot classification with the
    mean of ``templates`` prompts per class (``prompt_emb`` class-major, as align orders them)."""
    from clip_benchmark.metrics import zeroshot_classification

    num_classes = prompt_emb.shape[0] // templates
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    logits = zeroshot_logits(image_emb, prompt_emb, num_classes, reducer="mean")
    items = classification_items(logits, labels_t)
    classes = [f"class {c}" for c in range(num_classes)]
    forms = [f"{{c}} in template {t}" for t in range(templates)]  # CLIP_benchmark fills {c} with str.format
    strings = [form.format(c=name) for name in classes for form in forms]
    with numpy_24_scalars(zeroshot_classification):
        theirs = zeroshot_classification.evaluate(RowModel(image_emb, prompt_emb), RowLoader(labels_t.tolist(), classes),
                                                  RowTokenizer(strings), classes, forms, "cpu", amp=False)
    positive = label_positives(labels_t, num_classes)
    low = rank_of_best_positive(logits, positive).numpy()
    high = low - tied_below(logits, positive).numpy()
    y = labels_t.numpy()

    def per_class(ranks: np.ndarray) -> float:
        return float(np.mean([np.mean(ranks[y == c] < 1) for c in np.unique(y)]))

    spans = {f"acc{k}": Span(_recall(low, k), _recall(high, k), int(((high < k) & (low >= k)).sum()))
             for k in ((1, 5) if num_classes >= 5 else (1,))}
    spans["mean_per_class_recall"] = Span(per_class(low), per_class(high), spans["acc1"].straddling)
    return spans, theirs, items


def assert_explained(spans: dict[str, Span], theirs: dict[str, float], ours: dict[str, float]) -> None:
    """Every metric: align's reported value is the pessimistic one; CLIP_benchmark's equals it where no tie
    straddles k, and otherwise lies between it and the optimistic value."""
    assert set(spans) == set(ours), (sorted(spans), sorted(ours))
    for name, span in spans.items():
        assert ours[name] == span.align or abs(ours[name] - span.align) < 1e-12, name
        if span.straddling == 0:
            assert abs(theirs[name] - ours[name]) < 1e-6, (name, theirs[name], ours[name])
        else:
            assert span.align - 1e-6 <= theirs[name] <= span.optimistic + 1e-6, (name, theirs[name], span)
