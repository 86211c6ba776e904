"""ASIF: relative representations against a numpy reference, invariances, the chunked top-k search
(torch, faiss, approximate, from shards), sweeps, planted retrieval and explanations."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import ortho_group

from align.errors import BadInputError
from align.eval.retrieval import evaluate_retrieval
from align.kernels.anchor_chunks import iter_chunks, write_shards
from align.methods.asif.aligner import ASIFAligner, relative_represent, scores, sweep, sweep_scores
from align.methods.base import load_aligner
from align.methods.asif.explain import explain, explain_pair
from align.kernels.topk import (
    RunningTopK, approx_topk, build_approx_index, exact_topk, recall_at_k, streamed_topk,
)
from align.registry import ALIGNERS


def gaussian(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def rotation(dim: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(ortho_group.rvs(dim, random_state=seed)).float()


def quiet_fit(aligner: ASIFAligner, x: torch.Tensor, y: torch.Tensor) -> ASIFAligner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return aligner.fit(x, y)


def numpy_asif(queries: np.ndarray, anchors: np.ndarray, k: int, p: float, clamp: bool) -> np.ndarray:
    """papers.md §2.2 written directly: cosine to anchors, top-k, (clamp), power, L2-normalise."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    a = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ a.T.astype(np.float64)
    keep = np.argsort(-sims, axis=1)[:, :k]
    vals = np.take_along_axis(sims, keep, axis=1)
    if clamp:
        vals = np.maximum(vals, 0)
    vals = vals**p
    dense = np.zeros_like(sims)
    np.put_along_axis(dense, keep, vals, axis=1)
    norm = np.linalg.norm(dense, axis=1, keepdims=True)
    return np.divide(dense, norm, out=np.zeros_like(dense), where=norm > 0)


# ---------------------------------------------------------------- representation


def test_registered_with_metadata() -> None:
    meta = ALIGNERS.meta("asif")
    assert "Norelli" in meta.citation and meta.description
    assert isinstance(ALIGNERS.create("asif"), ASIFAligner)


@pytest.mark.parametrize("p", [1, 8])
@pytest.mark.parametrize("clamp", [True, False])
def test_relative_representation_matches_numpy_reference(p: int, clamp: bool) -> None:
    # 8-d features and k = 40 of 60 anchors: many kept similarities are negative
    anchors_i, anchors_t, queries = gaussian(60, 8, 0), gaussian(60, 6, 1), gaussian(25, 8, 2)
    aligner = ASIFAligner(k=40, p=p, clamp_negative=clamp).fit(anchors_i, anchors_t)
    expected = numpy_asif(queries.numpy(), anchors_i.numpy(), 40, p, clamp)
    assert np.allclose(aligner.encode_image(queries).numpy(), expected, atol=1e-5)
    texts = gaussian(7, 6, 3)
    assert np.allclose(aligner.encode_text(texts).numpy(), numpy_asif(texts.numpy(), anchors_t.numpy(), 40, p, clamp),
                       atol=1e-5)


def test_sparse_scores_equal_dense_product() -> None:
    aligner = ASIFAligner(k=10, p=4).fit(gaussian(80, 5, 4), gaussian(80, 7, 5))
    images, texts = gaussian(30, 5, 6), gaussian(20, 7, 7)
    dense = aligner.encode_image(images) @ aligner.encode_text(texts).T
    assert torch.allclose(aligner.similarity(images, texts), dense, atol=1e-6)
    rep = aligner.represent_image(images)
    assert rep.values.shape == rep.indices.shape == (30, 10) and rep.num_anchors == 80


def test_all_clamped_row_is_zero_with_zero_cosines() -> None:
    anchors = gaussian(50, 6, 8).abs()  # positive orthant
    query = -gaussian(1, 6, 9).abs()  # every similarity < 0
    aligner = ASIFAligner(k=5, p=8).fit(anchors, anchors)
    assert torch.equal(aligner.encode_image(query), torch.zeros(1, 50))
    assert torch.equal(aligner.similarity(query, anchors[:4]), torch.zeros(1, 4))
    unclamped = ASIFAligner(k=5, p=8, clamp_negative=False).fit(anchors, anchors).encode_image(query)
    assert torch.isfinite(unclamped).all() and unclamped.norm() == pytest.approx(1.0)


