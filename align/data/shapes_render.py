"""Draw a ``shapes`` scene as a 96x96 RGB image with PIL: fast enough to render on every load (~0.1 ms).

The image is a 3x3 grid of 32-pixel cells on a dark grey background; a large shape spans about 26
pixels of its cell, a small one about 14, each moved by its jitter and drawn in its colour's shade.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from align.data.shapes_scene import COLOURS, POSITIONS, Scene, Shape

SIZE = 96
CELL = SIZE // 3
BACKGROUND = (40, 40, 40)
HALF_WIDTH = {"small": 7, "large": 13}


def _fill(shape: Shape) -> tuple[int, int, int]:
    base = COLOURS[shape.colour]
    r, g, b = (min(255, max(0, c + d)) for c, d in zip(base, shape.shade))
    return (r, g, b)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    cell = POSITIONS.index(shape.position)
    cx = (cell % 3) * CELL + CELL / 2 + shape.dx
    cy = (cell // 3) * CELL + CELL / 2 + shape.dy
    r = HALF_WIDTH[shape.size]
    fill = _fill(shape)
    if shape.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape.shape == "square":
        s = r * 0.9  # a square of the same half-width looks larger than the circle
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape.shape == "star":
        draw.polygon(_star(cx, cy + r * 0.1, r * 1.1), fill=fill)
    else:
        raise ValueError(f"no drawing for shape kind {shape.shape!r}")


def render(scene: Scene) -> Image.Image:
    """The scene's RGB image."""
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        _draw(draw, shape)
    return image
