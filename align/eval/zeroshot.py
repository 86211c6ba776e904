"""Zero-shot classification: class prompts embedded as texts, images scored by cosine against them.

Two template reducers, named in every result because they change the numbers (conventions §4.7):

- ``"mean"`` (CLIP's prompt ensemble): average each class's L2-normalised prompt embeddings,
  renormalise, and score an image by its cosine with that class embedding;
- ``"max"`` (ASIF's rule): score an image by its best cosine over the class's prompts, i.e.
  ``argmax over all prompts // n_templates``.

With one template the two are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.eval.metrics import classification_metrics

Reducer = Literal["mean", "max"]
REDUCERS: tuple[str, ...] = ("mean", "max")


def fill_template(template: str, class_name: str) -> str:
    """``template`` with its ``{c}`` (or bare ``{}``, ASIF/CLIP style) placeholder set to the class."""
    for placeholder in ("{c}", "{}"):
        if placeholder in template:
            return template.replace(placeholder, class_name)
    raise BadInputError(f"prompt template {template!r} has no '{{c}}' placeholder for the class name")


def class_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every (class, template) prompt, class-major: prompt ``c * T + t`` is class c in template t."""
    if not class_names or not templates:
        raise BadInputError("zero-shot needs at least one class name and one template")
    return [fill_template(t, c) for c in class_names for t in templates]


def zeroshot_logits(
    image_emb: torch.Tensor, prompt_emb: torch.Tensor, num_classes: int, reducer: Reducer = "mean"
) -> torch.Tensor:
    """``[n, C]`` cosine scores of ``image_emb [n, D]`` against ``prompt_emb [C*T, D]`` (class-major).

    Both inputs are L2-normalised here, so raw shared-space embeddings can be passed."""
    if reducer not in REDUCERS:
        raise BadInputError(f"unknown zero-shot reducer {reducer!r}; choose one of {', '.join(REDUCERS)}")
    if image_emb.ndim != 2 or prompt_emb.ndim != 2 or image_emb.shape[1] != prompt_emb.shape[1]:
        raise BadInputError(
            f"zero-shot: image embeddings {tuple(image_emb.shape)} and prompt embeddings "
            f"{tuple(prompt_emb.shape)} must be 2-D with the same width"
        )
    if num_classes < 1 or prompt_emb.shape[0] % num_classes:
        raise BadInputError(f"zero-shot: {prompt_emb.shape[0]} prompts do not split evenly into {num_classes} classes")
    n_templates = prompt_emb.shape[0] // num_classes
    images = F.normalize(image_emb.float(), dim=-1)
    prompts = F.normalize(prompt_emb.float(), dim=-1).view(num_classes, n_templates, -1)
    if reducer == "mean":
        classes = F.normalize(prompts.mean(dim=1), dim=-1)
        return images @ classes.T
    return torch.einsum("nd,ctd->nct", images, prompts).amax(dim=2)


def evaluate_zeroshot(
    image_emb: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    class_names: Sequence[str],
    templates: Sequence[str],
    embed_prompts: Callable[[list[str]], torch.Tensor],
    reducer: Reducer = "mean",
) -> dict[str, float]:
    """Classification metrics of zero-shot prediction; ``embed_prompts`` maps prompt strings to
    shared-space embeddings (text encoder then ``aligner.encode_text``)."""
    prompts = class_prompts(class_names, templates)
    logits = zeroshot_logits(image_emb, embed_prompts(prompts), len(class_names), reducer)
    return classification_metrics(logits, labels)
