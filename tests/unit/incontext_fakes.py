"""Stand-ins for a tokenizer and a causal LM that read in-context prompts back as text (not a test file)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

BOS = 1


class CharTokenizer:
    """One token per ASCII character (its code point), " X" for a capital letter one token (1000 + X), and
    ``<bos>`` (1) in front when special tokens are asked for: enough to write and read prompts back."""

    def __call__(self, text: str, add_special_tokens: bool = True, return_tensors: str | None = None) -> dict:
        ids = [BOS] if add_special_tokens else []
        for piece in re.findall(r" [A-Z]|.", text, flags=re.S):
            ids.append(1000 + ord(piece[1]) if len(piece) == 2 else min(ord(piece), 127))
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}

    def decode(self, ids: list[int]) -> str:
        return "".join(" " + chr(i - 1000) if i >= 1000 else chr(i) for i in ids if i != BOS)


class Out(dict):
    """A model output: ``logits`` and the ``past_key_values`` cache, as attributes and as keys."""

    def __init__(self, logits: torch.Tensor, past_key_values: Any) -> None:
        super().__init__(logits=logits, past_key_values=past_key_values)
        self.logits, self.past_key_values = logits, past_key_values


class CopyReader(nn.Module):
    """Reads the whole token sequence (its "cache" is the ids so far) and answers with the letter of the
    support item whose text equals the query's, else the first option: a reader that uses the binding."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.dummy = nn.Parameter(torch.zeros(1))
        self.passes = 0

    def forward(self, input_ids: torch.Tensor, past_key_values: list[int] | None = None, use_cache: bool = False,
                logits_to_keep: int = 0) -> Out:
        self.passes += 1
        seen = (past_key_values or []) + input_ids[0].tolist()
        text = self.tokenizer.decode(seen)
        pairs = re.findall(r"Input: < (.*?) >\nOutput: ([A-J])", text)
        asked = re.findall(r"Input: < (.*?) >\nOutput:$", text)
        letter = dict(pairs).get(asked[0], "A") if asked else "A"
        logits = torch.zeros(1, 1, 1100)
        logits[0, -1, 1000 + ord(letter)] = 1.0
        return Out(logits, seen)
