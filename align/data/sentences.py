"""Reading a user's text file of sentences, one per line, with row numbers that match the file."""

from __future__ import annotations

from pathlib import Path

from align.data.textfile import read_lines
from align.errors import BadInputError


def read_sentences(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; an empty line in the middle is an error (it would shift rows).
    Lines end at ``\n`` only: form feeds or Unicode line separators inside a sentence stay in it."""
    lines = read_lines(path)  # split at "\n" only, so row n is line n of the file
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise BadInputError(f"{path}, line {number}: empty sentence")
    if not lines:
        raise BadInputError(f"{path}: no sentences")
    return lines
