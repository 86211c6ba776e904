"""Prompt templates shipped as versioned data files (``align/data/templates/<name>.txt``).

One template per line with ``{c}`` where the class name goes; blank lines and lines starting with
``#`` are ignored. Keeping them in files (not code) makes every change visible in review and lets
results record exactly which prompts they used (conventions §4.7).
"""

from __future__ import annotations

import functools
from importlib import resources

from align.data.textfile import read_text, split_lines
from align.errors import BadInputError, UnknownNameError


def parse_templates(text: str, source: str) -> tuple[str, ...]:
    """Templates from the text of a template file; each must contain ``{c}``."""
    templates = []
    for number, line in enumerate(split_lines(text), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{c}" not in line:
            raise BadInputError(f"{source}, line {number}: template without '{{c}}': {line!r}")
        templates.append(line)
    if not templates:
        raise BadInputError(f"{source}: no templates")
    return tuple(templates)


@functools.cache
def load_templates(name: str) -> tuple[str, ...]:
    """The packaged templates called ``name`` (e.g. ``"emoji"``, ``"fashion_mnist"``)."""
    path = resources.files("align.data").joinpath("templates", f"{name}.txt")
    if not path.is_file():
        raise UnknownNameError(f"no packaged templates {name!r} (align/data/templates/{name}.txt)")
    return parse_templates(path.read_text(encoding="utf-8"), f"templates/{name}.txt")


def read_templates(path: str) -> tuple[str, ...]:
    """Templates from a user's file (same format as the packaged ones)."""
    from pathlib import Path

    file = Path(path)
    return parse_templates(read_text(file, "templates file"), str(file))
