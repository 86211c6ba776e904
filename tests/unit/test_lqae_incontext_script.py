"""benchmarks/lqae_incontext.py's bookkeeping: strings from a study run's sealed codes, the same episodes
for every model, saved cells reused until their run changes, and claims with paired intervals."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from align.eval.items import CodeItems
from bench_scripts import load_benchmark
from incontext_fakes import CharTokenizer, CopyReader

script = load_benchmark("lqae_incontext")
common = load_benchmark("_common")

TOKENS = [f"w{i}" for i in range(64)]


BERT_TOKENS = [f"b{i}" for i in range(64)]  # the table the BERT arm's codes index (its key names it)
CODE_TABLES = {"toy-bert": SimpleNamespace(tokens=BERT_TOKENS, tokenizer=None)}


def save_run(runs: Path, model: str, seed: int, codes: np.ndarray, labels: np.ndarray,
             table: str | None = None) -> None:
    """A study run as lqae_study.py saves it: its JSON (keyed by its hyper-parameters, ``table`` among them
    where given) and its sealed per-item codes."""
    path = runs / "toyset" / model / f"seed{seed}.json"
    key = {"model": model, "seed": seed, "codes": codes.tolist()} | ({"table": table} if table else {})
    common.cached_run(path, key, lambda: {common.PER_ITEM: {"codes": CodeItems(codes, labels, seed)}}, items=True)


def study(runs: Path) -> None:
    """Classes written with their own words (LQAE, the VQ-VAE) or with words drawn at random per image."""
    labels = np.repeat(np.arange(4), 12)
    rng = np.random.default_rng(0)
    by_class = (labels[:, None] * 4 + np.arange(4)[None]).astype(np.int64)  # one string a class
    for seed in (0, 1):
        save_run(runs, "lqae", seed, by_class, labels)
        save_run(runs, "vq-vae", seed, by_class, labels)
        save_run(runs, "lqae-bert", seed, by_class, labels, table="toy-bert")
        for model in ("random-table", "lqae-lm-off"):
            save_run(runs, model, seed, rng.integers(0, 64, size=(48, 4)), labels)


def score_all(args: Namespace, reader: CopyReader) -> dict:
    table = SimpleNamespace(tokens=TOKENS, tokenizer=reader.tokenizer)
    cells: dict = {}
    for model in (*script.MODELS, script.SHUFFLED):
        for seed in (0, 1):
            cell = script.score_cell(args, lambda: reader, table, "toyset", "2x1", model, seed, CODE_TABLES.get)
            cells.setdefault("toyset", {}).setdefault("2x1", {}).setdefault(model, {})[seed] = cell
    return cells


def test_a_reader_of_class_words_beats_random_words_and_its_shuffled_control(tmp_path: Path) -> None:
    study(tmp_path / "runs")
    args = Namespace(runs=tmp_path / "runs", out=tmp_path / "out", episodes=60, queries=3, episode_seed=0,
                     lm="fake", saved_only=False)
    reader = CopyReader(CharTokenizer())
    cells = score_all(args, reader)
    by_model = cells["toyset"]["2x1"]
    assert all(c["accuracy"] == 1.0 for c in by_model["lqae"].values())
    assert all(c["accuracy"] == 1.0 for c in by_model["lqae-bert"].values())
    assert all(0.3 < c["accuracy"] < 0.7 for c in by_model["random-table"].values())
    assert all(0.3 < c["accuracy"] < 0.7 for c in by_model[script.SHUFFLED].values())
    text = script.report(args, cells)
    claims = {line.split("|")[1].strip(): line for line in text.splitlines() if " − " in line}
    assert "higher (better)" in claims["lqae − random-table"]
    assert "higher (better)" in claims[f"lqae − {script.SHUFFLED}"]
    assert "cannot be told apart" in claims["lqae − vq-vae"]  # the same strings: a zero difference
    assert "| chance | 0.500 |" in text

    passes = reader.passes
    score_all(args, reader)
    assert reader.passes == passes  # every cell saved: nothing scored again
    labels = np.repeat(np.arange(4), 12)
    save_run(args.runs, "lqae", 0, np.zeros((48, 4), dtype=np.int64), labels)  # the run changed
    again = score_all(args, reader)
    assert reader.passes == passes + 60 * 4 * 2  # lqae and its shuffled control, seed 0: 60 episodes, 1 + 3 passes
    assert again["toyset"]["2x1"]["lqae"][0]["accuracy"] < 1.0


def test_every_model_gets_the_same_episodes(tmp_path: Path, monkeypatch) -> None:
    study(tmp_path / "runs")
    args = Namespace(runs=tmp_path / "runs", out=tmp_path / "out", episodes=5, queries=2, episode_seed=3,
                     lm="fake", saved_only=False)
    seen: list[list] = []
    real = script.__dict__.get("score_episodes")
    import align.eval.incontext as incontext

    def spy(lm, tokenizer, texts, episodes, n_way):
        seen.append([(e.support, e.queries) for e in episodes])
        return np.ones((len(episodes), 2), dtype=bool)

    monkeypatch.setattr(incontext, "score_episodes", spy)
    score_all(args, CopyReader(CharTokenizer()))
    assert real is None and len(seen) == 12 and all(s == seen[0] for s in seen)


def test_a_run_on_another_table_is_written_in_that_tables_tokens(tmp_path: Path, monkeypatch) -> None:
    """The BERT arm quantises onto MiniLM's table: its codes are MiniLM row ids, so its strings must be
    MiniLM's tokens (the reader then tokenizes them its own way), never the reader's rows of the same ids."""
    study(tmp_path / "runs")
    args = Namespace(runs=tmp_path / "runs", out=tmp_path / "out", episodes=2, queries=1, episode_seed=0,
                     lm="fake", saved_only=False)
    texts: dict[str, list[str]] = {}
    import align.eval.incontext as incontext

    def spy(lm, tokenizer, strings, episodes, n_way):
        texts.setdefault("seen", []).extend(strings)
        return np.ones((len(episodes), 1), dtype=bool)

    monkeypatch.setattr(incontext, "score_episodes", spy)
    reader_table = SimpleNamespace(tokens=TOKENS, tokenizer=CharTokenizer())
    script.score_cell(args, lambda: None, reader_table, "toyset", "2x1", "lqae-bert", 0, CODE_TABLES.get)
    assert texts["seen"] and all(t.split()[0].startswith("b") for t in texts["seen"])
    with pytest.raises(SystemExit, match="toy-bert"):
        script.score_cell(args, lambda: None, reader_table, "toyset", "2x3", "lqae-bert", 0)


def test_the_procedural_sets_run_is_read_under_each_attribute(tmp_path: Path) -> None:
    """``shapes:colour`` is the run on shapes with each test image labelled by its colour (the split the
    study scored, rendered again), ``shapes:shape`` by its kind; an unknown attribute or dataset is refused."""
    import align.data  # noqa: F401
    from align.registry import DATASETS

    runs = tmp_path / "runs"
    kinds = np.arange(40) % 4
    path = runs / "shapes" / "lqae" / "seed0.json"
    common.cached_run(path, {"model": "lqae"}, lambda: {common.PER_ITEM: {"codes": CodeItems(
        np.zeros((40, 4), dtype=np.int64), kinds, 0)}}, items=True)
    split = DATASETS.create("shapes.single").load("test@40")
    colour = script.study_codes(runs, "shapes:colour", "lqae", 0)
    assert np.array_equal(colour.labels, split.extra_labels["colour"].labels)
    assert not np.array_equal(colour.labels, kinds)
    assert np.array_equal(script.study_codes(runs, "shapes:shape", "lqae", 0).labels,
                          split.extra_labels["shape"].labels)
    assert np.array_equal(script.study_codes(runs, "shapes", "lqae", 0).labels, kinds)  # the run's own labels
    with pytest.raises(SystemExit, match="no attribute 'hue'"):
        script.study_codes(runs, "shapes:hue", "lqae", 0)
    with pytest.raises(SystemExit, match="only the procedural set"):
        script.attribute_labels("toyset", "colour", 40)


def test_a_setting_with_more_ways_than_classes_is_left_out_not_failed(tmp_path: Path) -> None:
    study(tmp_path / "runs")  # four classes
    args = Namespace(runs=tmp_path / "runs", out=tmp_path / "out", episodes=5, queries=2, episode_seed=0,
                     lm="fake", saved_only=False)
    table = SimpleNamespace(tokens=TOKENS, tokenizer=CharTokenizer())
    assert script.score_cell(args, lambda: CopyReader(CharTokenizer()), table, "toyset", "5x1", "lqae", 0) is None
    assert not (args.out / "toyset" / "5x1").exists()
