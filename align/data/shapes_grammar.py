"""The captions of a ``shapes`` scene: a small grammar with seven phrasings, all of them true.

Every caption names each shape's colour and kind; the phrasings differ in word order, in which other
attributes they name (size, position) and in the order they list the shapes, so a caption loss has
several references per image and a retrieval query cannot be matched by word order alone. The first
caption is the fullest (every attribute of every shape, in reading order): it is the one a benchmark
fits on (:func:`align.bench.execute.features.fit_captions` takes ``captions[i][0]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from align.data.shapes_scene import Scene, Shape

NUMBER_WORDS = ("one", "two", "three")


def _join(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def article(phrase: str) -> str:
    """``a red circle``, ``an orange star``."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _full(s: Shape) -> str:
    return f"a {s.size} {s.colour} {s.shape} {s.position}"


def count_phrase(n: int) -> str:
    """``one shape``, ``two shapes``, ``three shapes``: the class names of the ``count`` label set."""
    return f"{NUMBER_WORDS[n - 1]} shape" + ("" if n == 1 else "s")


def _there_is(scene: Scene) -> str:
    return "there is " + _join([_full(s) for s in scene.shapes])


def _counted(scene: Scene) -> str:
    return f"{count_phrase(len(scene.shapes))}: " + _join([f"a {s.size} {s.colour} {s.shape}" for s in scene.shapes])


def _coloured_at(scene: Scene) -> str:
    return _join([f"{article(s.colour)} {s.shape} {s.position}" for s in reversed(scene.shapes)])


def _place_first(scene: Scene) -> str:
    first, *rest = scene.shapes
    return (f"{first.position} there is a {first.size} {first.colour} {first.shape}"
            + "".join(f", and {s.position} a {s.size} {s.colour} {s.shape}" for s in rest))


def _predicates(scene: Scene) -> str:
    return _join([f"the {s.shape} is {s.colour} and {s.size}" for s in scene.shapes])


def _picture(scene: Scene) -> str:
    return "a picture of " + _join([article(f"{s.colour} {s.shape}") for s in reversed(scene.shapes)])


PHRASINGS: tuple[Callable[[Scene], str], ...] = (
    lambda scene: _join([_full(s) for s in scene.shapes]),  # the fullest first: what a fit reads
    _there_is, _counted, _coloured_at, _place_first, _predicates, _picture,
)


def captions(scene: Scene) -> list[str]:
    """One caption per phrasing, in :data:`PHRASINGS` order (duplicates kept apart: none occur)."""
    return [phrase(scene) for phrase in PHRASINGS]
