"""What one benchmark run shares across its dataset entries and units.

The feature bank, the fits and sweep choices made in this run (so entries that differ only in their
tasks share one fit), the encoders' weights hashes, and the ledger that counts every result file once
(:mod:`align.bench.record.ledger`). A unit run on another process (:mod:`align.bench.execute.executors`)
gets a fresh session of the same settings and reports its ledger's events back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from align.bench.execute.features import FeatureBank
from align.bench.execute.phases import PhaseClock
from align.bench.plan.config import BenchConfig
from align.bench.record.ledger import Ledger, RunSummary
from align.errors import AlignError, EncoderUnavailable
from align.methods.framework.base import Aligner


def weights_sha256(kind: str, name: str) -> str | None:
    """The sha256 of the weights an image or text encoder loads (None: built in code)."""
    from align.features.cache import weights_fingerprint
    from align.registry import TEXT_ENCODERS, VISION_ENCODERS

    return weights_fingerprint(VISION_ENCODERS if kind == "image" else TEXT_ENCODERS, name)


@dataclasses.dataclass
class Session:
    """One call of :func:`align.bench.runner.run_benchmark`: its settings and what it has made so far."""

    config: BenchConfig
    root: Path
    bank: FeatureBank
    echo: Callable[[str], None]
    overwrite: bool = False
    save_aligners: bool = False
    summary: RunSummary = dataclasses.field(default_factory=RunSummary)
    # fit key -> (aligner, seconds fitting, seconds encoding its features)
    fitted: dict[str, tuple[Aligner, float, float]] = dataclasses.field(default_factory=dict)
    sweeps: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # sweep key -> its record
    examples_written: set[Path] = dataclasses.field(default_factory=set)  # report pictures written in this run
    warned: set[str] = dataclasses.field(default_factory=set)  # one-time warnings already echoed in this run
    _weights: dict[tuple[str, str], str | None] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.summary, self.overwrite)

    @property
    def clock(self) -> PhaseClock:
        """The run's wall time by phase (kept by the feature bank, which times the features)."""
        return self.bank.clock

    def weights(self, kind: str, name: str) -> str | None:
        """The sha256 of an encoder's weights (one that cannot be found: :class:`EncoderUnavailable`)."""
        if (kind, name) not in self._weights:
            try:
                self._weights[(kind, name)] = weights_sha256(kind, name)
            except AlignError as err:
                raise EncoderUnavailable(kind, str(err)) from None
        return self._weights[(kind, name)]

    def fresh(self, echo: Callable[[str], None]) -> Session:
        """A session of the same settings with nothing made yet, for a unit run elsewhere (absolute root:
        a worker's working directory is not this process's)."""
        return Session(self.config, self.root.resolve(), self.bank, echo, self.overwrite, self.save_aligners)
