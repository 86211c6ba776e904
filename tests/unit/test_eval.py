"""Evaluation metrics and tasks, checked against direct numpy computations and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from align.errors import BadInputError
from align.eval import linear_probe as lp
from align.eval.fewshot import fewshot, fewshot_over_seeds, nearest_mean_logits, sample_support
from align.eval.items import ClassificationItems
from align.eval.metrics import aggregate_seeds, classification_metrics, retrieval_metrics
from align.eval.retrieval import evaluate_retrieval, flatten_captions
from align.eval.ties import label_positives, rank_of_best_positive, ranked_predictions
from align.eval.zeroshot import class_prompts, evaluate_zeroshot, zeroshot_logits

# ---------------------------------------------------------------- numpy references


def numpy_retrieval(sim: np.ndarray, text_image: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """CLIP_benchmark's recall, written out with argsort (no ties in the inputs used here)."""
    n_images, n_texts = sim.shape
    out = {}
    for k in ks:
        top_images = np.argsort(-sim.T, axis=1)[:, :k]  # per text
        out[f"image_retrieval_recall@{k}"] = np.mean([text_image[t] in top_images[t] for t in range(n_texts)])
        top_texts = np.argsort(-sim, axis=1)[:, :k]  # per image
        queried = [i for i in range(n_images) if (text_image == i).any()]
        out[f"text_retrieval_recall@{k}"] = np.mean([(text_image[top_texts[i]] == i).any() for i in queried])
    return out


def clip_benchmark_recall(scores: torch.Tensor, positive: torch.Tensor, k: int) -> torch.Tensor:
    """CLIP_benchmark ``recall_at_k`` verbatim in spirit: topk + one-hot, per query."""
    topk = torch.topk(scores, k, dim=1).indices
    onehot = torch.nn.functional.one_hot(topk, num_classes=scores.shape[1])
    true_pos = (onehot * positive[:, None, :]).sum(dim=(1, 2))
    return true_pos / positive.sum(dim=1)


def numpy_classification(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    order = np.argsort(-logits, axis=1)
    out = {"acc1": np.mean(order[:, 0] == labels)}
    if logits.shape[1] >= 5:
        out["acc5"] = np.mean([labels[i] in order[i, :5] for i in range(len(labels))])
    pred = order[:, 0]
    out["mean_per_class_recall"] = np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)])
    return out


# ---------------------------------------------------------------- retrieval metrics


def test_retrieval_matches_numpy_with_uneven_captions() -> None:
    gen = torch.Generator().manual_seed(0)
    counts = [1, 3, 2, 5, 1, 4, 2]
    text_image = np.repeat(np.arange(len(counts)), counts)
    perm = torch.randperm(len(text_image), generator=gen).numpy()  # texts in no particular order
    text_image = text_image[perm]
    sim = torch.randn(len(counts), len(text_image), generator=gen)
    ks = (1, 2, 3, 5, 10)
    got = retrieval_metrics(sim, torch.from_numpy(text_image), ks)
    want = numpy_retrieval(sim.numpy(), text_image, ks)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name


def test_retrieval_matches_clip_benchmark_topk_implementation() -> None:
    gen = torch.Generator().manual_seed(1)
    text_image = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 5, 5, 5])
    sim = torch.randn(6, len(text_image), generator=gen)
    positive = torch.nn.functional.one_hot(text_image, 6).float()  # [n_texts, n_images]
    got = retrieval_metrics(sim, text_image, ks=(1, 3))
    for k in (1, 3):
        text_to_image = (clip_benchmark_recall(sim.T, positive, k) > 0).float().mean().item()
        image_to_text = (clip_benchmark_recall(sim, positive.T, k) > 0).float().mean().item()
        assert got[f"image_retrieval_recall@{k}"] == pytest.approx(text_to_image)
        assert got[f"text_retrieval_recall@{k}"] == pytest.approx(image_to_text)