def test_tiny_similarities_do_not_underflow() -> None:
    anchors = torch.eye(4)
    query = torch.tensor([[1.0, 1e-6, 0.0, 0.0]])  # cosines 1 and 1e-6: 1e-6 ** 8 underflows float32
    aligner = ASIFAligner(k=2, p=8).fit(anchors, anchors)
    assert torch.allclose(aligner.encode_image(query), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    small = torch.tensor([[1e-5, 0.0, 0.0, 0.0]])  # a tiny query norm is normalised away
    assert aligner.encode_image(small)[0, 0] == pytest.approx(1.0)


def test_scores_invariant_to_rotation_and_scaling() -> None:
    ai, at, qi, qt = gaussian(200, 12, 10), gaussian(200, 9, 11), gaussian(40, 12, 12), gaussian(30, 9, 13)
    base = ASIFAligner(k=20, p=8).fit(ai, at).similarity(qi, qt)
    ri, rt = rotation(12, 14), rotation(9, 15)
    rotated = ASIFAligner(k=20, p=8).fit(ai @ ri, at @ rt).similarity(qi @ ri, qt @ rt)
    scaled = ASIFAligner(k=20, p=8).fit(3.5 * ai, 0.2 * at).similarity(7.0 * qi, qt)
    assert torch.allclose(base, rotated, atol=1e-5)
    assert torch.allclose(base, scaled, atol=1e-5)


# ---------------------------------------------------------------- chunked top-k


@pytest.mark.parametrize("chunk_rows", [7, 64, 333, 500])
@pytest.mark.parametrize("memory_mb", [0.002, 256])
def test_chunked_topk_equals_full_topk(chunk_rows: int, memory_mb: float) -> None:
    queries, anchors = F.normalize(gaussian(40, 16, 16), dim=1), F.normalize(gaussian(500, 16, 17), dim=1)
    full = (queries @ anchors.T).topk(30, dim=1)
    found = exact_topk(queries, anchors, 30, chunk_rows=chunk_rows, memory_mb=memory_mb)
    assert torch.allclose(found.values, full.values, atol=1e-6)
    assert torch.equal(found.indices, full.indices)


def test_chunked_topk_all_negative_similarities_has_no_phantom_anchor() -> None:
    anchors = F.normalize(gaussian(300, 8, 18).abs() + 0.1, dim=1)
    anchors[0] = F.normalize(torch.ones(8), dim=0)  # anchor 0 is the worst match of every query
    queries = -F.normalize(1.0 + 0.05 * gaussian(20, 8, 19).abs(), dim=1)
    sims = queries @ anchors.T
    assert (sims < 0).all() and (sims.argmin(dim=1) == 0).all()
    for chunk_rows in (11, 64, 300):
        found = exact_topk(queries, anchors, 25, chunk_rows=chunk_rows)
        full = sims.topk(25, dim=1)
        assert torch.equal(found.indices, full.indices) and torch.allclose(found.values, full.values)
        assert (found.indices > 0).all() and (found.values < 0).all()


def test_topk_when_filter_keeps_everything() -> None:
    # anchors sorted by rising similarity to the query: every chunk beats the running top-k
    query = F.normalize(gaussian(1, 8, 20), dim=1)
    anchors = F.normalize(gaussian(2000, 8, 21), dim=1)
    anchors = anchors[(anchors @ query.T)[:, 0].argsort()]
    found = exact_topk(query, anchors, 5, chunk_rows=100)
    assert torch.equal(found.indices, torch.arange(1999, 1994, -1)[None])


def test_running_topk_pools_survivors_before_merging() -> None:
    running = RunningTopK(3, 4)
    blocks = [gaussian(3, 50, s) for s in range(22, 30)]
    for i, block in enumerate(blocks):
        running.update(slice(0, 3), block, 50 * i)
    full = torch.cat(blocks, dim=1).topk(4, dim=1)
    result = running.result()
    assert torch.equal(result.indices, full.indices) and torch.equal(result.values, full.values)


def test_topk_streams_from_feature_cache_shards(tmp_path: Path) -> None:
    anchors, queries = gaussian(230, 6, 30), F.normalize(gaussian(15, 6, 31), dim=1)
    folder = write_shards(tmp_path / "anchors", anchors.split(37))  # shards of 37, chunks of 50: straddling
    chunks = list(iter_chunks(folder, 50))
    assert [c.shape[0] for c in chunks] == [50, 50, 50, 50, 30] and torch.equal(torch.cat(chunks), anchors)
    assert torch.equal(torch.cat(list(iter_chunks(folder, 50, limit=120))), anchors[:120])
    from_disk = exact_topk(queries, folder, 12, chunk_rows=50, normalize=True)
    in_memory = exact_topk(queries, F.normalize(anchors, dim=1), 12)
    assert torch.equal(from_disk.indices, in_memory.indices)
    rel = relative_represent(queries, folder, k=12, p=8, chunk_rows=50)
    aligner = ASIFAligner(k=12, p=8).fit(anchors, anchors)
    assert torch.allclose(rel.to_dense(), aligner.encode_image(queries), atol=1e-6)


def test_faiss_flat_and_torch_agree_and_approximate_recall_is_sane() -> None:
    centres = gaussian(20, 32, 32) * 3
    anchors = F.normalize(centres.repeat(100, 1) + gaussian(2000, 32, 33), dim=1)  # clustered, like real features
    queries = F.normalize(centres.repeat(10, 1) + gaussian(200, 32, 34), dim=1)
    torch_top = exact_topk(queries, anchors, 10, chunk_rows=300)
    faiss_top = exact_topk(queries, anchors, 10, chunk_rows=300, backend="faiss")
    assert torch.equal(torch_top.indices[:, 0], faiss_top.indices[:, 0])
    assert torch.allclose(torch_top.values, faiss_top.values, atol=1e-5)
    texts = gaussian(2000, 16, 35)
    torch_asif = ASIFAligner(k=50, p=8).fit(anchors, texts)
    faiss_asif = ASIFAligner(k=50, p=8, search="faiss", chunk_size=300).fit(anchors, texts)
    probe = gaussian(30, 16, 36)
    assert torch.equal(torch_asif.similarity(queries, probe).argmax(1), faiss_asif.similarity(queries, probe).argmax(1))
    for backend, options in (("faiss-ivf", {"nlist": 20, "nprobe": 4}), ("faiss-hnsw", {"hnsw_m": 16})):
        index = build_approx_index(anchors, backend, **options)
        recall = recall_at_k(approx_topk(queries, index, 10).indices, torch_top.indices)
        assert 0.6 <= recall <= 1.0, (backend, recall)
    approx = ASIFAligner(k=10, p=8, search="faiss-hnsw").fit(anchors, texts)
    assert approx.encode_image(queries).shape == (200, 2000)


def test_recall_at_k_counts_set_overlap() -> None:
    exact = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert recall_at_k(torch.tensor([[3, 2, 1], [4, 9, -1]]), exact) == pytest.approx(4 / 6)


# ---------------------------------------------------------------- sweeps


def test_sweep_equals_separate_runs() -> None:
    ai, at = gaussian(150, 10, 40), gaussian(150, 8, 41)
    qi, qt = gaussian(12, 10, 42), gaussian(9, 8, 43)
    counts, ks, ps = (40, 100, 150), (5, 60, None), (1, 8)
    images = sweep(qi, ai, counts, ks, ps, chunk_rows=33)
    texts = sweep(qt, at, counts, ks, ps, chunk_rows=33)
    seen = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k=60 > 40 anchors: clipped, as the sweep does
        for (n, k, p), swept in sweep_scores(images, texts):
            separate = ASIFAligner(k=k, p=p).fit(ai[:n], at[:n])
            assert torch.allclose(images.relative(n, k, p).to_dense(), separate.encode_image(qi), atol=1e-6)
            assert torch.allclose(swept, separate.similarity(qi, qt), atol=1e-6)
            seen += 1
    assert seen == 18
    streamed = streamed_topk(F.normalize(qi, dim=1), F.normalize(ai, dim=1), 7, prefixes=(10, 150, 999))
    assert sorted(streamed) == [10, 150]


# ---------------------------------------------------------------- hyper-parameters, save/load


def test_k_above_anchor_count_warns_and_clips() -> None:
    with pytest.warns(UserWarning, match="k=50 exceeds the 20 anchors"):
        aligner = ASIFAligner(k=50).fit(gaussian(20, 4, 50), gaussian(20, 3, 51))
    assert aligner.k_ == 20
    assert aligner.represent_image(gaussian(3, 4, 52)).values.shape == (3, 20)


@pytest.mark.parametrize("hparams, message", [
    ({"k": 0}, "k must be"), ({"k": -3}, "k must be"), ({"k": 2.5}, "k must be"), ({"k": True}, "k must be"),
    ({"p": 0}, "p must be"), ({"p": -1.0}, "p must be"), ({"p": float("nan")}, "p must be"),
    ({"p": 1.5, "clamp_negative": False}, "integer"), ({"search": "annoy"}, "search must be one of torch"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_bad_hyper_parameters_are_one_line_errors(hparams: dict, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as err:
        ASIFAligner(**hparams)
    assert "\n" not in str(err.value) and "asif" in str(err.value)


def test_bad_inputs_are_one_line_errors() -> None:
    aligner = quiet_fit(ASIFAligner(k=3), gaussian(10, 4, 53), gaussian(10, 3, 54))
    with pytest.raises(BadInputError, match="asif.encode_image.*dimension 5"):
        aligner.encode_image(gaussian(2, 5, 55))
    with pytest.raises(BadInputError, match="asif.fit.*10 image rows but 9"):
        ASIFAligner().fit(gaussian(10, 4, 53), gaussian(9, 3, 54))
    with pytest.raises(RuntimeError, match="not fitted"):
        ASIFAligner().encode_text(gaussian(2, 3, 56))


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    aligner = ASIFAligner(k=7, p=4, clamp_negative=False).fit(gaussian(30, 6, 57), gaussian(30, 5, 58))
    aligner.save(tmp_path / "asif")
    probe_x, probe_y = gaussian(9, 6, 59), gaussian(9, 5, 60)
    for loaded in (ASIFAligner.load(tmp_path / "asif"), load_aligner(tmp_path / "asif")):
        assert isinstance(loaded, ASIFAligner) and loaded.hparams == aligner.hparams
        assert torch.equal(loaded.encode_image(probe_x), aligner.encode_image(probe_x))
        assert torch.equal(loaded.encode_text(probe_y), aligner.encode_text(probe_y))


# ---------------------------------------------------------------- planted data


def _recall_at_1(aligner: ASIFAligner, images: torch.Tensor, texts: torch.Tensor) -> float:
    metrics = evaluate_retrieval(aligner.encode_image(images), aligner.encode_text(texts),
                                 torch.arange(len(images)), ks=(1,))
    return metrics["image_retrieval_recall@1"]


def test_planted_rotation_retrieval_well_above_chance() -> None:
    rot = rotation(16, 61)
    latent, queries = gaussian(1000, 16, 62), gaussian(200, 16, 63)
    images, texts = latent + 2.0, latent @ rot + 0.3 * gaussian(1000, 16, 64) - 1.0  # unknown rotation, offsets, noise
    aligner = ASIFAligner(k=50, p=8).fit(images, texts)
    r1 = _recall_at_1(aligner, queries + 2.0, queries @ rot + 0.3 * gaussian(200, 16, 65) - 1.0)
    assert r1 > 0.5  # chance is 1/200 (measured: 0.9)


def test_sparsification_beats_dense_when_modalities_agree_only_locally() -> None:
    """Clusters whose centres are unrelated across modalities (only neighbourhoods are shared): the
    similarities to far anchors are noise that dense p=1 keeps and top-k + power discards."""
    dim, clusters, rot = 32, 20, rotation(32, 66)
    centres_i, centres_t = gaussian(clusters, dim, 67), gaussian(clusters, dim, 68)

    def sample(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, clusters, (n,), generator=torch.Generator().manual_seed(seed))
        local = 0.4 * gaussian(n, dim, seed + 1)
        return centres_i[labels] + local, centres_t[labels] + local @ rot + 0.05 * gaussian(n, dim, seed + 2)

    (ai, at), (qi, qt) = sample(1000, 69), sample(200, 72)
    dense = _recall_at_1(ASIFAligner(k=None, p=1).fit(ai, at), qi, qt)
    sparse = _recall_at_1(ASIFAligner(k=50, p=8).fit(ai, at), qi, qt)
    assert sparse > 0.9 and sparse > dense + 0.3  # measured: 1.0 vs 0.14


# ---------------------------------------------------------------- explanations


def test_explanation_names_the_obvious_anchor() -> None:
    ai, at = gaussian(100, 12, 75), gaussian(100, 10, 76)
    aligner = ASIFAligner(k=10, p=8).fit(ai, at)
    image, text = ai[42] + 0.01 * gaussian(1, 12, 77)[0], at[42] + 0.01 * gaussian(1, 10, 78)[0]
    ids, captions = [f"img-{i}" for i in range(100)], [f"caption {i}" for i in range(100)]
    found = explain(aligner, image, text, top=3, anchor_ids=ids, anchor_captions=captions)
    first = found.contributions[0]
    assert (first.anchor, first.anchor_id, first.caption) == (42, "img-42", "caption 42")
    assert first.share > 0.9 and len(found.contributions) <= 3
    assert found.score == pytest.approx(float(aligner.similarity(image[None], text[None])), abs=1e-6)
    contributions = [c.contribution for c in found.contributions]
    assert contributions == sorted(contributions, reverse=True)


def test_explanation_of_a_batch_row_and_bad_lengths() -> None:
    aligner = ASIFAligner(k=5, p=8).fit(gaussian(40, 6, 79), gaussian(40, 4, 80))
    images, texts = aligner.represent_image(gaussian(4, 6, 81)), aligner.represent_text(gaussian(3, 4, 82))
    found = explain_pair(images, texts, top=40, image_row=2, text_row=1)
    assert found.score == pytest.approx(float(scores(images, texts)[2, 1]), abs=1e-6)
    assert sum(c.contribution for c in found.contributions) == pytest.approx(found.score, abs=1e-6)
    with pytest.raises(BadInputError, match="anchor_ids"):
        explain_pair(images, texts, anchor_ids=["a"])
    with pytest.raises(BadInputError, match="image_row"):
        explain_pair(images, texts, image_row=4)


def test_torch_bf16_search_gives_the_float32_representations() -> None:
    """``search: torch-bf16`` re-scores bf16 proposals in float32: same anchors, same values."""
    anchors, texts = F.normalize(gaussian(1500, 32, 40), dim=1), gaussian(1500, 16, 41)
    queries = gaussian(60, 32, 42)
    fp32 = ASIFAligner(k=20, p=8).fit(anchors, texts)
    bf16 = ASIFAligner(k=20, p=8, search="torch-bf16", chunk_size=400).fit(anchors, texts)
    a, b = fp32.represent_image(queries), bf16.represent_image(queries)
    assert torch.equal(a.indices.sort(1).values, b.indices.sort(1).values)
    assert torch.allclose(a.to_dense(), b.to_dense(), atol=1e-5)
