"""Errors that the CLI prints as one line: they name the input and what to do about it."""

from __future__ import annotations


class AlignError(Exception):
    """Base class for every error meant for the user rather than for a traceback."""


class UnknownNameError(AlignError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(AlignError):
    """A second registration under a name that is already taken."""


class AssetMissingError(AlignError):
    """A packaged weight or dataset that has not been pulled into the cache yet."""


class AssetVerificationError(AlignError):
    """A downloaded or cached file whose sha256 does not match its specification."""


class SourceUnavailableError(AlignError):
    """Every source of an asset failed (no network, unknown package, tool missing)."""


class BadInputError(AlignError):
    """User-supplied data that cannot be used: not an image, empty text, wrong shape."""


class EncoderUnavailable(AlignError):
    """An image or text encoder a run names that cannot be built (weights missing, unknown model)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "image" or "text": which list of a config names it


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT during a long command, raised in the main thread by the command's own handler.

    A ``BaseException`` (like ``KeyboardInterrupt``), so no ``except Exception`` on the way swallows it and
    every layer unwinds: atomic writes leave nothing half-written. Lightning's own SIGTERM handling would
    otherwise end a fit with ``SystemExit(None)``, which a shell reads as success. The command says what
    finished (``summary``, filled in by the run) and exits ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.summary: object | None = None