def test_retrieval_hand_made_case() -> None:
    # 3 images, 5 texts; texts 0,1 -> image 0, text 2 -> image 1, texts 3,4 -> image 2
    sim = torch.tensor([
        [0.9, 0.1, 0.8, 0.0, 0.2],   # image 0: best text 0 (own)            -> hit@1
        [0.5, 0.6, 0.3, 0.7, 0.1],   # image 1: own text 2 ranks 4th         -> hit@4 only
        [0.2, 0.0, 0.9, 0.4, 0.3],   # image 2: text 2 first, own text 3 2nd -> hit@2
    ])
    got = retrieval_metrics(sim, [0, 0, 1, 2, 2], ks=(1, 2, 4))
    # text -> image, rank of the own image per text (columns): t0 1st, t1 2nd, t2 3rd, t3 2nd, t4 1st
    assert got["image_retrieval_recall@1"] == pytest.approx(2 / 5)
    assert got["image_retrieval_recall@2"] == pytest.approx(4 / 5)
    assert got["image_retrieval_recall@4"] == pytest.approx(5 / 5)
    assert got["text_retrieval_recall@1"] == pytest.approx(1 / 3)
    assert got["text_retrieval_recall@2"] == pytest.approx(2 / 3)
    assert got["text_retrieval_recall@4"] == pytest.approx(3 / 3)


def test_retrieval_ties_are_pessimistic_and_large_k_counts_as_hit() -> None:
    constant = torch.zeros(4, 4)
    got = retrieval_metrics(constant, [0, 1, 2, 3], ks=(1, 3, 4, 50))
    assert got["image_retrieval_recall@1"] == 0.0 and got["text_retrieval_recall@3"] == 0.0
    assert got["image_retrieval_recall@4"] == 1.0 and got["text_retrieval_recall@50"] == 1.0
    # a duplicate caption tied with its twin is not a tie against a negative
    dup = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert retrieval_metrics(dup, [0, 0, 1], ks=(1,))["text_retrieval_recall@1"] == 1.0


def test_retrieval_skips_images_without_captions() -> None:
    sim = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])  # image 2 has no caption
    got = retrieval_metrics(sim, [0, 1], ks=(1,))
    assert got["text_retrieval_recall@1"] == 1.0
    assert got["image_retrieval_recall@1"] == 0.0  # image 2 outranks both


@pytest.mark.parametrize("bad, message", [
    (dict(similarity=torch.full((2, 2), float("nan"))), "NaN"),
    (dict(text_image_index=[0, 5]), "text_image_index"),
    (dict(text_image_index=[0]), "shape"),
    (dict(ks=(0,)), "positive"),
])
def test_retrieval_bad_inputs(bad: dict, message: str) -> None:
    args = dict(similarity=torch.eye(2), text_image_index=[0, 1], ks=(1,)) | bad
    with pytest.raises(BadInputError, match=message) as err:
        retrieval_metrics(**args)
    assert "\n" not in str(err.value)


def test_evaluate_retrieval_cosine_and_flatten_captions() -> None:
    texts, index = flatten_captions([["a", "b"], [], ["c"]])
    assert texts == ["a", "b", "c"] and index.tolist() == [0, 0, 2]
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(10, 8, generator=gen)
    # texts are scaled copies of their image: cosine makes every query a hit at 1
    text_image = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 7])
    texts_emb = images[text_image] * torch.rand(len(text_image), 1, generator=gen).add(0.5)
    got = evaluate_retrieval(images, texts_emb, text_image, ks=(1,))
    assert got == {"image_retrieval_recall@1": 1.0, "text_retrieval_recall@1": 1.0}
    with pytest.raises(BadInputError, match="same width"):
        evaluate_retrieval(images, texts_emb[:, :4], text_image)


# ---------------------------------------------------------------- classification metrics


@pytest.mark.parametrize("num_classes", [3, 7])
def test_classification_matches_numpy(num_classes: int) -> None:
    gen = torch.Generator().manual_seed(num_classes)
    labels = torch.randint(0, num_classes - 1, (60,), generator=gen)  # last class never a label
    logits = torch.randn(60, num_classes, generator=gen)
    logits[torch.arange(30), labels[:30]] += 1.5  # better than chance, not perfect
    got = classification_metrics(logits, labels)
    want = numpy_classification(logits.numpy(), labels.numpy())
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    assert ("acc5" in got) == (num_classes >= 5)


