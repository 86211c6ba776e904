"""bfloat16 search with exact float32 re-scoring: the same top-k sets and nearest codes as float32,
exact float32 values, and near ties (closer than bf16 can resolve) decided by the re-scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.kernels.anchor_chunks import write_shards
from align.kernels.quantizer import FrozenCodebookQuantizer, LearnedCodebookQuantizer, nearest_codes
from align.kernels.topk import exact_topk, recall_at_k, streamed_topk


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_topk_sets_and_values_match_float32_on_random_data() -> None:
    queries, anchors = unit(200, 64, 0), unit(3000, 64, 1)
    exact = exact_topk(queries, anchors, 10, chunk_rows=700)
    low = exact_topk(queries, anchors, 10, chunk_rows=700, search_precision="bfloat16")
    assert recall_at_k(low.indices, exact.indices) == 1.0
    assert torch.equal(low.indices[:, 0], exact.indices[:, 0])
    assert torch.allclose(low.values, exact.values, atol=1e-5)  # exact float32 scores, not bf16 ones


def test_prefix_snapshots_and_shard_sources_work_in_bfloat16(tmp_path: Path) -> None:
    queries, anchors = unit(50, 32, 2), unit(900, 32, 3)
    folder = write_shards(tmp_path / "anchors", anchors.split(250))
    exact = streamed_topk(queries, anchors, 5, prefixes=[300, 900], chunk_rows=128)
    low = streamed_topk(queries, folder, 5, prefixes=[300, 900], chunk_rows=128, search_precision="bfloat16")
    for n in (300, 900):
        assert recall_at_k(low[n].indices, exact[n].indices) == 1.0


def planted(dim: int = 16) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """A query whose four best anchors score 0.9, 0.8999, 0.8998, 0.8997: gaps far below bf16's
    resolution (about 0.002 there), so bf16 scores alone order them at random."""
    query = unit(1, dim, 7)
    scores = [0.9 - 1e-4 * i for i in range(4)]
    side = unit(4, dim, 8)
    side = F.normalize(side - (side @ query[0])[:, None] * query, dim=1)  # orthogonal to the query
    near = torch.stack([s * query[0] + (1 - s * s) ** 0.5 * e for s, e in zip(scores, side)])
    rest = unit(300, dim, 4) * 0.5
    anchors = torch.cat([rest[:100], near.flip(0), rest[100:]])  # planted rows 100..103, best last
    order = (anchors @ query[0]).argsort(descending=True)[:3].tolist()
    return query, anchors, order


def test_planted_near_ties_are_decided_by_float32() -> None:
    query, anchors, order = planted()
    assert order == [103, 102, 101]
    bf16_scores = (query.bfloat16() @ anchors[100:104].bfloat16().T)[0]
    assert len(set(bf16_scores.tolist())) == 1  # bf16 alone cannot tell the four apart
    low = exact_topk(query, anchors, 3, search_precision="bfloat16", overfetch=8)
    assert low.indices[0].tolist() == order
    assert nearest_codes(query, anchors, chunk=64, search_precision="bfloat16").tolist() == [103]


def test_nearest_codes_match_float32_and_keep_the_first_index_on_ties() -> None:
    queries, codebook = unit(300, 32, 5), unit(2000, 32, 6)
    codebook = torch.cat([codebook, codebook[:10]])  # exact duplicates: the earlier row must win
    exact = nearest_codes(queries, codebook, chunk=256)
    low = nearest_codes(queries, codebook, chunk=256, search_precision="bfloat16")
    assert torch.equal(low, exact)
    assert int(low.max()) < 2000


@pytest.mark.parametrize("cls", ["frozen", "learned"])
def test_quantizers_take_a_search_precision(cls: str) -> None:
    torch.manual_seed(0)
    table = torch.randn(500, 16)
    z = torch.randn(4, 7, 16)
    if cls == "frozen":
        fp32, bf16 = (FrozenCodebookQuantizer(table, search_precision=p) for p in ("float32", "bfloat16"))
    else:
        fp32 = LearnedCodebookQuantizer(500, 16, l2_normalize=False)
        bf16 = LearnedCodebookQuantizer(500, 16, l2_normalize=False, search_precision="bfloat16")
        bf16.load_state_dict(fp32.state_dict())
    assert torch.equal(fp32(z).codes, bf16(z).codes)


@pytest.mark.parametrize("call", [
    lambda: exact_topk(unit(2, 4, 0), unit(5, 4, 1), 2, search_precision="bf16"),
    lambda: exact_topk(unit(2, 4, 0), unit(5, 4, 1), 2, search_precision="bfloat16", backend="faiss"),
    lambda: exact_topk(unit(2, 4, 0), unit(5, 4, 1), 2, search_precision="bfloat16", overfetch=-1),
    lambda: nearest_codes(unit(2, 4, 0), unit(5, 4, 1), search_precision="half"),
])
def test_bad_options_are_one_line_errors(call: object) -> None:
    with pytest.raises(BadInputError) as err:
        call()  # type: ignore[operator]
    assert "\n" not in str(err.value)
