"""Scenes of the ``shapes`` set: what each image shows, drawn from a seed, and which splits they go to.

A scene is one to three shapes, each with a colour, a shape kind, a size and a cell of a 3x3 grid; no
two shapes of a scene share a kind or a cell, so "the circle" and "the shape at the top left" always
name one shape (the questions rely on it). Every scene also carries small pixel jitter (offset, shade),
so two scenes with the same attributes are not pixel-identical images.

Scene ``i`` of a stream is drawn from the bytes of ``sha512(f"{seed}:{prefix}:{i}")``: it does not
depend on any other scene, on the platform or on the Python version.

Composition: :data:`HELD_OUT` (colour, shape) pairs never occur in ``train``, ``val`` or ``test``; a
scene with at least one of them goes to ``test_compositional`` and nowhere else (:func:`route`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230),
    "yellow": (235, 215, 40), "purple": (150, 60, 200), "orange": (245, 140, 30),
}
KINDS = ("circle", "square", "triangle", "star")
SIZES = ("small", "large")
# 3x3 grid cells in reading order, named as the phrase a caption uses
POSITIONS = ("at the top left", "at the top", "at the top right", "on the left", "in the center",
             "on the right", "at the bottom left", "at the bottom", "at the bottom right")
ATTRIBUTES = ("colour", "shape", "size", "position")
# colour i with kind i mod 4: each colour loses one kind, each kind keeps at least four colours
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    (colour, KINDS[i % len(KINDS)]) for i, colour in enumerate(COLOURS))
JITTER = 3  # pixels of offset either way inside a cell
SHADE = 15  # per-channel shade change either way


@dataclass(frozen=True)
class Shape:
    """One shape: its attributes (what captions, labels and questions say) and its pixel jitter."""

    colour: str
    shape: str
    size: str
    position: str
    dx: int = 0
    dy: int = 0
    shade: tuple[int, int, int] = (0, 0, 0)

    def attributes(self) -> tuple[str, str, str, str]:
        """``(colour, shape, size, position)``: what the shape is, without its jitter."""
        return (self.colour, self.shape, self.size, self.position)

    def get(self, attribute: str) -> str:
        return getattr(self, attribute)


@dataclass(frozen=True)
class Scene:
    """An image's content: its shapes in reading order (by grid cell)."""

    shapes: tuple[Shape, ...]

    def signature(self) -> tuple[tuple[str, str, str, str], ...]:
        """The attributes of every shape, without jitter: equal signatures = same captions, labels, answers."""
        return tuple(s.attributes() for s in self.shapes)

    def is_novel(self) -> bool:
        """Whether a shape of this scene is a held-out (colour, shape) pair."""
        return any((s.colour, s.shape) in HELD_OUT for s in self.shapes)


class _Draws:
    """Integers read from ``sha512(f"{seed}:{prefix}:{index}")``, two bytes at a time: 32 draws per scene,
    ten times faster than seeding a ``random.Random`` per scene (the modulo bias is below 1e-4)."""

    def __init__(self, seed: int, prefix: str, index: int) -> None:
        self._values = iter(struct.unpack(">32H", hashlib.sha512(f"{seed}:{prefix}:{index}".encode()).digest()))

    def below(self, n: int) -> int:
        """A draw from ``range(n)``."""
        return next(self._values) % n

    def between(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)

    def pick(self, options: list[Any]) -> Any:
        """Remove and return a draw from ``options`` (sampling without replacement)."""
        return options.pop(self.below(len(options)))


def draw_scene(seed: int, prefix: str, index: int, max_shapes: int) -> Scene:
    """Scene ``index`` of the stream ``(seed, prefix)``: 1 to ``max_shapes`` shapes (at most 3: one draw
    stream has room for three)."""
    if not 1 <= max_shapes <= 3:
        raise ValueError(f"max_shapes must be 1, 2 or 3, not {max_shapes}")
    draws = _Draws(seed, prefix, index)
    count = draws.between(1, max_shapes)
    kinds, cells = list(KINDS), list(range(len(POSITIONS)))
    chosen = sorted((draws.pick(cells), draws.pick(kinds)) for _ in range(count))
    shapes = tuple(Shape(colour=tuple(COLOURS)[draws.below(len(COLOURS))], shape=kind,
                         size=SIZES[draws.below(len(SIZES))], position=POSITIONS[cell],
                         dx=draws.between(-JITTER, JITTER), dy=draws.between(-JITTER, JITTER),
                         shade=(draws.between(-SHADE, SHADE), draws.between(-SHADE, SHADE),
                                draws.between(-SHADE, SHADE)))
                   for cell, kind in chosen)
    return Scene(shapes)


@dataclass(frozen=True)
class Routed:
    """The scenes of each split, with their stream indices (the item ids)."""

    splits: dict[str, tuple[tuple[int, Scene], ...]]


def route(seed: int, prefix: str, max_shapes: int, sizes: dict[str, int]) -> Routed:
    """Draw scenes in stream order until every split is full: held-out scenes fill ``test_compositional``,
    the others ``test``, then ``val``, then ``train`` (surplus scenes of a full side are skipped)."""
    seen_order = ("test", "val", "train")
    need_seen = sum(sizes[s] for s in seen_order)
    seen: list[tuple[int, Scene]] = []
    novel: list[tuple[int, Scene]] = []
    index = 0
    while len(seen) < need_seen or len(novel) < sizes["test_compositional"]:
        scene = draw_scene(seed, prefix, index, max_shapes)
        side, full = (novel, sizes["test_compositional"]) if scene.is_novel() else (seen, need_seen)
        if len(side) < full:
            side.append((index, scene))
        index += 1
    splits: dict[str, tuple[tuple[int, Scene], ...]] = {"test_compositional": tuple(novel)}
    start = 0
    for name in seen_order:
        splits[name] = tuple(seen[start:start + sizes[name]])
        start += sizes[name]
    return Routed(splits)


def combinations(scenes: Sequence[Scene]) -> set[tuple[str, str]]:
    """Every (colour, shape) pair the scenes show."""
    return {(s.colour, s.shape) for scene in scenes for s in scene.shapes}
