"""N-way K-shot in-context classification of items written as text, by a frozen causal LM.

The Frozen / LQAE protocol in miniature: each episode draws N classes, K support items per class and
one query; each class gets a letter label (A, B, ...) at random, so the LM can only answer by binding
the letters to the support items' strings (Frozen's open-ended setting, with letters as the nonsense
names). The prompt follows the template of the V2L-Tokenizer reproduction of LQAE's evaluation
(papers.md §4.5; LQAE's own Colab prompt is not public):

    For each of the following input output pairs, output is one of ['A', 'B'].
    ###
    Input: < dog ##s fur brown ... >
    Output: A
    ...
    ###
    Input: < query tokens >
    Output:

The answer is read from the next-token scores of the N letters (rank classification rather than free
generation: a 270M LM often answers outside the label set, which says nothing about the tokens).
Chance is 1/N; a letter bias averages out because letters are reassigned every episode. A wrong
letter tied with the right one is a miss (the tie rule of every task, :mod:`align.eval.ties`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from align.errors import BadInputError
from align.eval.ties import label_positives, rank_of_best_positive

LETTERS = "ABCDEFGHIJ"


def episode_prompt(support: Sequence[tuple[str, str]], query: str, letters: Sequence[str]) -> str:
    """The prompt text for ``(item text, letter)`` support pairs and a query."""
    options = ", ".join(f"'{x}'" for x in letters)
    blocks = [f"For each of the following input output pairs, output is one of [{options}]."]
    blocks += [f"###\nInput: < {text} >\nOutput: {letter}" for text, letter in support]
    blocks.append(f"###\nInput: < {query} >\nOutput:")
    return "\n".join(blocks)


def draw_episode(labels: np.ndarray, n_way: int, k_shot: int, rng: np.random.Generator) -> tuple[list[int], list[int], int, int]:
    """``(classes, support rows (class-major), query row, query class index)`` for one episode."""
    counts = np.bincount(labels)
    eligible = np.flatnonzero(counts >= k_shot + 1)
    if len(eligible) < n_way:
        raise BadInputError(f"in-context: only {len(eligible)} classes have {k_shot + 1} items; need {n_way}")
    classes = rng.choice(eligible, size=n_way, replace=False).tolist()
    target = int(rng.integers(n_way))
    support, query = [], -1
    for i, c in enumerate(classes):
        rows = rng.choice(np.flatnonzero(labels == c), size=k_shot + (i == target), replace=False).tolist()
        if i == target:
            query = rows.pop()
        support += rows
    return classes, support, query, target


def letter_ids(tokenizer: Any, letters: Sequence[str]) -> list[int]:
    """Token id of " X" (the token after "Output:") for each letter; they must differ."""
    ids = [tokenizer(" " + x, add_special_tokens=False)["input_ids"][0] for x in letters]
    if len(set(ids)) != len(ids):
        raise BadInputError(f"in-context: the letters {list(letters)} do not start with distinct tokens")
    return ids


@torch.no_grad()
def incontext_accuracy(lm: Any, tokenizer: Any, texts: Sequence[str], labels: Any, *, n_way: int = 2,
                       k_shot: int = 1, episodes: int = 50, seed: int = 0) -> dict[str, float]:
    """Accuracy of the LM over ``episodes`` seeded N-way K-shot episodes drawn from ``texts``/``labels``."""
    y = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(y):
        raise BadInputError(f"in-context: {len(texts)} texts but {len(y)} labels")
    if not 2 <= n_way <= len(LETTERS) or k_shot < 1 or episodes < 1:
        raise BadInputError(f"in-context: need 2 <= n_way <= {len(LETTERS)}, k_shot >= 1, episodes >= 1")
    rng = np.random.default_rng(seed)
    letters = list(LETTERS[:n_way])
    ids = torch.tensor(letter_ids(tokenizer, letters))
    device = next(lm.parameters()).device
    correct, lengths = 0, []
    for _ in range(episodes):
        classes, support, query, target = draw_episode(y, n_way, k_shot, rng)
        letter_of = {c: letters[i] for i, c in enumerate(classes)}
        pairs = [(texts[r], letter_of[int(y[r])]) for r in support]
        order = rng.permutation(len(pairs))
        prompt = episode_prompt([pairs[i] for i in order], texts[query], letters)
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        lengths.append(int(inputs["input_ids"].shape[1]))
        logits = lm(**inputs, logits_to_keep=1).logits[0, -1]
        letter_scores = logits[ids.to(logits.device)].float().cpu()[None]
        target_column = label_positives(torch.tensor([target]), n_way)
        correct += int(rank_of_best_positive(letter_scores, target_column)) == 0  # a tie is a miss
    return {"acc": correct / episodes, "chance": 1 / n_way, "episodes": float(episodes),
            "prompt_tokens": float(np.mean(lengths))}