def test_classification_neg_inf_classes_and_bad_inputs() -> None:
    logits = torch.tensor([[0.1, float("-inf"), 0.3], [float("-inf"), -1e9, -2e9]])
    assert classification_metrics(logits, [2, 1])["acc1"] == 1.0
    with pytest.raises(BadInputError, match="labels"):
        classification_metrics(torch.zeros(2, 3), [0, 3])
    with pytest.raises(BadInputError, match="NaN"):
        classification_metrics(torch.full((2, 3), float("nan")), [0, 1])


def test_classification_ties_count_against_the_image_as_retrieval_does() -> None:
    """One rule for both tasks: a wrong class tied with the label ranks first, so a constant scorer gets
    nothing at 1, and the label tied with four wrong classes is outside the top 5 but inside a top 6."""
    constant = torch.zeros(4, 6)
    got = classification_metrics(constant, [0, 1, 2, 5])
    assert got == {"acc1": 0.0, "acc5": 0.0, "mean_per_class_recall": 0.0}
    logits = torch.tensor([[3.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0],    # label 0 tied at the top with class 1
                           [3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0],    # label 5 tied with 1..4: rank 5
                           [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0]])   # no tie: label 6 first
    items = ClassificationItems.from_scores(logits, [0, 5, 6])
    assert items.predictions[0, :2].tolist() == [1, 0] and items.predictions[2, 0] == 6
    assert 5 not in items.predictions[1].tolist()
    assert items.metrics() == {"acc1": 1 / 3, "acc5": 2 / 3, "mean_per_class_recall": 1 / 3}
    as_retrieval = rank_of_best_positive(logits, label_positives(torch.tensor([0, 5, 6]), 7))
    assert as_retrieval.tolist() == [1, 5, 0]  # the same ranks retrieval would give each label


def test_ranked_predictions_put_the_label_at_its_rank() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (200, 8), generator=gen).float()  # many ties
    labels = torch.randint(0, 8, (200,), generator=gen)
    ranks = rank_of_best_positive(scores, label_positives(labels, 8))
    for k in (1, 3, 5, 8):
        top = ranked_predictions(scores, labels, k)
        assert ((top == labels[:, None]).any(dim=1) == (ranks < k)).all()
        assert all(len(set(row)) == k for row in top.tolist())  # no class twice
        wrong = scores.masked_fill(label_positives(labels, 8), float("-inf"))
        picked = wrong.gather(1, top).masked_fill(top == labels[:, None], float("inf"))
        assert (picked[:, :-1] >= picked[:, 1:]).logical_or(top[:, 1:] == labels[:, None]).all()


