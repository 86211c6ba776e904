"""Bad user rows: fail on the first (one line naming file and line) or, with ``skip_bad``, count them."""

from __future__ import annotations

import logging
from pathlib import Path

from align.errors import BadInputError

log = logging.getLogger(__name__)


class BadRows:
    """Collects the bad rows of one source; :meth:`done` logs the count once."""

    def __init__(self, source: str, skip_bad: bool) -> None:
        self.source = source
        self.skip_bad = skip_bad
        self.count = 0
        self.first: str | None = None

    def flag(self, message: str) -> None:
        """Raise ``message`` as a :class:`BadInputError`, or count it when skipping."""
        if not self.skip_bad:
            raise BadInputError(message)
        self.count += 1
        self.first = self.first or message

    def done(self) -> None:
        if self.count:
            log.warning("%s: skipped %d bad row(s) (skip_bad=True); first: %s", self.source, self.count, self.first)


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable image (missing, unreadable, truncated, over the pixel limit), or ``None``.

    Decodes the whole image: ``verify()`` alone misses truncated JPEGs."""
    from align.data.images import image_problem_of

    return image_problem_of(path)[1]
