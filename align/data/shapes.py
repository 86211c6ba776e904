"""``shapes``: a procedural captioned set, drawn on the fly from a seed, with ground truth for composition.

Each image (96x96 RGB, :mod:`align.data.shapes_render`) shows one to three shapes; each shape has a
colour (6), a kind (circle, square, triangle, star), a size (small, large) and a cell of a 3x3 grid
(:mod:`align.data.shapes_scene`). Each image has seven captions from a small grammar
(:mod:`align.data.shapes_grammar`), the fullest first.

Four registered names, one recipe:
- ``shapes``: 1-3 shapes per image; label set ``count`` (one / two / three shapes).
- ``shapes.single``: one shape per image; label sets ``colour``, ``shape``, ``size``, ``position`` (one
  shape, so every attribute is a clean zero-shot class).
- ``shapes.compositional`` and ``shapes.single.compositional``: the same sets, whose ``test`` split is
  their ``test_compositional``, so that a benchmark entry can fit on ``shapes`` and score the held-out
  combinations as a shifted evaluation (``eval_dataset``) beside the seen ``test``.

Splits: ``train`` (20,000 by default), ``val`` (2,000), ``test`` (2,000) show only seen (colour, shape)
pairs; ``test_compositional`` (2,000) shows at least one of the six held-out pairs
(:data:`align.data.shapes_scene.HELD_OUT`) in every image: 26,000 image-caption sets, 182,000 captions.
Every split also answers ``NAME@N``. Item ids are the scenes' stream indices.

Beyond the split: :meth:`Shapes.scenes` (what each image shows), :meth:`Shapes.arithmetic` (visual
arithmetic ground truth) and :meth:`Shapes.questions` (one-word attribute questions); see
:mod:`align.data.shapes_truth`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image

from align.data.base import Dataset, DatasetSplit, LabelSet
from align.data.prompts import load_templates
from align.data.shapes_grammar import NUMBER_WORDS, captions, count_phrase
from align.data.shapes_render import render
from align.data.shapes_scene import COLOURS, KINDS, POSITIONS, SIZES, Scene, route
from align.data.shapes_truth import Question, Swap, questions, swaps
from align.errors import BadInputError
from align.registry import DATASETS

RECIPE = "r1"
SPLITS = ("train", "val", "test", "test_compositional")
SIZES_DEFAULT = {"train": 20_000, "val": 2_000, "test": 2_000, "test_compositional": 2_000}
MAX_TRAIN = 200_000
CLASSES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS), "shape": KINDS, "size": SIZES, "position": POSITIONS,
    "count": tuple(count_phrase(n) for n in range(1, len(NUMBER_WORDS) + 1)),
}


@functools.lru_cache(maxsize=8)
def _routed(seed: int, max_shapes: int, train_size: int) -> dict[str, tuple[tuple[int, Scene], ...]]:
    sizes = {**SIZES_DEFAULT, "train": train_size}
    return route(seed, f"shapes{max_shapes}", max_shapes, sizes).splits


class Shapes(Dataset):
    """One variant of the set (see the module docstring)."""

    splits = SPLITS
    label_sets = None  # per variant: set on the instance (count, or the four attributes)

    def __init__(self, *, name: str, max_shapes: int, compositional: bool, seed: int = 0,
                 train_size: int = SIZES_DEFAULT["train"]) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise BadInputError(f"dataset {name!r}: seed must be a non-negative integer, got {seed!r}")
        if isinstance(train_size, bool) or not isinstance(train_size, int) or not 1 <= train_size <= MAX_TRAIN:
            raise BadInputError(f"dataset {name!r}: train_size must be an integer from 1 to {MAX_TRAIN}, got {train_size!r}")
        self.name = name
        self.max_shapes = max_shapes
        self.compositional = compositional
        self.seed = seed
        self.train_size = train_size
        self.splits = ("train", "val", "test") if compositional else SPLITS
        self.label_sets = ("count",) if max_shapes > 1 else ("colour", "shape", "size", "position")

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"shapes-{RECIPE}-max{self.max_shapes}-seed{self.seed}-train{self.train_size}"

    def _source_split(self, split: str) -> str:
        """The routed split behind ``split``: a compositional variant's ``test`` is ``test_compositional``."""
        return "test_compositional" if self.compositional and split == "test" else split

    def scenes(self, split: str) -> list[Scene]:
        """What each image of ``split`` (a plain split name) shows, in item order."""
        base, n = self.check_split(split)
        if n is not None:
            raise BadInputError(f"dataset {self.name!r}: scenes of {split!r}: use the plain split name "
                                "and the split's item_ids to follow a subsample")
        return [scene for _, scene in _routed(self.seed, self.max_shapes, self.train_size)[self._source_split(base)]]

    def arithmetic(self, split: str, target_split: str | None = None) -> list[Swap]:
        """Visual arithmetic ground truth: images of ``target_split`` (default: ``split`` itself) that are an
        image of ``split`` with one attribute of one shape swapped."""
        return swaps(self.scenes(split), self.scenes(target_split or split))

    def questions(self, split: str) -> list[Question]:
        """One-word attribute questions about the images of ``split``."""
        return questions(self.scenes(split))

    def build_split(self, split: str) -> DatasetSplit:
        routed = _routed(self.seed, self.max_shapes, self.train_size)[self._source_split(split)]
        scenes = [scene for _, scene in routed]

        def load_image(i: int) -> Image.Image:
            return render(scenes[i])

        extra = {name: LabelSet(_labels(scenes, name), CLASSES[name], load_templates(f"shapes_{name}"))
                 for name in self.label_sets}
        return DatasetSplit(
            dataset=self.name, split=split, version=self.version, num_items=len(scenes), load_image=load_image,
            captions=[captions(scene) for scene in scenes], extra_labels=extra,
            item_ids=[str(index) for index, _ in routed],
        )


def _labels(scenes: Sequence[Scene], name: str) -> np.ndarray:
    """Class indices of label set ``name``: the count, or the attribute of a single-shape scene's shape."""
    if name == "count":
        return np.array([len(s.shapes) - 1 for s in scenes], dtype=np.int64)
    classes = CLASSES[name]
    return np.array([classes.index(s.shapes[0].get(name)) for s in scenes], dtype=np.int64)


def _register(name: str, max_shapes: int, compositional: bool, what: str) -> None:
    def factory(seed: int = 0, train_size: int = SIZES_DEFAULT["train"]) -> Shapes:
        """``seed`` draws another set; ``train_size`` changes how many seen scenes ``train`` holds."""
        return Shapes(name=name, max_shapes=max_shapes, compositional=compositional, seed=seed,
                      train_size=train_size)

    DATASETS.add(name, factory, license="generated (align)", description=what)


_register("shapes", 3, False, "procedural 96x96 images of 1-3 coloured shapes, 7 captions each; "
          "train/val/test (seen colour-shape pairs) and test_compositional (held-out pairs)")
_register("shapes.single", 1, False, "shapes with one shape per image: colour, shape, size and position label sets")
_register("shapes.compositional", 3, True, "shapes whose test split is the held-out colour-shape pairs")
_register("shapes.single.compositional", 1, True,
          "shapes.single whose test split is the held-out colour-shape pairs")
