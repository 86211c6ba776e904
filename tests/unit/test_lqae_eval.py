"""LQAE's evaluation pieces: token/class NMI, code usage, in-context episodes and their scoring."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from align.errors import BadInputError
from align.eval.incontext import draw_episode, episode_prompt, incontext_accuracy
from align.eval.token_stats import code_usage, histogram_cluster_nmi, token_nmi


def class_codes(n_per_class: int, classes: int, tokens: int, shared: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Codes drawn from each class's own 20-code range, or all from one common range."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    offsets = np.zeros_like(labels) if shared else labels * 20
    return rng.integers(0, 20, size=(len(labels), tokens)) + offsets[:, None], labels


def test_nmi_is_one_for_class_specific_codes_and_near_zero_for_shared_ones() -> None:
    codes, labels = class_codes(200, 5, 16, shared=False)
    assert token_nmi(codes, labels) == pytest.approx(1.0)
    assert histogram_cluster_nmi(codes, labels) == pytest.approx(1.0)
    codes, labels = class_codes(200, 5, 16, shared=True)
    assert token_nmi(codes, labels) < 0.01
    assert histogram_cluster_nmi(codes, labels) < 0.1


def test_code_usage_counts_distinct_codes_and_perplexity() -> None:
    assert code_usage(torch.tensor([[1, 1], [2, 2]])) == {"distinct": 2.0, "perplexity": pytest.approx(2.0)}
    assert code_usage(np.zeros((3, 4)))["perplexity"] == pytest.approx(1.0)
    with pytest.raises(BadInputError, match="codes"):
        token_nmi(np.zeros(4), np.zeros(4))


def test_episodes_have_distinct_classes_k_shots_and_a_held_out_query() -> None:
    labels = np.repeat(np.arange(6), 5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        classes, support, query, target = draw_episode(labels, 3, 2, rng)
        assert len(set(classes)) == 3 and len(support) == 6 and query not in support
        assert sorted(labels[support].tolist()) == sorted(np.repeat(classes, 2).tolist())
        assert labels[query] == classes[target]
    with pytest.raises(BadInputError, match="classes"):
        draw_episode(labels, 3, 5, rng)  # no class has 6 items


def test_prompt_format() -> None:
    prompt = episode_prompt([("red apple", "A"), ("blue car", "B")], "green pear", ["A", "B"])
    assert prompt == ("For each of the following input output pairs, output is one of ['A', 'B'].\n"
                      "###\nInput: < red apple >\nOutput: A\n###\nInput: < blue car >\nOutput: B\n"
                      "###\nInput: < green pear >\nOutput:")


class Encoding(dict):
    def to(self, device: Any) -> Encoding:
        return self


class FakeTokenizer:
    """Letters are tokens 100+i; a prompt is stored and stands for one token, its index."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, text: str, add_special_tokens: bool = True, return_tensors: str | None = None) -> Encoding:
        if return_tensors is None:
            return Encoding(input_ids=[100 + "ABCDEFGHIJ".index(text.strip())])
        self.prompts.append(text)
        return Encoding(input_ids=torch.tensor([[len(self.prompts) - 1]]))


class CopyLM(nn.Module):
    """Answers with the letter of the support item whose text equals the query's (a perfect reader),
    or always "A" when ``biased``."""

    def __init__(self, tokenizer: FakeTokenizer, biased: bool = False) -> None:
        super().__init__()
        self.tokenizer, self.biased = tokenizer, biased
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, logits_to_keep: int = 0) -> Any:
        prompt = self.tokenizer.prompts[int(input_ids[0, 0])]
        pairs = re.findall(r"Input: < (.*?) >\nOutput: ([A-J])", prompt)
        query = re.findall(r"Input: < (.*?) >\nOutput:$", prompt)[0]
        letter = "A" if self.biased else dict(pairs)[query]
        logits = torch.zeros(1, 1, 200)
        logits[0, -1, 100 + "ABCDEFGHIJ".index(letter)] = 1.0
        return type("Out", (), {"logits": logits})()


def test_a_perfect_reader_scores_one_and_a_letter_bias_scores_chance() -> None:
    labels = np.repeat(np.arange(5), 8)
    texts = [f"class {c} words" for c in labels]  # items of a class share their text
    tok = FakeTokenizer()
    result = incontext_accuracy(CopyLM(tok), tok, texts, labels, n_way=3, k_shot=2, episodes=40, seed=0)
    assert result["acc"] == 1.0 and result["chance"] == pytest.approx(1 / 3)
    biased = incontext_accuracy(CopyLM(tok, biased=True), tok, texts, labels, n_way=2, k_shot=1, episodes=400)
    assert 0.4 < biased["acc"] < 0.6  # letters are reassigned every episode
