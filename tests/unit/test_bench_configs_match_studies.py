"""Each `align bench` config that stands for a study trains what that study trained (issues 31 and 32), so a
config edited apart from its study (or a study changed apart from its config) fails here, not in a table
whose numbers quietly stop reproducing the study's: the LQAE configs against benchmarks/lqae_study.py, the
Codebook-VLP config against benchmarks/codebook_vlp_compare.py. Nothing is fitted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from align.bench.plan.config import BenchConfig, load_config
from align.bench.plan.units import build_aligner
from bench_scripts import load_benchmark  # tests/unit/bench_scripts.py

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "configs" / "bench"
LQAE_CONFIGS = ("lqae_compare.yaml", "lqae_compare_fashion_mnist.yaml")  # one per channel count (see their comments)
CODEBOOK_VLP_CONFIG = "codebook_vlp_compare.yaml"
STUDY_PAGE = ROOT / "docs" / "studies" / "tables.md"  # the published studies' reports
CODEBOOK_VLP_STUDY = ROOT / "studies" / "codebook_vlp" / "study" / "study.json"  # the five-arm study's manifest

lqae_study = load_benchmark("lqae_study")
lqae_data = load_benchmark("_lqae_data")
codebook_vlp_study = load_benchmark("codebook_vlp_compare")
codebook_vlp_sets = load_benchmark("_codebook_vlp_sets")  # each dataset's splits


def config(name: str) -> BenchConfig:
    return load_config(BENCH / name)


def published_lqae_choice() -> tuple[float, float]:
    """(LM-loss weight, code-usage weight) the published LQAE study chose on validation: its report's
    "Chosen:" line (lqae_study.report). The choice is made when the study runs, so it is read from its
    report rather than from the script; a rerun that chooses otherwise makes the configs fail here."""
    found = re.findall(r"^Chosen: lm_weight = (\S+), usage_weight = (\S+)\.$", STUDY_PAGE.read_text(), re.M)
    assert len(found) == 1, f"{STUDY_PAGE}: expected one LQAE 'Chosen:' line, found {len(found)}"
    return float(found[0][0]), float(found[0][1])


def differing(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(a.keys() | b.keys())
            if a.get(k, "<absent>") != b.get(k, "<absent>")}


@pytest.mark.parametrize("name", LQAE_CONFIGS)
def test_lqae_bench_entries_train_what_the_study_trains(name: str) -> None:
    """Every aligner entry, on every dataset and seed of its config, builds the same LQAE (all its resolved
    hyper-parameters, seed included, as ``align bench`` builds it) as lqae_study.hparams for the same label,
    dataset and seed at the study's defaults and published choice; and LQAE asks the bench for pixels of
    the channel count the study feeds that dataset with (1 for Fashion-MNIST, 3 for emoji)."""
    from align.methods.lqae.aligner import LQAE

    bench, args, chosen = config(name), lqae_study.parse_args([]), published_lqae_choice()
    assert list(bench.seeds) == args.seeds
    assert [a.display for a in bench.aligners] == list(lqae_study.MAIN)
    for spec in bench.datasets:
        channels = lqae_data.CHANNELS[spec.name]
        for entry in bench.aligners:
            for seed in bench.seeds:
                built = build_aligner(entry.name, entry.hparams, seed)
                study = LQAE(**lqae_study.hparams(entry.display, {"channels": channels}, args, seed, chosen))
                assert built.hparams == study.hparams, (
                    f"{name}: {entry.display} on {spec.name}, seed {seed}: (bench, study) differ in "
                    f"{differing(built.hparams, study.hparams)}")
                assert built.image_input_spec().channels == channels


def test_lqae_bench_configs_cover_the_studys_datasets_on_its_splits() -> None:
    """Together the LQAE configs score each dataset of the study once, fitted and scored on the study's
    images (benchmarks/_lqae_data.load_data: Fashion-MNIST train@--train / test@--test; emoji by
    subcategory, on all its anchors and test emoji, which it subsamples only for a --train / --test below
    their size, and the defaults 960 / 1000 are above it)."""
    args = lqae_study.parse_args([])
    specs = [spec for name in LQAE_CONFIGS for spec in config(name).datasets]
    assert sorted(spec.name for spec in specs) == sorted(args.datasets)
    found = {spec.name: (spec.fit, spec.eval, spec.label_set) for spec in specs}
    assert found["fashion_mnist"] == (f"train@{args.train}", f"test@{args.test}", None)
    assert found["emoji"] == ("anchors", "test", "subcategory")


def test_codebook_vlp_bench_aligners_are_the_studys_arms() -> None:
    """The config's aligner files are the study's arms (VARIANTS), in its order, and read as the study
    reads them (load_variants, which also checks each arm against full.yaml)."""
    bench = config(CODEBOOK_VLP_CONFIG)
    arms = codebook_vlp_study.VARIANTS
    assert bench.raw["aligners"] == [f"configs/codebook_vlp/{file}" for file in arms.values()]
    assert [entry.hparams for entry in bench.aligners] == list(codebook_vlp_study.load_variants().values())
    assert list(bench.seeds) == codebook_vlp_study.SEEDS


def test_codebook_vlp_bench_fits_and_scores_on_the_studys_splits() -> None:
    """Every dataset of the study is in the config, each entry fitted on the study's fit split and scored on
    its eval split; shapes' lone-shape entries on the study's single-shape dataset and split."""
    bench = config(CODEBOOK_VLP_CONFIG)
    assert {spec.name for spec in bench.datasets} == set(codebook_vlp_sets.SPLITS)
    for spec in bench.datasets:
        fit, eval_ = codebook_vlp_sets.SPLITS[spec.name]
        if spec.eval_dataset is not None:
            assert (spec.eval_dataset, spec.eval) == codebook_vlp_sets.SINGLE_SHAPES, spec
        assert spec.fit == fit and (spec.eval_dataset is not None or spec.eval == eval_), spec


def test_codebook_vlp_arms_and_class_default_train_the_epochs_the_study_chose() -> None:
    """Every arm's config, so the bench config, and the class default (what ``codebook_vlp`` gives by name)
    train the epoch count the committed five-arm study chose on validation (``--report`` checks that its
    saved validation runs make the same choice)."""
    from align.methods.codebook_vlp.aligner import CodebookVLPHParams

    chosen = json.loads(CODEBOOK_VLP_STUDY.read_text())["epochs"]
    assert {hp["max_epochs"] for hp in codebook_vlp_study.load_variants().values()} == {chosen}
    assert {entry.hparams["max_epochs"] for entry in config(CODEBOOK_VLP_CONFIG).aligners} == {chosen}
    assert CodebookVLPHParams().max_epochs == chosen
    side_by_side = [e for e in config("all_methods.yaml").aligners if e.name == "codebook_vlp"]
    assert side_by_side and all(e.hparams.get("max_epochs", chosen) == chosen for e in side_by_side)  # README's table
