"""How sure a number is: a seeded bootstrap over test items, pooled over seeds, paired between aligners.

A leaderboard cell is a mean over seeds of a metric of a few hundred test items; another draw of test
items would move it. The bootstrap redraws the test items with replacement (``resamples`` times,
from ``seed``, both recorded), recomputes the metric on every draw from the per-item outputs
(:mod:`align.eval.items`), and reports the central 95% of the redrawn values (percentile interval).

- **Pooled over seeds**: each draw is applied to every seed's items and the seeds' values averaged, so
  the interval is for the number shown (a mean over seeds); the seed-to-seed spread is shown apart.
- **Paired**: two aligners scored on the same test items get the same draws, and the interval is of
  their difference on each draw. An item both get right or both get wrong moves neither, so a paired
  interval is much narrower than two separate intervals would suggest; a difference is called real
  only when its paired interval excludes zero.

Draws come from ``numpy.random.default_rng(seed)`` in a fixed order, so the same settings give the
same intervals on every machine. Unlike a sign test over three seeds (p = 0.125 at best, whatever the
effect), this resamples the items the seeds were scored on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from align.errors import BadInputError
from align.eval.items import Items, check_same_items

_CHUNK = 100  # draws built at once: bounds memory to CHUNK x items counts


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """The bootstrap's settings, recorded beside every interval they produced."""

    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not isinstance(self.resamples, int) or not 1 <= self.resamples <= 1_000_000:
            raise BadInputError(f"bootstrap resamples must be an integer in [1, 1000000], got {self.resamples!r}")
        if not 0 < self.confidence < 1:
            raise BadInputError(f"bootstrap confidence must lie in (0, 1), got {self.confidence!r}")

    def counts(self, n: int) -> Iterator[np.ndarray]:
        """The draws as ``[chunk, n]`` counts (how often each of the ``n`` items was drawn), in chunks;
        the same settings and ``n`` always give the same draws."""
        if n < 1:
            raise BadInputError("bootstrap: no test items to resample")
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.resamples, _CHUNK):
            size = min(_CHUNK, self.resamples - start)
            rows = rng.integers(0, n, size=(size, n))
            flat = (rows + n * np.arange(size)[:, None]).ravel()
            yield np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)

    def describe(self) -> str:
        return (f"{self.confidence:.0%} percentile bootstrap over test items, {self.resamples} resamples, "
                f"seed {self.seed}")

    def as_dict(self) -> dict[str, float | int | str]:
        return {"method": "percentile bootstrap over test items, pooled over seeds", "resamples": self.resamples,
                "seed": self.seed, "confidence": self.confidence}

    def bounds(self, samples: np.ndarray) -> tuple[float, float]:
        tail = (1 - self.confidence) / 2 * 100
        finite = samples[np.isfinite(samples)]
        if not finite.size:
            return math.nan, math.nan
        low, high = np.percentile(finite, [tail, 100 - tail])
        return float(low), float(high)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its interval."""

    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def format(self, spec: str = ".3f") -> str:
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


@dataclasses.dataclass(frozen=True)
class Difference:
    """``a − b`` of one metric: the paired interval pooled over seeds, and each shared seed's difference."""

    interval: Interval
    per_seed: dict[int, float]

    @property
    def seeds_better(self) -> str:
        """``"2/3"``: the seeds where ``a`` scored above ``b``."""
        return f"{sum(v > 0 for v in self.per_seed.values())}/{len(self.per_seed)}"

    def verdict(self) -> str:
        if not self.interval.excludes_zero():
            return "cannot be told apart"
        return "higher" if self.interval.low > 0 else "lower"


def _pooled(items: Sequence[Items], metric: str, counts: np.ndarray) -> np.ndarray:
    return np.mean([i.resampled(metric, counts) for i in items], axis=0)


def _estimate(items: Sequence[Items], metric: str) -> float:
    return float(np.mean([i.value(metric) for i in items]))


def metric_interval(items: Sequence[Items], metric: str, boot: Bootstrap = Bootstrap()) -> Interval:
    """The mean of ``metric`` over the seeds' ``items`` (one per seed, all on the same test items) and
    its bootstrap interval."""
    if not items:
        raise BadInputError(f"bootstrap of {metric}: no results")
    check_same_items(items, f"the seeds of {metric}")
    samples = np.concatenate([_pooled(items, metric, counts) for counts in boot.counts(items[0].num_units)])
    return Interval(_estimate(items, metric), *boot.bounds(samples))


def paired_difference(a: Mapping[int, Items], b: Mapping[int, Items], metric: str,
                      boot: Bootstrap = Bootstrap()) -> Difference:
    """``a − b`` in ``metric`` (each a seed -> items map, every entry on the same test items): the
    difference of their means over seeds, its paired bootstrap interval, and each seed both have."""
    if not a or not b:
        raise BadInputError(f"paired difference of {metric}: one side has no results")
    check_same_items([*a.values(), *b.values()], f"the compared results of {metric}")
    first, second = list(a.values()), list(b.values())
    samples = np.concatenate([_pooled(first, metric, counts) - _pooled(second, metric, counts)
                              for counts in boot.counts(first[0].num_units)])
    estimate = _estimate(first, metric) - _estimate(second, metric)
    per_seed = {s: a[s].value(metric) - b[s].value(metric) for s in sorted(set(a) & set(b))}
    return Difference(Interval(estimate, *boot.bounds(samples)), per_seed)
