"""VLAP's captioning loss on each caption's own length: equal to the padded batch, on fewer positions."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from align.methods.vlap.aligner import VLAPCore, load_table, tokenize_captions
from align.methods.vlap.caption_loss import caption_nll, length_groups
from align.registry import EMBEDDING_TABLES
from align.text.toy import toy_gemma_table

GEMMA = "test:vlap-gemma"  # registered for this module only
CAPTIONS = ["a cat", "a small grey cat on a mat", "dog", "two red birds", "a very long caption about a horse "
            "standing in a green field under the sun", "fish", "the moon", "a car and a bus on the road"] * 3

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module", autouse=True)
def gemma_table() -> Iterator[None]:
    EMBEDDING_TABLES.add(GEMMA, toy_gemma_table, embed_dim=32, license="MIT", citation=None, weights=None,
                         description="tiny random Gemma-3 causal LM, for VLAP's caption-loss tests")
    yield
    EMBEDDING_TABLES._entries.pop(GEMMA)


def _cost(groups: list[list[int]], lengths: list[int], context: int, group_cost: int) -> int:
    return sum(len(g) * (context + max(lengths[i] for i in g)) + group_cost for g in groups)


@pytest.mark.parametrize("seed", range(20))
def test_length_groups_partition_the_rows_at_the_least_cost(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (int(torch.randint(1, 30, (), generator=g)),), generator=g).tolist()
    context, group_cost = 5, int(torch.randint(0, 40, (), generator=g))
    groups = length_groups(lengths, context, group_cost)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    distinct = sorted(set(lengths))
    brute = min(  # every way to cut the sorted distinct lengths into contiguous runs
        _cost([[i for i, n in enumerate(lengths) if lo <= n <= hi] for lo, hi in zip(
            [distinct[0], *(distinct[c] for c in cuts)], [*(distinct[c - 1] for c in cuts), distinct[-1]])],
            lengths, context, group_cost)
        for k in range(len(distinct)) for cuts in itertools.combinations(range(1, len(distinct)), k))
    assert _cost(groups, lengths, context, group_cost) == brute


def test_length_groups_extremes() -> None:
    lengths = [3, 1, 3, 2, 5, 1]
    assert length_groups(lengths, 4, group_cost=0) == [[1, 5], [3], [0, 2], [4]]
    assert length_groups(lengths, 4, group_cost=10_000) == [list(range(6))]


def _padded_loss(core: VLAPCore, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The padded computation: every row to the longest caption, full logits, plain cross-entropy."""
    lm = core.lm()
    context = core._context(lm, core.project(x))
    inputs = torch.cat([context, lm.get_input_embeddings()(ids)], dim=1)
    attention = torch.cat([mask.new_ones(context.shape[:2]), mask], dim=1)
    logits = lm(inputs_embeds=inputs, attention_mask=attention).logits[:, context.shape[1] - 1:-1]
    return F.cross_entropy(logits[mask.bool()], ids[mask.bool()])


def test_caption_loss_and_g_gradient_equal_the_padded_batch() -> None:
    ids, mask = tokenize_captions(load_table(GEMMA), CAPTIONS, 64)
    torch.manual_seed(0)
    x = torch.randn(len(CAPTIONS), 16)
    core = VLAPCore(16, GEMMA, num_prefix_tokens=2, w_map=0.0)
    core.calibrate(x)
    assert len(length_groups(mask.sum(1).tolist(), 1 + 2 + 3)) > 1  # the grouping is exercised
    expected = _padded_loss(core, x, ids, mask)
    expected.backward()
    reference = core.g.weight.grad.clone()
    core.zero_grad()
    got = core.caption_loss(core.project(x), ids, mask)
    got.backward()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float((core.g.weight.grad - reference).norm() / reference.norm()) < 1e-4


def test_padding_positions_never_reach_the_lm() -> None:
    ids, mask = tokenize_captions(load_table(GEMMA), CAPTIONS, 64)
    core = VLAPCore(16, GEMMA, num_prefix_tokens=2, w_map=0.0)
    lm = core.lm()
    context = core._context(lm, core.project(torch.randn(len(CAPTIONS), 16)))
    seen: list[int] = []
    hook = lm.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"].shape[:2].numel()), with_kwargs=True)
    try:
        caption_nll(lm, context, ids, mask)
    finally:
        hook.remove()
    padded = ids.shape[0] * (context.shape[1] + ids.shape[1])
    assert sum(seen) < padded
    assert sum(seen) >= int(mask.sum()) + ids.shape[0] * context.shape[1]
