"""Where a benchmark run spends its wall time: building encoders, features, sweeps, fits, scoring.

Phases nest the way the work does (a fit asks for its features lazily, a zero-shot task for its prompts'
text features): entering a phase pauses the one around it, so every second is counted once and the
phases add up to the time measured inside them; what is left of the run's wall time is "other"
(planning, reading and writing files). Units that an executor runs elsewhere (Ray) are not split: the
time spent waiting for them falls into "other".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

PHASES = ("build encoders", "image features", "text features", "sweeps", "fits", "scoring")
ENCODING = PHASES[:3]  # the phases that make features: paid by whichever unit first needs them
OTHER = "other"


class PhaseClock:
    """Wall seconds by phase; a phase entered inside another pauses it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[str] = []  # the phases entered and not left, innermost last
        self._since = 0.0  # when the innermost open phase last started or resumed

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._switch()
        self._open.append(name)
        try:
            yield
        finally:
            self._switch()
            self._open.pop()

    def _switch(self) -> None:
        """Credit the innermost open phase with the time since it last (re)started."""
        now = time.perf_counter()
        if self._open:
            self.seconds[self._open[-1]] = self.seconds.get(self._open[-1], 0.0) + now - self._since
        self._since = now

    def total(self, names: tuple[str, ...]) -> float:
        """Seconds credited so far to ``names``; read before and after a step (outside the phases it opens)
        to get the time that step spent in them."""
        return sum(self.seconds.get(name, 0.0) for name in names)

    def split(self, total: float) -> dict[str, float]:
        """Seconds of each phase that took any, in :data:`PHASES` order, and ``other`` (the rest of ``total``)."""
        out = {name: round(self.seconds[name], 3) for name in PHASES if self.seconds.get(name)}
        out |= {name: round(s, 3) for name, s in self.seconds.items() if name not in out and s}
        out[OTHER] = round(max(total - sum(self.seconds.values()), 0.0), 3)
        return out
