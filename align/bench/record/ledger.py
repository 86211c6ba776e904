"""What a benchmark run did with each result file, counted once per file.

A file is classified when the run decides about it: already there (verified, same identity), written
new, or recomputed because it was stale (other settings, or no checksum) or unreadable (damaged,
altered, truncated). A file that another run sharing the folder wrote meanwhile is found again just
before it would be computed and counted as already there; a file two entries of one config both
produce is counted once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from align.bench.record.result_files import status


@dataclasses.dataclass
class RunSummary:
    written: int = 0  # result files this run wrote (new and recomputed)
    skipped: int = 0  # verified results of the same identity already there
    stale: int = 0  # of ``written``: recomputed because what produced the old file changed
    unreadable: int = 0  # of ``written``: recomputed because the old file was damaged or altered
    seconds: float = 0.0
    phases: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds by phase (execute.phases)

    def line(self) -> str:
        """``"8 results written (2 recomputed as stale, 1 as unreadable), 4 already there"``."""
        redone = [f"{self.stale} recomputed as stale"] if self.stale else []
        if self.unreadable:
            redone.append(f"{self.unreadable} {'as' if redone else 'recomputed as'} unreadable")
        shown = f" ({', '.join(redone)})" if redone else ""
        return f"{self.written} results written{shown}, {self.skipped} already there"

    def phase_line(self) -> str:
        """``"time by phase: image features 95.2 s, fits 30.1 s, ..., other 4.0 s"`` ("" before the run ends)."""
        if not self.phases:
            return ""
        return "time by phase: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.phases.items())


class Ledger:
    """The run's decisions about result files, so that each is counted once."""

    def __init__(self, summary: RunSummary, overwrite: bool) -> None:
        self.summary, self.overwrite = summary, overwrite
        self._written: dict[Path, str] = {}  # path -> identity sha256, written by this run
        self._counted: set[Path] = set()
        # every keep and wrote, in order: a unit run elsewhere (``executors``) reports them for replay here
        self.events: list[tuple[str, Path, str, str]] = []

    def current(self, path: Path, identity: str) -> bool:
        """Whether ``path`` holds this identity's result already (written by this run, or found
        verified and, unless overwriting, kept)."""
        if path in self._written:
            return self._written[path] == identity
        return not self.overwrite and status(path, identity)[0] == "ok"

    def keep(self, path: Path) -> None:
        """Count ``path`` as already there (once)."""
        self.events.append(("keep", path, "", ""))
        if path not in self._counted:
            self._counted.add(path)
            self.summary.skipped += 1

    def before_write(self, path: Path, identity: str) -> tuple[str, str]:
        """The state of ``path`` just before this run writes it, and why it is recomputed (counted when
        :meth:`wrote` follows)."""
        return status(path, identity)

    def wrote(self, path: Path, identity: str, found: str) -> None:
        self.events.append(("wrote", path, identity, found))
        self._written[path] = identity
        if path in self._counted:
            return
        self._counted.add(path)
        self.summary.written += 1
        self.summary.stale += found == "stale"
        self.summary.unreadable += found == "unreadable"

    def replay(self, events: list[tuple[str, Path, str, str]]) -> None:
        """Count what another ledger recorded (a unit run on a worker), each file still once."""
        for kind, path, identity, found in events:
            if kind == "keep":
                self.keep(path)
            else:
                self.wrote(path, identity, found)
