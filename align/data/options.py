"""Options shared by the user-data loaders (``folder:``, ``manifest:``): templates and class lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from align.data.prompts import load_templates, parse_templates, read_templates
from align.data.textfile import read_lines
from align.errors import BadInputError


def resolve_templates(templates: str | Path | Sequence[str] | None) -> tuple[str, ...]:
    """``None`` → ``templates/default.txt``; a path → that file; a list → those templates."""
    if templates is None:
        return load_templates("default")
    if isinstance(templates, (str, Path)):
        return read_templates(str(templates))
    return parse_templates("\n".join(templates), "templates=")


def resolve_classes(classes: str | Path | Sequence[str] | None) -> tuple[str, ...] | None:
    """``classes=``: a list of names, or a path to a text file with one class per line."""
    if classes is None:
        return None
    if isinstance(classes, (str, Path)):
        path = Path(classes)
        if not path.is_file():
            raise BadInputError(f"{path}: no such classes file (one class name per line)")
        names = [line.strip() for line in read_lines(path, "classes file") if line.strip()]
        source = str(path)
    else:
        names = [str(c).strip() for c in classes]
        source = "classes="
    if not names:
        raise BadInputError(f"{source}: no class names")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadInputError(f"{source}: duplicate class names: {', '.join(duplicates)}")
    return tuple(names)
