"""A user's text file as lines numbered the way an editor numbers them.

``str.splitlines`` (and Python's universal-newline reading) also break lines at ``\\r``, form feeds,
``\\x1c``-``\\x1e``, ``\\x85`` and the Unicode line/paragraph separators, so a caption containing one
would become two rows and every later row number would be off. Lines here end at ``\\n`` only (a
``\\r`` before it is dropped, for Windows files); any other character stays inside its line.
"""

from __future__ import annotations

from pathlib import Path

from align.errors import BadInputError


def split_lines(text: str) -> list[str]:
    """``text`` split at ``\\n`` (and ``\\r\\n``) only; no empty last line for a final newline."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_text(path: Path, what: str = "text file") -> str:
    """A UTF-8 file's text (a byte-order mark dropped) with no newline translation, or a one-line error."""
    if not path.is_file():
        raise BadInputError(f"{path}: no such {what}")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadInputError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise BadInputError(f"{path}: cannot read the {what} ({err.strerror or err})") from None


def read_lines(path: Path, what: str = "text file") -> list[str]:
    """The lines of a UTF-8 file, numbered as in an editor: ``lines[n - 1]`` is line ``n``."""
    return split_lines(read_text(path, what))
