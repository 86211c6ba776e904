"""The procedural shapes set: seeded, truthful captions, no held-out pair while fitting, and its ground truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.runner import run_benchmark
from align.data.shapes import Shapes
from align.data.shapes_grammar import NUMBER_WORDS, PHRASINGS
from align.data.shapes_scene import (
    ATTRIBUTES,
    COLOURS,
    HELD_OUT,
    KINDS,
    Scene,
    combinations,
    draw_scene,
)
from align.data.shapes_truth import swaps
from align.errors import BadInputError, UnknownNameError
from align.features.cache import FeatureCache
from align.registry import DATASETS

SMALL = {"train_size": 300}


def small(name: str = "shapes", seed: int = 0) -> Shapes:
    return DATASETS.create(name, seed=seed, **SMALL)


def pixels(dataset: Shapes, split: str, items: range) -> list[bytes]:
    built = dataset.load(split)
    return [np.asarray(built.load_image(i)).tobytes() for i in items]


def test_same_seed_same_set_other_seed_other_set() -> None:
    a, b, c = small(seed=0), small(seed=0), small(seed=1)
    assert pixels(a, "test@20", range(20)) == pixels(b, "test@20", range(20))
    assert a.load("train").captions == b.load("train").captions
    assert a.load("train").item_ids == b.load("train").item_ids
    assert pixels(a, "test@20", range(20)) != pixels(c, "test@20", range(20))
    assert a.version != c.version
    # a scene depends on its index and the seed only
    assert draw_scene(0, "shapes3", 7, 3) == draw_scene(0, "shapes3", 7, 3) != draw_scene(0, "shapes3", 8, 3)


def test_images_are_rgb_and_show_their_shapes_colours() -> None:
    dataset = small("shapes.single")
    scenes = dataset.scenes("test")[:30]
    split = dataset.load("test")
    for i, scene in enumerate(scenes):
        image = np.asarray(split.load_image(i), dtype=np.int64)
        assert image.shape == (96, 96, 3)
        shape = scene.shapes[0]
        want = np.clip(np.array(COLOURS[shape.colour]) + np.array(shape.shade), 0, 255)
        assert (np.abs(image - want).max(axis=-1) <= 1).sum() > 30  # the shape's own colour is painted


def test_every_image_has_seven_true_captions_in_several_phrasings() -> None:
    split = small().load("test")
    scenes = small().scenes("test")
    assert len(PHRASINGS) >= 5
    for scene, caps in zip(scenes[:200], split.captions[:200]):
        assert len(caps) == len(PHRASINGS) >= 5 and len(set(caps)) == len(caps)
        for caption in caps:
            for shape in scene.shapes:  # every caption names each shape's colour and kind
                assert re.search(rf"\b{shape.colour}\b", caption) and re.search(rf"\b{shape.shape}\b", caption)
            named = {k for k in KINDS if re.search(rf"\b{k}\b", caption)}
            assert named == {s.shape for s in scene.shapes}  # and no other kind
        first = caps[0]  # the fullest caption names every attribute
        for shape in scene.shapes:
            assert all(shape.get(a) in first for a in ATTRIBUTES)
    starts = {caps[k].split()[0] for caps in split.captions for k in range(len(PHRASINGS))}
    assert len(starts) >= 4  # phrasings do not all start alike
    assert all(c.startswith(f"{NUMBER_WORDS[len(s.shapes) - 1]} shape") for s, c in
               zip(scenes, (caps[2] for caps in split.captions)))
    assert "an orange" in " ".join(c for caps in split.captions for c in caps)  # articles agree


def test_compositional_pairs_never_occur_while_fitting() -> None:
    for name in ("shapes", "shapes.single"):
        dataset = small(name)
        seen = set().union(*(combinations(dataset.scenes(s)) for s in ("train", "val", "test")))
        assert not seen & HELD_OUT
        assert len(seen) == len(COLOURS) * len(KINDS) - len(HELD_OUT)  # every other pair is shown
        novel = dataset.scenes("test_compositional")
        assert novel and all(combinations([scene]) & HELD_OUT for scene in novel)
        ids = {s: set(dataset.load(s).item_ids) for s in dataset.splits}
        assert all(not ids[a] & ids[b] for a in ids for b in ids if a < b)  # no scene in two splits
    # the .compositional variant's test is the held-out split, with the same train
    base, variant = small("shapes"), small("shapes.compositional")
    assert variant.load("test").captions == base.load("test_compositional").captions
    assert variant.load("train").item_ids == base.load("train").item_ids
    with pytest.raises(UnknownNameError, match="no split .test_compositional."):
        variant.load("test_compositional")


def test_label_sets_say_what_the_image_shows() -> None:
    single = small("shapes.single")
    split = single.load("test")
    for i, scene in enumerate(single.scenes("test")):
        (shape,) = scene.shapes
        for name in ("colour", "shape", "size", "position"):
            labels = split.label_set(name)
            assert labels.class_names[labels.labels[i]] == shape.get(name)
            assert all("{c}" in t for t in labels.templates)
    multi = small("shapes")
    counts = multi.load("test").label_set("count")
    assert [counts.class_names[k] for k in counts.labels[:50]] == [
        f"{NUMBER_WORDS[len(s.shapes) - 1]} shape{'s' * (len(s.shapes) > 1)}" for s in multi.scenes("test")[:50]]
    assert set(counts.labels) == {0, 1, 2}


def _differences(a: Scene, b: Scene) -> list[tuple[str, str, str]]:
    """(attribute, a's value, b's value) for every attribute where shapes of the same kind differ; the
    kind itself when a kind is replaced."""
    a_kinds, b_kinds = {s.shape: s for s in a.shapes}, {s.shape: s for s in b.shapes}
    if len(a_kinds) != len(b_kinds) or len(set(a_kinds) - set(b_kinds)) > 1:
        return [("count or kinds", "", "")] * 2  # more than one difference
    if set(a_kinds) != set(b_kinds):
        (gone,), (new,) = set(a_kinds) - set(b_kinds), set(b_kinds) - set(a_kinds)
        rest = [(attr, a_kinds[gone].get(attr), b_kinds[new].get(attr)) for attr in ATTRIBUTES if attr != "shape"
                if a_kinds[gone].get(attr) != b_kinds[new].get(attr)]
        common = [(attr, a_kinds[k].get(attr), b_kinds[k].get(attr)) for k in a_kinds if k in b_kinds
                  for attr in ATTRIBUTES if a_kinds[k].get(attr) != b_kinds[k].get(attr)]
        return [("shape", gone, new), *rest, *common]
    return [(attr, a_kinds[k].get(attr), b_kinds[k].get(attr)) for k in sorted(a_kinds)
            for attr in ATTRIBUTES if a_kinds[k].get(attr) != b_kinds[k].get(attr)]


@pytest.mark.parametrize("name,count", [("shapes", 2000), ("shapes.single", 300)])
def test_arithmetic_targets_differ_by_exactly_the_swapped_attribute(name: str, count: int) -> None:
    scenes = small(name).scenes("test")[:count]
    found = swaps(scenes, scenes)
    if count == len(small(name).scenes("test")):
        assert found == small(name).arithmetic("test")
    assert len(found) > 100
    assert {s.attribute for s in found} == set(ATTRIBUTES)
    for swap in found:
        source, target = scenes[swap.source], scenes[swap.target]
        assert _differences(source, target) == [(swap.attribute, swap.old, swap.new)]
        assert source.shapes[swap.shape].get(swap.attribute) == swap.old
    # completeness on a sample: every pair that differs by one attribute is found
    pairs = {(s.source, s.target) for s in found}
    for i in range(0, len(scenes), 97):
        for j in range(len(scenes)):
            if len(_differences(scenes[i], scenes[j])) == 1:
                assert (i, j) in pairs, (scenes[i], scenes[j])


def test_arithmetic_reaches_held_out_pairs_from_seen_ones() -> None:
    dataset = small("shapes.single")
    found = dataset.arithmetic("test", "test_compositional")
    novel = dataset.scenes("test_compositional")
    assert found and all((novel[s.target].shapes[0].colour, novel[s.target].shapes[0].shape) in HELD_OUT
                         for s in found)
    assert {s.attribute for s in found} == {"colour", "shape"}  # only those can make a held-out pair


def test_questions_have_right_one_word_answers() -> None:
    dataset = small()
    scenes = dataset.scenes("test")
    asked = dataset.questions("test")
    assert {q.attribute for q in asked} == {"count", "colour", "size", "shape"}
    assert all(" " not in q.answer for q in asked)
    for q in asked:
        scene = scenes[q.item]
        if q.attribute == "count":
            assert q.answer == NUMBER_WORDS[len(scene.shapes) - 1]
            continue
        kind = re.fullmatch(r"what (?:colour|size) is the (\w+)\?", q.question)
        if kind:
            (shape,) = [s for s in scene.shapes if s.shape == kind[1]]
            assert q.answer == shape.get(q.attribute)
        elif q.question.startswith("what shape is "):
            (shape,) = [s for s in scene.shapes if q.question == f"what shape is {s.position}?"]
            assert q.answer == shape.shape
        else:
            colour = re.fullmatch(r"which shape is (\w+)\?", q.question)[1]
            (shape,) = [s for s in scene.shapes if s.colour == colour]  # asked only when one shape has it
            assert q.answer == shape.shape
    assert sum(q.item == 0 for q in asked) >= 1 + 3 * len(scenes[0].shapes)


def test_bad_options_are_one_line_errors() -> None:
    for options, message in (({"seed": -1}, "seed must be"), ({"train_size": 0}, "train_size must be")):
        with pytest.raises(BadInputError, match=message) as info:
            DATASETS.create("shapes", **options)
        assert "\n" not in str(info.value)
    with pytest.raises(BadInputError, match="plain split name"):
        small().scenes("test@5")


CONFIG = """
name: shapes-toy
seeds: [0]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge, procrustes]
datasets:
  - {name: shapes, fit: train@120, eval: test@40, options: {train_size: 300}, tasks: [zeroshot_retrieval]}
  - {name: shapes, fit: train@120, eval: test@40, options: {train_size: 300}, eval_dataset: shapes.compositional,
     tasks: [zeroshot_retrieval]}
  - {name: shapes, fit: train@120, eval: test@40, options: {train_size: 300}, eval_dataset: shapes.single,
     label_set: colour, tasks: [zeroshot_classification]}
"""


def test_a_tiny_benchmark_scores_seen_and_held_out_pairs_side_by_side(tmp_path: Path) -> None:
    from align.bench.report.leaderboard import write_report

    path = tmp_path / "shapes.yaml"
    path.write_text(CONFIG)
    results = tmp_path / "results"
    summary = run_benchmark(load_config(path), results, bank=FeatureBank(FeatureCache(tmp_path / "f"), progress=False),
                            echo=lambda _: None)
    assert summary.written == 2 * 3
    records = [json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))]
    scored = {(r["model"], (r.get("shift") or {}).get("eval", ""), r["task"]) for r in records}
    assert ("ridge", "shapes.compositional", "zeroshot_retrieval") in scored
    assert ("procrustes", "", "zeroshot_retrieval") in scored
    table = write_report(results)
    assert "| shapes | zeroshot_retrieval |" in table and "| shapes→shapes.compositional | zeroshot_retrieval |" in table
    assert "shapes→shapes.single/colour" in table
