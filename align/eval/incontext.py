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

:func:`incontext_accuracy` draws one query an episode and reads the whole prompt each time. A study
uses :func:`draw_episodes` and :func:`score_episodes` instead: several queries share an episode's
support set, whose prompt the LM reads once (its key-value cache is reused for every query), so 500
queries of 5-way 5-shot cost about 100 support passes rather than 500. Intervals then resample
episodes (support sets), not queries: queries of one support set are not independent. The
label-shuffled control (``shuffle_labels``) deals the support letters out at random, breaking the
letter-class binding while keeping each letter's count: a reader that uses the binding falls to chance.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
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


@dataclasses.dataclass(frozen=True)
class Episode:
    """One support set and its queries (rows of the evaluated items) with the letter each should get."""

    support: tuple[int, ...]  # in prompt order
    support_letters: tuple[str, ...]
    queries: tuple[int, ...]
    answers: tuple[str, ...]  # the letter of each query's class in this episode


def draw_episodes(labels: np.ndarray, n_way: int, k_shot: int, episodes: int, queries: int, seed: int,
                  shuffle_labels: bool = False, letters: Sequence[str] = LETTERS) -> list[Episode]:
    """``episodes`` seeded N-way K-shot episodes of ``queries`` queries each: N random classes get the
    first N ``letters`` in random order, K support rows each (shuffled), and each query is a row of a
    random one of the N classes outside the support (no row twice in an episode). The draws depend only
    on the labels and the arguments, so every model scored on the same items gets the same episodes
    (paired). ``shuffle_labels``: the same rows, with the support letters dealt out at random."""
    y = np.asarray(labels, dtype=np.int64)
    if not 2 <= n_way <= len(letters) or k_shot < 1 or episodes < 1 or queries < 1:
        raise BadInputError(f"in-context: need 2 <= n_way <= {len(letters)}, k_shot >= 1, episodes >= 1, queries >= 1")
    eligible = np.flatnonzero(np.bincount(y) >= k_shot + 1)
    if len(eligible) < n_way:
        raise BadInputError(f"in-context: only {len(eligible)} classes have {k_shot + 1} items; need {n_way}")
    rng = np.random.default_rng(seed)
    dealer = np.random.default_rng([seed, 1])  # its own stream: the control draws the same rows
    drawn = []
    for _ in range(episodes):
        classes = rng.choice(eligible, size=n_way, replace=False)
        support, support_letters, spare = [], [], {}
        for letter, c in zip(letters, classes):
            rows = rng.permutation(np.flatnonzero(y == c))
            support += rows[:k_shot].tolist()
            support_letters += [letter] * k_shot
            spare[letter] = rows[k_shot:].tolist()
        order = rng.permutation(len(support))
        support, support_letters = [support[i] for i in order], [support_letters[i] for i in order]
        if shuffle_labels:
            support_letters = [support_letters[i] for i in dealer.permutation(len(support_letters))]
        query_rows, answers = [], []
        for _ in range(queries):
            open_letters = [x for x in letters[:n_way] if spare[x]]
            if not open_letters:
                raise BadInputError(f"in-context: an episode's {n_way} classes have fewer than {queries} items "
                                    f"beside their {k_shot}-shot support; ask for fewer queries")
            letter = open_letters[int(rng.integers(len(open_letters)))]
            query_rows.append(spare[letter].pop())
            answers.append(letter)
        drawn.append(Episode(tuple(support), tuple(support_letters), tuple(query_rows), tuple(answers)))
    return drawn


def support_prompt(texts: Sequence[str], episode: Episode, letters: Sequence[str]) -> str:
    """The instruction and the support blocks, ending in a newline (the text every query follows)."""
    options = ", ".join(f"'{x}'" for x in letters)
    blocks = [f"For each of the following input output pairs, output is one of [{options}]."]
    blocks += [f"###\nInput: < {texts[r]} >\nOutput: {x}" for r, x in zip(episode.support, episode.support_letters)]
    return "\n".join(blocks) + "\n"


def query_prompt(text: str) -> str:
    return f"###\nInput: < {text} >\nOutput:"


@torch.no_grad()
def letter_scores(lm: Any, tokenizer: Any, texts: Sequence[str], episode: Episode, n_way: int,
                  letters: Sequence[str] = LETTERS) -> torch.Tensor:
    """``[queries, n_way]`` next-token scores of the episode's letters after each query. The support prompt
    is tokenized with the tokenizer's special tokens (``<bos>``) and each query without, the query's
    tokens following the support's (the prompt is the two token sequences concatenated): the support
    passes through the LM once and each query continues from a copy of its key-value cache."""
    ids = torch.tensor(letter_ids(tokenizer, list(letters[:n_way])))
    device = next(lm.parameters()).device
    support = tokenizer(support_prompt(texts, episode, letters[:n_way]), return_tensors="pt")["input_ids"]
    out = lm(input_ids=support.to(device), use_cache=True, logits_to_keep=1)
    name = _cache_argument(lm)
    cache = out[name] if name in out else out.past_key_values
    rows = []
    for row in episode.queries:
        query = tokenizer(query_prompt(texts[row]), add_special_tokens=False, return_tensors="pt")["input_ids"]
        logits = lm(input_ids=query.to(device), use_cache=True, logits_to_keep=1,
                    **{name: copy.deepcopy(cache)}).logits[0, -1]
        rows.append(logits[ids.to(logits.device)].float().cpu())
    return torch.stack(rows)


def _cache_argument(lm: Any) -> str:
    """What the LM's forward calls its key-value cache: ``cache`` in transformers 5.x, ``past_key_values``
    before (5.x still takes the old name, with a warning, until 5.40)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def score_episodes(lm: Any, tokenizer: Any, texts: Sequence[str], episodes: Sequence[Episode], n_way: int,
                   letters: Sequence[str] = LETTERS) -> np.ndarray:
    """``[episodes, queries]`` booleans: the right letter scored strictly above the other N - 1 after each
    query (:func:`letter_scores`; a tie is a miss). Every episode has the same number of queries
    (:func:`draw_episodes` gives them so)."""
    options = list(letters[:n_way])
    correct = []
    for episode in episodes:
        scores = letter_scores(lm, tokenizer, texts, episode, n_way, letters)
        right = label_positives(torch.tensor([options.index(a) for a in episode.answers]), n_way)
        correct.append((rank_of_best_positive(scores, right) == 0).numpy())
    return np.stack(correct)