def test_aggregate_seeds() -> None:
    agg = aggregate_seeds([{"acc1": 0.5}, {"acc1": 0.7}])
    assert agg["acc1"]["mean"] == pytest.approx(0.6)
    assert agg["acc1"]["stdev"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert agg["acc1"]["values"] == [0.5, 0.7]


# ---------------------------------------------------------------- zero-shot


def test_class_prompts_are_class_major() -> None:
    assert class_prompts(["cat", "dog"], ["a {c}.", "art of the {}."]) == [
        "a cat.", "art of the cat.", "a dog.", "art of the dog."
    ]
    with pytest.raises(BadInputError, match="placeholder"):
        class_prompts(["cat"], ["no slot"])


def test_mean_and_max_reducers_differ_on_designed_case() -> None:
    s = float(np.sqrt(1 - 0.9**2))
    prompts = torch.tensor([
        [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],   # class 0: one prompt exact, one orthogonal
        [0.9, s, 0.0], [0.9, -s, 0.0],      # class 1: two near prompts symmetric about the image
    ])
    image = torch.tensor([[2.0, 0.0, 0.0]])  # not unit norm: normalised inside
    mean = zeroshot_logits(image, prompts, 2, "mean")
    best = zeroshot_logits(image, prompts, 2, "max")
    assert torch.allclose(mean, torch.tensor([[2**-0.5, 1.0]]), atol=1e-6)
    assert torch.allclose(best, torch.tensor([[1.0, 0.9]]), atol=1e-6)
    assert mean.argmax().item() == 1 and best.argmax().item() == 0


def test_reducers_agree_with_one_template() -> None:
    gen = torch.Generator().manual_seed(3)
    images, prompts = torch.randn(9, 6, generator=gen), torch.randn(4, 6, generator=gen)
    mean, best = zeroshot_logits(images, prompts, 4, "mean"), zeroshot_logits(images, prompts, 4, "max")
    assert torch.allclose(mean, best, atol=1e-6)
    cosine = torch.nn.functional.cosine_similarity(images[:, None], prompts[None], dim=-1)
    assert torch.allclose(mean, cosine, atol=1e-6)


def test_zeroshot_bad_inputs_and_end_to_end() -> None:
    with pytest.raises(BadInputError, match="evenly"):
        zeroshot_logits(torch.randn(2, 3), torch.randn(5, 3), 2)
    with pytest.raises(BadInputError, match="reducer"):
        zeroshot_logits(torch.randn(2, 3), torch.randn(4, 3), 2, "median")  # type: ignore[arg-type]
    table = {"a cat": [1.0, 0.0], "the cat": [0.9, 0.1], "a dog": [0.0, 1.0], "the dog": [0.1, 0.9]}
    embed = lambda prompts: torch.tensor([table[p] for p in prompts])  # noqa: E731
    images = torch.tensor([[1.0, 0.2], [0.1, 1.0], [0.3, 0.1]])
    got = evaluate_zeroshot(images, [0, 1, 0], ["cat", "dog"], ["a {c}", "the {c}"], embed, reducer="max")
    assert got == {"acc1": 1.0, "mean_per_class_recall": 1.0}


# ---------------------------------------------------------------- linear probe


def blobs(n_per_class: int, num_classes: int, dim: int, seed: int, spread: float = 0.3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(size=(num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), n_per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_linear_probe_separable_reaches_one() -> None:
    train_x, train_y = blobs(20, 4, 8, seed=0)
    test_x, test_y = blobs(10, 4, 8, seed=1)
    got = lp.linear_probe(torch.from_numpy(train_x), torch.from_numpy(train_y), test_x, test_y, c_grid=(0.01, 1.0))
    assert got.metrics == {"acc1": 1.0, "mean_per_class_recall": 1.0}  # no acc5 with 4 classes
    assert got.C in (0.01, 1.0) and set(got.val_acc1) == {0.01, 1.0}


def test_linear_probe_chooses_c_on_train_only(monkeypatch: pytest.MonkeyPatch) -> None:
    train_x, train_y = blobs(25, 3, 6, seed=0, spread=2.5)  # overlapping: C matters
    test_x, test_y = blobs(7, 3, 6, seed=1, spread=2.5)
    seen: list[np.ndarray] = []
    real_fit = lp._fit
    monkeypatch.setattr(lp, "_fit", lambda model, x, y: (seen.append(x), real_fit(model, x, y))[1])
    first = lp.linear_probe(train_x, train_y, test_x, test_y, c_grid=(1e-3, 1e-1, 10.0))
    test_rows = {row.tobytes() for row in test_x}
    assert len(seen) == 4  # three validation fits, one refit
    assert [len(x) for x in seen] == [60, 60, 60, 75]  # 80% of 75 train rows, then all of them
    assert all(row.tobytes() not in test_rows for x in seen for row in x)
    # scrambling the test labels changes the score but never the chosen C; reruns are identical
    scrambled = lp.linear_probe(train_x, train_y, test_x, np.roll(test_y, 1), c_grid=(1e-3, 1e-1, 10.0))
    assert scrambled.C == first.C
    assert lp.linear_probe(train_x, train_y, test_x, test_y, c_grid=(1e-3, 1e-1, 10.0)) == first


def test_validation_split_is_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(4), 10)
    fit_rows, val_rows = lp.validation_split(labels, 0.2, seed=5)
    assert np.bincount(labels[val_rows]).tolist() == [2, 2, 2, 2]
    assert set(fit_rows).isdisjoint(val_rows) and len(fit_rows) + len(val_rows) == 40
    again = lp.validation_split(labels, 0.2, seed=5)
    assert np.array_equal(again[1], val_rows)


# ---------------------------------------------------------------- few-shot


def test_fewshot_deterministic_given_seed() -> None:
    train_x, train_y = blobs(12, 5, 8, seed=0, spread=2.0)
    test_x, test_y = blobs(6, 5, 8, seed=1, spread=2.0)
    for k in range(1, 6):
        support = sample_support(train_y, k, seed=7)
        assert np.bincount(train_y[support]).tolist() == [k] * 5
        assert np.array_equal(support, sample_support(train_y, k, seed=7))
        first = fewshot(train_x, train_y, test_x, test_y, k, seed=7)
        assert fewshot(train_x, train_y, test_x, test_y, k, seed=7) == first
    assert not np.array_equal(sample_support(train_y, 3, seed=0), sample_support(train_y, 3, seed=1))
    assert fewshot(train_x, train_y, test_x, test_y, 5, seed=0)["acc1"] > 0.5  # chance is 0.2
    agg = fewshot_over_seeds(train_x, train_y, test_x, test_y, 2, seeds=[0, 1, 2])
    assert len(agg["acc1"]["values"]) == 3


def test_nearest_mean_matches_numpy_and_marks_missing_classes() -> None:
    rng = np.random.default_rng(0)
    support_x, support_y = rng.normal(size=(6, 4)), np.array([0, 0, 1, 1, 3, 3])
    query = rng.normal(size=(5, 4))
    got = nearest_mean_logits(torch.from_numpy(support_x), torch.from_numpy(support_y), torch.from_numpy(query), 4)
    shift = support_x.mean(0)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    s, q = unit(support_x - shift), unit(query - shift)
    protos = unit(np.stack([s[support_y == c].mean(0) for c in (0, 1, 3)]))
    assert np.allclose(got[:, [0, 1, 3]].numpy(), q @ protos.T)
    assert torch.isneginf(got[:, 2]).all()


def test_row_space_probe_equals_the_full_width_probe_when_features_outnumber_rows() -> None:
    """Projecting standardised train rows onto their span (D > n) must not change the L2-penalised
    optimum: same chosen C, same test predictions, log-probabilities equal to solver tolerance."""
    from align.eval.linear_probe import RowSpace, _probe, linear_probe

    gen = np.random.default_rng(0)
    centres = gen.normal(size=(3, 400))
    train_y, test_y = gen.integers(0, 3, 60), gen.integers(0, 3, 40)
    train_x = centres[train_y] * 0.3 + gen.normal(size=(60, 400))
    test_x = centres[test_y] * 0.3 + gen.normal(size=(40, 400))
    full = linear_probe(train_x, train_y, test_x, test_y, c_grid=(0.01, 1.0), max_iter=5000)
    fast = linear_probe(train_x, train_y, test_x, test_y, c_grid=(0.01, 1.0), max_iter=5000, row_space=True)
    assert fast.C == full.C and fast.val_acc1 == full.val_acc1 and fast.metrics == full.metrics
    a, b = _probe(1.0, 5000), _probe(1.0, 5000, row_space=True)
    for model in (a, b):  # solved tightly, the two optima coincide
        model.steps[-1][1].set_params(tol=1e-10)
        model.fit(train_x, train_y)
    assert b.steps[1][1].basis_.shape == (400, 59)  # 60 centred rows span 59 dimensions
    np.testing.assert_allclose(b.predict_log_proba(test_x), a.predict_log_proba(test_x), atol=1e-8)
    assert RowSpace().fit(train_x[:, :30]).basis_ is None  # narrower than the rows: left as is
