"""VLAP's captioning loss through the frozen causal LM, computed only where it is read.

``L_cap`` is the mean negative log-likelihood of each caption token given ``context`` (``<bos>``, the
visual prefix, the prompt) and the caption tokens before it. Two things a plain padded batch wastes:

- **padding**: captions are right-padded to the batch's longest one, and the body of the LM runs on
  every padded position although, causal attention being what it is, nothing real ever reads them
  (on emoji names a third of all positions). So the rows are grouped by caption length and each
  group runs padded only to its own longest caption; no attention mask is needed, since a row's real
  positions attend only to earlier positions, which are real too.
- **logits**: the 262k-word head is applied only at the positions that predict a caption token, and
  through :func:`~align.kernels.linear_cross_entropy.frozen_head_cross_entropy`, which never keeps the
  logit matrix.

The result equals the padded computation (up to float rounding: the matrix products see other
shapes): same positions, same attention, same tokens.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from align.kernels.linear_cross_entropy import frozen_head_cross_entropy

# What one more pass of the LM costs beyond its tokens, in tokens (Python and per-call overhead): more
# groups pad less but call the LM more often.
GROUP_COST_TOKENS = 32


def length_groups(lengths: list[int], context: int, group_cost: int = GROUP_COST_TOKENS) -> list[list[int]]:
    """Row numbers grouped by caption length, shortest first, so that the tokens the LM runs on
    (each group: rows x (``context`` + its longest length)) plus ``group_cost`` per group are fewest
    (exact: dynamic programming over the distinct lengths)."""
    distinct = sorted(set(lengths))
    counts = [sum(1 for n in lengths if n == d) for d in distinct]
    best = [0.0] + [float("inf")] * len(distinct)  # best[j]: cost of grouping the j shortest lengths
    cut = [0] * (len(distinct) + 1)
    for end in range(1, len(distinct) + 1):
        rows = 0
        for start in range(end, 0, -1):  # the last group holds distinct[start - 1 : end]
            rows += counts[start - 1]
            cost = best[start - 1] + rows * (context + distinct[end - 1]) + group_cost
            if cost < best[end]:
                best[end], cut[end] = cost, start - 1
    bounds, end = [], len(distinct)
    while end > 0:
        bounds.append((distinct[cut[end]], distinct[end - 1]))
        end = cut[end]
    return [[i for i, n in enumerate(lengths) if low <= n <= high] for low, high in reversed(bounds)]


def caption_nll(lm: nn.Module, context: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                autocast: contextlib.AbstractContextManager | None = None) -> torch.Tensor:
    """Mean NLL per caption token of ``ids [N, L]`` (right-padded, ``mask [N, L]``) after the input
    embeddings ``context [N, C, D]``, through the frozen causal ``lm``; the gradient reaches ``context``."""
    autocast = autocast or contextlib.nullcontext()
    lengths = mask.sum(1)
    embed, width = lm.get_input_embeddings(), context.shape[1]
    states, targets = [], []
    for rows in length_groups([int(n) for n in lengths], width):
        index = torch.tensor(rows, device=ids.device)
        longest = int(lengths[index].max())
        group_ids, group_mask = ids[index, :longest], mask[index, :longest].bool()
        inputs = torch.cat([context[index], embed(group_ids).to(context.dtype)], dim=1)
        with autocast:
            hidden = lm.base_model(inputs_embeds=inputs).last_hidden_state
        # position width - 1 + i predicts caption token i
        states.append(hidden[:, width - 1:width - 1 + longest][group_mask])
        targets.append(group_ids[group_mask])
    head = lm.get_output_embeddings()
    softcap = getattr(getattr(lm, "config", None), "final_logit_softcapping", None)
    with autocast:
        return frozen_head_cross_entropy(torch.cat(states), head.weight, torch.cat(targets),
                                         bias=getattr(head, "bias", None), softcap=softcap)
