"""VLAP's validation by the frozen LM's likelihood (issue 30): what early stopping and the choice of
lambda follow must be a metric both losses serve, so it is checked against the LM's own scores, the
tie rule, and the direction early stopping keeps."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from align.errors import BadInputError
from align.methods.framework.checkpoints import BestWeights
from align.methods.vlap.aligner import VLAPAligner, VLAPCore, likelihood_scores, load_table, tokenize_captions
from align.text.toy import toy_gemma_table
from registered_tables import registered_tables  # tests/unit/registered_tables.py

GEMMA = "test:vlap-validation-gemma"  # tiny random Gemma-3 (embeddings scaled by sqrt(D) inside the LM)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module", autouse=True)
def tables() -> Iterator[None]:
    with registered_tables({GEMMA: (lambda: toy_gemma_table(GEMMA), "tiny random Gemma-3")}, (load_table,)):
        yield


def test_pair_likelihoods_are_the_caption_loss_of_each_pair() -> None:
    """``S[i, j]`` is minus the summed caption NLL of caption j after prefix i, the same number the
    training loss computes for that one pair (so an off-by-one position or a lost scale shows)."""
    core = VLAPCore(8, GEMMA, num_prefix_tokens=2)
    table = core.table
    ids, mask = tokenize_captions(table, ["cat", "a red boat", "dog runs"], 16)
    prefix = torch.randn(3, 2, table.embed_dim, generator=torch.Generator().manual_seed(0))
    scores = core.caption_logprobs(prefix, ids, mask, chunk=4)  # chunks that split a prefix's row
    with torch.no_grad():
        for i in range(3):
            for j in range(3):
                expected = -core.caption_loss(prefix[i:i + 1], ids[j:j + 1], mask[j:j + 1]) * mask[j].sum()
                assert float(scores[i, j]) == pytest.approx(float(expected), rel=1e-4, abs=1e-4)


def test_likelihood_retrieval_counts_identical_captions_once_and_ties_as_misses() -> None:
    ids = torch.tensor([[5, 6, 1], [7, 1, 0], [5, 6, 1], [8, 1, 0]])  # captions 0 and 2 are the same text
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 0]])
    scores = torch.tensor([[-1.0, -5.0, -2.0, -3.0],   # image 0: its text first (caption 0)
                           [-1.0, -4.0, -9.0, -9.0],   # image 1: caption 0 beats its own: miss
                           [-3.0, -5.0, -4.0, -3.0],   # image 2: its text (-3 via caption 0) tied with caption 3: miss
                           [-9.0, -9.0, -9.0, -1.0]])  # image 3: hit
    out = likelihood_scores(scores, ids, mask)
    assert out["val_lm_r1"] == pytest.approx(2 / 4)
    # caption j's images: 0 -> images {0, 2} best -1 vs wrong max(-1) tie: miss; 1 -> -4 vs -5: hit;
    # 2 -> best of {0, 2} -2 vs wrong -9: hit; 3 -> -1 vs -3: hit
    assert out["val_lm_image_r1"] == pytest.approx(3 / 4)
    assert out["val_cap_nll"] == pytest.approx((1 + 4 + 4 + 1) / 10)
    # ranks 1, 2 (caption 0 above), 2 (the tie with caption 3 counts against), 1
    assert out["val_lm_mrr"] == pytest.approx((1 + 1 / 2 + 1 / 2 + 1) / 4)


def test_likelihood_reciprocal_rank_counts_a_repeated_wrong_text_once() -> None:
    ids = torch.tensor([[5, 1], [6, 1], [6, 1], [7, 1]])  # captions 1 and 2 are the same text
    mask = torch.ones_like(ids)
    scores = torch.tensor([[-3.0, -1.0, -2.0, -2.5],   # image 0: text "6" (twice) and text "7" above it: rank 3
                           [-9.0, -1.0, -9.0, -9.0],
                           [-9.0, -9.0, -1.0, -9.0],
                           [-1.0, -9.0, -9.0, -5.0]])  # image 3: text "5" above it: rank 2
    out = likelihood_scores(scores, ids, mask)
    assert out["val_lm_mrr"] == pytest.approx((1 / 3 + 1 + 1 + 1 / 2) / 4)


def test_a_fit_records_the_likelihood_metrics_every_epoch_and_checks_its_monitor() -> None:
    table = load_table(GEMMA)
    words = [t[1:] for t in table.tokens if t.startswith("▁") and t[1:].isalpha()][:40]
    captions = [f"{a} {b}" for a, b in zip(words[:20], words[20:40])]
    x = torch.randn(20, 12, generator=torch.Generator().manual_seed(0))
    aligner = VLAPAligner(table=GEMMA, vocab_subset=50, max_epochs=2, batch_size=8, val_fraction=0.25, seed=0,
                          val_lm_items=4, monitor="val_lm_r1", patience=5)
    aligner.fit_captions(x, captions)
    for key in ("val_cap_nll", "val_lm_r1", "val_lm_image_r1", "val_lm_mrr", "val_r1"):
        assert len(aligner.history[key]) == 2, key
    assert all(0 < v < 50 for v in aligner.history["val_cap_nll"])
    with pytest.raises(BadInputError, match="val_lm_items"):
        VLAPAligner(table=GEMMA, val_fraction=0.2, monitor="val_lm_r1")
    with pytest.raises(BadInputError, match="val_fraction"):
        VLAPAligner(table=GEMMA, val_lm_items=8)


@pytest.mark.parametrize("mode, values, best", [("min", [3.0, 1.0, 2.0], 1), ("max", [0.1, 0.5, 0.3], 1),
                                                ("max", [0.5, 0.1, 0.2], 0)])
def test_best_weights_keeps_the_best_epoch_in_either_direction(mode: str, values: list[float], best: int) -> None:
    keep = BestWeights("val_lm_r1", mode)
    module = torch.nn.Linear(1, 1, bias=False)
    for epoch, value in enumerate(values):
        with torch.no_grad():
            module.weight.fill_(epoch)
        trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val_lm_r1": torch.tensor(value)},
                                  current_epoch=epoch)
        keep.on_validation_end(trainer, module)
    keep.on_fit_end(trainer, module)
    assert keep.best_epoch == best and float(module.weight.detach()) == best
