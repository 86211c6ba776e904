"""Is drawing a ``shapes`` image on every load cheap? Rendering against decoding the same image as a PNG.

The procedural set (:mod:`align.data.shapes`) is drawn from its seed each time an image is loaded,
instead of being stored. This times both paths over the same scenes in one run: rendering each scene,
and decoding that rendered image from PNG bytes (what a stored copy would cost), best of ``--repeats``,
and prints the ratio.

    python benchmarks/shapes_render_speed.py [--images 200] [--repeats 3] [--output results/shapes_render_speed.md]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py
from align.data.shapes_render import render
from align.registry import DATASETS


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    scenes = DATASETS.create("shapes").scenes("test")[:args.images]
    pngs = []
    for scene in scenes:
        buffer = io.BytesIO()
        render(scene).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    rendered = best_seconds(lambda: [render(scene) for scene in scenes], args.repeats)
    decoded = best_seconds(lambda: [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs], args.repeats)
    rows = [("render from the seed", 1e3 * rendered / len(scenes), rendered / decoded),
            ("decode a stored PNG", 1e3 * decoded / len(scenes), 1.0)]
    lines = [f"`shapes` test images, {len(scenes)} scenes, best of {args.repeats}:", "",
             *markdown_table(["path", "ms / image", "time / PNG decode"], rows, ["", ".3f", ".2f"]), "",
             machine_line()]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
