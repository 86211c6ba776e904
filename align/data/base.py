"""The dataset interface: a registered dataset yields fixed, seeded, documented splits.

A :class:`DatasetSplit` (defined in :mod:`align.data.splits`, importable from here) is what the
feature cache and the evaluation tasks consume: images loaded lazily by index, zero or more captions
per image, optional integer labels with class names and prompt templates, optional extra label sets
(e.g. emoji subcategories). ``version`` changes whenever the content or the split recipe changes, so
cached features are never silently reused across them.

Every dataset also answers ``NAME@N`` for each of its splits: a seeded subsample of ``N`` items,
stratified by the main labels when there are any (recipe in :mod:`align.data.subsample`).
:meth:`Dataset.load` handles that once; a dataset implements :meth:`Dataset.build_split` for its
plain split names. (A dataset that overrides ``load`` itself still works, without ``@N``.)

Templates travel with the labels (:class:`LabelSet`) and do not enter ``version``: they change text
prompts, not image features, so results record them (or their hash) instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from align.data.splits import DatasetSplit, LabelSet
from align.data.subsample import parse_split, subsample
from align.errors import UnknownNameError

__all__ = ["Dataset", "DatasetSplit", "LabelSet"]


class Dataset:
    """A registered dataset: named splits, each built on demand."""

    name: str
    version: str
    splits: Sequence[str]

    def load(self, split: str) -> DatasetSplit:
        """Split ``split`` (one of :attr:`splits`), or ``NAME@N``: a seeded, stratified subsample.

        Checks the name, builds the split with :meth:`build_split`, subsamples for ``@N``."""
        base, n = parse_split(split)
        if base not in self.splits:
            close = difflib.get_close_matches(base, list(self.splits), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"dataset {self.name!r} has no split {base!r} (splits: {', '.join(self.splits)}, "
                f"each also as NAME@N){hint}")
        full = self.build_split(base)
        return full if n is None else subsample(full, n)

    def build_split(self, split: str) -> DatasetSplit:
        """Build one of :attr:`splits` (never called with an ``@N`` name or an unknown split)."""
        raise NotImplementedError
