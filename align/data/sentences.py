"""Reading a user's text file of sentences, one per line, with row numbers that match the file."""

from __future__ import annotations

from pathlib import Path

from align.errors import BadInputError


def read_sentences(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; an empty line in the middle is an error (it would shift rows)."""
    if not path.is_file():
        raise BadInputError(f"{path}: no such text file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise BadInputError(f"{path}: not UTF-8 text (byte {err.start})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise BadInputError(f"{path}, line {number}: empty sentence")
    if not lines:
        raise BadInputError(f"{path}: no sentences")
    return lines
