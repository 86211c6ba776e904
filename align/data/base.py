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

A bad split spec (``train@0``, ``tset``) or an unknown label set is a one-line error naming the
dataset, what was asked for and what is valid: :meth:`Dataset.check_split` and
:meth:`Dataset.check_label_set` check them before anything is loaded (for a config), and
:meth:`DatasetSplit.label_set` fetches a label set from a built split.

Templates travel with the labels (:class:`LabelSet`) and do not enter ``version``: they change text
prompts, not image features, so results record them (or their hash) instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from align.data.splits import DatasetSplit, LabelSet, unknown_label_set
from align.data.subsample import parse_split, subsample
from align.errors import BadInputError, UnknownNameError

__all__ = ["Dataset", "DatasetSplit", "LabelSet"]


class Dataset:
    """A registered dataset: named splits, each built on demand."""

    name: str
    version: str
    splits: Sequence[str]
    # names of the extra label sets every split carries (DatasetSplit.extra_labels), besides the main
    # labels; None where a dataset does not declare them (then they are known once a split is built)
    label_sets: Sequence[str] | None = None
    # read from the user's own copy (COCO, Flickr, ImageNet, CIFAR, folder:, manifest:, wds:): its splits
    # are the user's, so align cannot check them once for everyone as it checks its packaged data; a run
    # counts their shared images instead (align.data.shared_images)
    user_copy: bool = False

    def check_split(self, split: str) -> tuple[str, int | None]:
        """``(NAME, N)`` for ``NAME@N`` (``N`` None for a plain ``NAME``), checked without building
        anything: a one-line error naming the dataset, the split and the valid splits otherwise."""
        try:
            base, n = parse_split(split)
        except BadInputError as err:
            raise BadInputError(f"dataset {self.name!r}: {err} (splits: {', '.join(self.splits)}; "
                                f"e.g. {self.splits[0]}@100)") from None
        if base not in self.splits:
            close = difflib.get_close_matches(base, list(self.splits), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"dataset {self.name!r} has no split {base!r} (splits: {', '.join(self.splits)}, "
                                   f"each also as NAME@N){hint}")
        return base, n

    def check_label_set(self, name: str | None) -> None:
        """Refuse a label set this dataset does not declare (``None`` = the main labels), without
        building anything; a dataset that declares none (``label_sets is None``) is checked when a
        split is built (:meth:`DatasetSplit.label_set`)."""
        if name is not None and self.label_sets is not None and name not in self.label_sets:
            raise BadInputError(unknown_label_set(self.name, name, tuple(self.label_sets)))

    def load(self, split: str) -> DatasetSplit:
        """Split ``split`` (one of :attr:`splits`), or ``NAME@N``: a seeded, stratified subsample.

        Checks the name (:meth:`check_split`), builds the split with :meth:`build_split`, subsamples for ``@N``."""
        base, n = self.check_split(split)
        full = self.build_split(base)
        return full if n is None else subsample(full, n)

    def build_split(self, split: str) -> DatasetSplit:
        """Build one of :attr:`splits` (never called with an ``@N`` name or an unknown split)."""
        raise NotImplementedError
