"""Per-query outputs (visual arithmetic, attribute questions): hit rates, resampling by image rather than
by query, and a lossless round trip through the stored form."""

from __future__ import annotations

import numpy as np
import pytest

from align.errors import BadInputError
from align.eval.bootstrap import Bootstrap, metric_interval
from align.eval.items import QueryItems, items_from_stored

KS = (("recall@1", 1), ("recall@5", 5))


def items() -> QueryItems:
    # image 0: two queries, both hits at 1; image 1: one query, rank 3; image 2: no query
    return QueryItems(np.array([0, 0, 3]), np.array([0, 0, 1]), 3, KS)


def test_metrics_are_shares_of_queries_below_k() -> None:
    assert items().metrics() == {"recall@1": 2 / 3, "recall@5": 1.0}
    assert items().value("recall@1") == 2 / 3


def test_resampling_draws_images_with_all_their_queries() -> None:
    counts = np.array([[2, 0, 1], [0, 2, 0], [1, 1, 1], [0, 0, 3]])
    got = items().resampled("recall@1", counts)
    assert got[:3].tolist() == [1.0, 0.0, 2 / 3]  # a query-by-query draw could not give 1.0 from [2, 0, 1]
    assert np.isnan(got[3])  # only the image without queries drawn: no hit rate


def test_interval_contains_the_value() -> None:
    interval = metric_interval([items()], "recall@1", Bootstrap(resamples=200))
    assert interval.low <= 2 / 3 <= interval.high


def test_round_trip_through_the_stored_form() -> None:
    original = items()
    back = items_from_stored("queries", original.arrays(), original.meta())
    assert isinstance(back, QueryItems) and back.metrics() == original.metrics()
    assert back.fingerprint == original.fingerprint and back.num_units == 3


def test_unknown_metric_and_bad_ids_are_one_line_errors() -> None:
    with pytest.raises(BadInputError, match="no metric 'acc1'"):
        items().resampled("acc1", np.ones((1, 3)))
    with pytest.raises(BadInputError, match=r"image ids must lie in \[0, 2\)"):
        QueryItems(np.array([0]), np.array([2]), 2, KS)
