"""Ground truth beyond captions for ``shapes`` scenes: visual arithmetic and one-word attribute questions.

Arithmetic: image ``j`` answers ``image i - old word + new word`` when scene ``j`` is scene ``i`` with one
attribute of one shape changed from ``old`` to ``new`` and everything else equal (attributes of every
shape, not jitter). Sources and targets may come from different splits: a seen source whose swap
makes a held-out (colour, shape) pair finds its target in ``test_compositional``. A swap that would give
two shapes one kind or one cell never has a target (scenes never show that).

Questions: each scene gets "how many shapes are there?" and, per shape, its colour and size asked by
its kind ("what colour is the circle?") and its kind asked by its place ("what shape is on the left?");
"which shape is red?" only where one shape has that colour. Every answer is one word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from align.data.shapes_grammar import NUMBER_WORDS
from align.data.shapes_scene import ATTRIBUTES, Scene


@dataclass(frozen=True)
class Swap:
    """``targets[target]`` = ``sources[source]`` with shape ``shape``'s ``attribute`` changed ``old`` -> ``new``."""

    source: int
    target: int
    shape: int  # index of the changed shape in the source scene (reading order)
    attribute: str  # one of ATTRIBUTES
    old: str
    new: str


@dataclass(frozen=True)
class Question:
    """A question about image ``item`` with its one-word answer."""

    item: int
    question: str
    answer: str
    attribute: str  # what it asks: count, colour, size, shape


def _differ_by_one(a: Scene, b: Scene) -> tuple[int, str, str, str] | None:
    """``(shape, attribute, old, new)`` when ``b`` is ``a`` with exactly one attribute of one shape changed."""
    if len(a.shapes) != len(b.shapes):
        return None
    # a position swap may reorder shapes (reading order): match shapes by the attributes that stayed
    a_attrs, b_attrs = a.signature(), b.signature()
    for k, attribute in enumerate(ATTRIBUTES):
        rest_a = sorted(t[:k] + t[k + 1:] for t in a_attrs)
        rest_b = sorted(t[:k] + t[k + 1:] for t in b_attrs)
        if rest_a != rest_b:
            continue
        changed_a = sorted(set(a_attrs) - set(b_attrs))
        changed_b = sorted(set(b_attrs) - set(a_attrs))
        if len(changed_a) == 1 and len(changed_b) == 1:
            old, new = changed_a[0], changed_b[0]
            if old[:k] + old[k + 1:] == new[:k] + new[k + 1:]:
                return a_attrs.index(old), attribute, old[k], new[k]
    return None


def swaps(sources: Sequence[Scene], targets: Sequence[Scene]) -> list[Swap]:
    """Every (source, target) pair that differs by exactly one attribute of one shape, in source order.

    Found through an index of the targets by their signature with one attribute of one shape blanked
    out, so it is linear in the number of scenes, not quadratic."""
    blanked: dict[tuple[object, ...], list[int]] = {}
    for j, scene in enumerate(targets):
        for key in _blanks(scene):
            blanked.setdefault(key, []).append(j)
    found = []
    for i, scene in enumerate(sources):
        candidates = sorted({j for key in _blanks(scene) for j in blanked.get(key, ())})
        for j in candidates:
            diff = _differ_by_one(scene, targets[j])
            if diff is not None:
                found.append(Swap(i, j, *diff))
    return found


def _blanks(scene: Scene) -> list[tuple[object, ...]]:
    """The scene's signature with each attribute of each shape in turn replaced by a blank (as a set, so
    that moving a shape, which may reorder the shapes, keeps the key)."""
    attrs = scene.signature()
    keys = []
    for s, shape in enumerate(attrs):
        for k, attribute in enumerate(ATTRIBUTES):
            blank = shape[:k] + ("*",) + shape[k + 1:]
            keys.append((attribute, tuple(sorted(attrs[:s] + (blank,) + attrs[s + 1:]))))
    return keys


def questions(scenes: Sequence[Scene]) -> list[Question]:
    """The questions of every scene, in scene order (see the module docstring)."""
    found = []
    for i, scene in enumerate(scenes):
        found.append(Question(i, "how many shapes are there?", NUMBER_WORDS[len(scene.shapes) - 1], "count"))
        colours = [s.colour for s in scene.shapes]
        for s in scene.shapes:
            found.append(Question(i, f"what colour is the {s.shape}?", s.colour, "colour"))
            found.append(Question(i, f"what size is the {s.shape}?", s.size, "size"))
            found.append(Question(i, f"what shape is {s.position}?", s.shape, "shape"))
            if colours.count(s.colour) == 1:
                found.append(Question(i, f"which shape is {s.colour}?", s.shape, "shape"))
    return found
