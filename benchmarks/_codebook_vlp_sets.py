"""benchmarks/codebook_vlp_compare.py's datasets: each one's splits, what a model is scored on there
(:class:`Eval`), what the code NMI is measured against, and the report's paragraph, which reads only the
facts saved in the study's manifest (so ``--report`` loads no dataset)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from _codebook_vlp_scoring import Eval
from align.data.base import DatasetSplit

# each dataset's (fit, eval) splits; shapes' zero-shot and code usage read a lone shape on SINGLE_SHAPES instead.
# configs/bench/codebook_vlp_compare.yaml is held to these (tests/unit/test_bench_configs_match_studies.py)
SPLITS = {"emoji": ("anchors", "test"), "fashion_mnist": ("train@1000", "test@1000"),
          "shapes": ("train@1000", "test@500")}
SINGLE_SHAPES = ("shapes.single", "test@500")  # dataset and eval split


def describe(split: DatasetSplit) -> str:
    return f"{split.dataset}/{split.split}@{split.version}"



Splits = Mapping[str, DatasetSplit]  # role ("fit", "eval", and "zeroshot" where it has its own split) -> split
Facts = Mapping[str, Any]  # split_facts by role, and "captions": how the fit captions were made


def split_facts(split: DatasetSplit) -> dict[str, Any]:
    """What the report says of a split, saved in the manifest so that ``--report`` loads no dataset."""
    labels = ({"labels": split.labels} if split.labels is not None else {}) | dict(split.extra_labels)
    return {"split": split.split, "num_items": split.num_items,
            "captions": None if split.captions is None else sum(map(len, split.captions)),
            "classes": {name: len(found.class_names) for name, found in labels.items()}}


def _emoji_eval(s: Splits, tokens: Mapping[str, torch.Tensor]) -> Eval:
    return Eval(tokens["eval"], s["eval"].captions, {"subcat_acc1": s["eval"].extra_labels["subcategory"]},
                s["eval"].labels.labels)


def _emoji_paragraph(f: Facts) -> str:
    test, n_sub = f["eval"], f["eval"]["classes"]["subcategory"]
    return (f"**Emoji, concept-disjoint**: pretrained on {f['fit']['num_items']} anchor image-name pairs; scored "
            f"on {test['num_items']} unseen test emoji ({test['captions']} captions; chance R@1 "
            f"{1 / test['num_items']:.4f}; {n_sub} subcategory classes, chance acc1 {1 / n_sub:.3f}). ITM "
            f"re-ranking applies to retrieval only (`retrieval_scores`); zero-shot classification compares "
            f"ITC embeddings.")


def _fashion_eval(s: Splits, tokens: Mapping[str, torch.Tensor]) -> Eval:
    return Eval(tokens["eval"], None, {"acc1": s["eval"].labels}, s["eval"].labels.labels)


def _fashion_paragraph(f: Facts) -> str:
    return (f"**Fashion-MNIST**: pretrained on {f['fit']['split']} ({f['captions']}); zero-shot on "
            f"{f['eval']['split']} (10 classes, chance 0.100; no retrieval, so no re-ranking).")


def _shapes_eval(s: Splits, tokens: Mapping[str, torch.Tensor]) -> Eval:
    kinds = s["zeroshot"].extra_labels["shape"]
    return Eval(tokens["eval"], s["eval"].captions,
                {"colour_acc1": s["zeroshot"].extra_labels["colour"], "shape_acc1": kinds}, kinds.labels,
                zeroshot_tokens=tokens["zeroshot"], code_tokens=tokens["zeroshot"])


def _shapes_paragraph(f: Facts) -> str:
    test, single = f["eval"], f["zeroshot"]
    n_colour, n_kind = single["classes"]["colour"], single["classes"]["shape"]
    return (f"**Shapes** (procedural): pretrained on shapes {f['fit']['split']} ({f['captions']}); retrieval on "
            f"shapes {test['split']} (one to three shapes, {test['captions']} captions, chance R@1 "
            f"{1 / test['num_items']:.4f}); zero-shot colour ({n_colour} classes, chance {1 / n_colour:.3f}) and "
            f"shape kind ({n_kind} classes, chance {1 / n_kind:.3f}) of the lone shape of shapes.single "
            f"{single['split']}.")


@dataclasses.dataclass(frozen=True)
class StudySet:
    """One dataset of the study: its splits, what a model is scored on, and its report paragraph, which reads
    saved facts only (so the full run and ``--report`` write the same page)."""

    name: str  # registry name, key of SPLITS
    make_eval: Callable[[Splits, Mapping[str, torch.Tensor]], Eval]  # from the splits and their tokens
    paragraph: Callable[[Facts], str]
    what: str  # what the code NMI is measured against
    where: Callable[[Facts, int], str]  # the tokens the codes are counted on (facts, tokens per image)
    extra: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # role -> (dataset, split)
    captions_in_key: bool = True  # False: emoji's saved run keys predate recording how captions were made
    keep_grid: bool = False  # the code gallery's data (emoji)

    def roles(self) -> dict[str, tuple[str, str]]:
        return {"fit": (self.name, SPLITS[self.name][0]), "eval": (self.name, SPLITS[self.name][1]), **self.extra}

    def info(self, splits: Splits, how: str) -> dict[str, Any]:
        """The ``data`` of the runs' keys: each split's identity (and how the fit captions were made)."""
        return {role: describe(split) for role, split in splits.items()} | ({"captions": how}
                                                                           if self.captions_in_key else {})


STUDY_SETS = {s.name: s for s in (
    StudySet("emoji", _emoji_eval, _emoji_paragraph, "category",
             lambda f, t: f"the {f['eval']['num_items']} test emoji x {t} tokens", captions_in_key=False,
             keep_grid=True),
    StudySet("fashion_mnist", _fashion_eval, _fashion_paragraph, "class",
             lambda f, t: f"the {f['eval']['num_items']} test images"),
    StudySet("shapes", _shapes_eval, _shapes_paragraph, "shape kind",
             lambda f, t: f"the {f['zeroshot']['num_items']} single-shape images", extra={"zeroshot": SINGLE_SHAPES}),
)}
