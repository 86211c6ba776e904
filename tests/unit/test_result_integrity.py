"""Every number a benchmark run reports came from the settings it names: a result is identified by
everything that produced it, so a rerun into the same folder recomputes a result whose identity changed
(hyper-parameters, weights, dataset version, task options) or whose file is unreadable, and counts it;
a fitted aligner is reused only when it verifies and is the same fit; a diverging fit and a user string
that would escape the results folder are named, not silently used."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from item_checks import assert_items_give_every_metric
from PIL import Image

from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.runner import run_benchmark
from align.checksum import seal
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.errors import AlignError
from align.features.cache import FeatureCache
from align.registry import DATASETS, VISION_ENCODERS

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}


class Squares(Dataset):
    """Noisy colour squares, 16 per split; ``version`` is a class attribute a test may change."""

    name, version, splits = "test-integrity", "1", ("train", "test")

    def build_split(self, split: str) -> DatasetSplit:
        rng = np.random.default_rng(0 if split == "train" else 1)
        names = list(COLOURS)
        labels = np.array([i % 4 for i in range(16)], dtype=np.int64)
        images = [Image.fromarray(np.clip(np.array(COLOURS[names[c]]) + rng.normal(0, 10, (16, 16, 3)), 0, 255)
                                  .astype(np.uint8)) for c in labels]
        return DatasetSplit(dataset=self.name, split=split, version=self.version, num_items=16,
                            load_image=lambda i: images[i], captions=[[f"a {names[c]} square"] for c in labels],
                            labels=LabelSet(labels, names, ("a {c} square.",)))


if "test-integrity" not in DATASETS:
    DATASETS.add("test-integrity", Squares)

CONFIG = """
name: integrity
seeds: [0]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge, {name: procrustes, label: procrustes-8, hparams: {dim: 8}}]
datasets:
  - {name: test-integrity, fit: train, eval: test,
     tasks: [zeroshot_classification, zeroshot_retrieval, linear_probe, fewshot], fewshot_k: 2}
"""


def quiet(_: str) -> None:
    return None


@pytest.fixture
def bench(tmp_path: Path):  # noqa: ANN201
    """``bench(yaml, **kwargs)``: run a config into ``tmp_path/results`` with a feature cache under ``tmp_path``."""
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)

    def run(text: str = CONFIG, **kwargs: Any):  # noqa: ANN202
        path = tmp_path / "bench.yaml"
        path.write_text(text)
        kwargs.setdefault("echo", quiet)
        return run_benchmark(load_config(path), tmp_path / "results", bank=bank, **kwargs)

    return run


def records(root: Path) -> dict[str, dict[str, Any]]:
    """Every result under ``root`` by its path (relative), fitted aligners aside."""
    return {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))
            if "fitted" not in p.parts}


def counts(summary: Any) -> tuple[int, int, int, int]:
    """(written, already there, recomputed as stale, recomputed as unreadable)."""
    return summary.written, summary.skipped, getattr(summary, "stale", None), getattr(summary, "unreadable", None)


# ---- identity: a changed input recomputes exactly the results it produced ------------------------------

def test_changed_hyper_parameters_recompute_their_results(bench, tmp_path: Path) -> None:
    bench()
    summary = bench(CONFIG.replace("dim: 8", "dim: 6"))
    procrustes = [r for r in records(tmp_path / "results").values() if r["model"] == "procrustes-8"]
    assert len(procrustes) == 4 and all(r["hparams"]["dim"] == 6 for r in procrustes)
    assert counts(summary) == (4, 4, 4, 0)


def test_changed_task_option_recomputes_that_task_only(bench, tmp_path: Path) -> None:
    bench()
    summary = bench(CONFIG.replace("fewshot_k: 2", "fewshot_k: 3"))
    fewshot = [r for r in records(tmp_path / "results").values() if r["task"] == "fewshot"]
    assert [r["task_details"]["k"] for r in fewshot] == [3, 3]
    assert counts(summary) == (2, 6, 2, 0)


def test_changed_dataset_version_recomputes_everything(bench, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bench()
    monkeypatch.setattr(Squares, "version", "2")
    summary = bench()
    assert {r["dataset_version"] for r in records(tmp_path / "results").values()} == {"2"}
    assert counts(summary) == (8, 0, 8, 0)


@pytest.fixture
def weighed_encoder(isolated_home: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """``toy:weighed``: toy:cnn behind a one-file catalogue asset; ``set_weights(blob)`` replaces the file
    and its pinned hash together (a new release of the weights, not a damaged file)."""
    from align.assets import CATALOG
    from align.assets.spec import AssetSpec
    from align.encoders.toy import toy_cnn

    if "toy:weighed" not in VISION_ENCODERS:
        VISION_ENCODERS.add("toy:weighed", toy_cnn, embed_dim=32, weights="test-weighed")
    path = isolated_home / "weights" / "weighed" / "w.bin"
    path.parent.mkdir(parents=True)
    (isolated_home / "manifests").mkdir()

    def set_weights(blob: bytes) -> None:
        spec = AssetSpec(name="test-weighed", version=blob.decode(), root="weights/weighed", sources=(),
                         sha256={"w.bin": hashlib.sha256(blob).hexdigest()})
        monkeypatch.setitem(CATALOG, spec.name, spec)
        path.write_bytes(blob)
        (isolated_home / "manifests" / "test-weighed.json").write_text(
            json.dumps({"name": spec.name, "version": spec.version, "files": dict(spec.sha256)}))

    return set_weights


def test_changed_weights_recompute_everything(bench, tmp_path: Path, weighed_encoder) -> None:
    weighed_encoder(b"v1")
    config = CONFIG.replace("[toy:cnn]", "[toy:weighed]")
    bench(config)
    weighed_encoder(b"v2")
    summary = bench(config)
    assert {r["weights_sha256"]["image"] for r in records(tmp_path / "results").values()} == {
        hashlib.sha256(b"v2").hexdigest()}
    assert counts(summary) == (8, 0, 8, 0)


# ---- unreadable results are recomputed, never reported ---------------------------------------------------

def flip_first_metric_digit(path: Path) -> None:
    text = path.read_text()
    start = text.index('"metrics"')
    at = next(i for i in range(start, len(text)) if text[i].isdigit() and text[i - 1] in " .")
    path.write_text(text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1:])


def test_truncated_and_altered_results_are_recomputed(bench, tmp_path: Path) -> None:
    bench()
    root = tmp_path / "results"
    before = records(root)
    retrieval, probe = (next(root.rglob(f"procrustes-8/*{task}*.json")) for task in ("retrieval", "linear_probe"))
    retrieval.write_bytes(retrieval.read_bytes()[:100])
    flip_first_metric_digit(probe)
    assert json.loads(probe.read_text())["metrics"] != before[probe.relative_to(root).as_posix()]["metrics"]
    summary = bench()
    after = records(root)
    assert {k: r["metrics"] for k, r in after.items()} == {k: r["metrics"] for k, r in before.items()}
    assert counts(summary) == (2, 6, 0, 2)


def test_a_damaged_missing_or_absent_items_file_is_recomputed(bench, tmp_path: Path) -> None:
    """A result is current only with its per-item outputs verified: a damaged or deleted items file, or a
    result written before items existed, is recomputed, and its items then give back its metrics."""
    bench()
    root = tmp_path / "results"
    damaged = next(root.rglob("ridge/*linear_probe*.items.safetensors"))
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"x")
    next(root.rglob("ridge/*fewshot*.items.safetensors")).unlink()
    older = next(root.rglob("procrustes-8/*fewshot*.json"))
    legacy = json.loads(older.read_text())
    legacy.pop("items")
    older.write_text(json.dumps(seal(legacy)))
    summary = bench()
    assert counts(summary) == (3, 5, 1, 2)
    assert assert_items_give_every_metric(root) == 8


def test_a_result_without_an_identity_is_recomputed(bench, tmp_path: Path) -> None:
    bench()
    path = next((tmp_path / "results").rglob("ridge/*fewshot*.json"))
    legacy = json.loads(path.read_text())
    for key in ("identity", "checksum"):
        legacy.pop(key, None)
    legacy["metrics"] = {"acc1": 0.0}
    path.write_text(json.dumps(legacy))
    summary = bench()
    assert json.loads(path.read_text())["metrics"]["acc1"] > 0
    assert counts(summary) == (1, 7, 1, 0)


# ---- counting -------------------------------------------------------------------------------------------

def test_resume_counts_every_result_once(bench, tmp_path: Path) -> None:
    first = bench()
    assert (first.written, first.skipped) == (8, 0)
    next((tmp_path / "results").rglob("ridge/*fewshot*.json")).unlink()
    resumed = bench()
    assert (resumed.written, resumed.skipped) == (1, 7)
    assert counts(resumed) == (1, 7, 0, 0) and counts(bench()) == (0, 8, 0, 0)


def test_a_repeated_dataset_entry_is_counted_once(bench) -> None:
    entry = CONFIG[CONFIG.index("  - {name: test-integrity"):]
    first = bench(CONFIG + entry)
    assert (first.written, first.skipped) == (8, 0)
    again = bench(CONFIG + entry)
    assert (again.written, again.skipped) == (0, 8)


def test_two_runs_sharing_a_folder_do_not_both_count_a_result(tmp_path: Path) -> None:
    """A second run that finds a result written by another run meanwhile counts it as already there."""
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    other: list[Any] = []

    class Racing(FeatureBank):
        def images(self, encoder: str, split: DatasetSplit):  # noqa: ANN201
            if not other:  # while this run prepares its fits, another run does the whole config
                other.append(run_benchmark(config, tmp_path / "results", echo=quiet,
                                           bank=FeatureBank(FeatureCache(tmp_path / "f2"), progress=False)))
            return super().images(encoder, split)

    mine = run_benchmark(config, tmp_path / "results", echo=quiet,
                         bank=Racing(FeatureCache(tmp_path / "f1"), progress=False))
    assert (other[0].written, other[0].skipped) == (8, 0)
    assert (mine.written, mine.skipped) == (0, 8)


# ---- fitted aligners reused under --save-aligners ---------------------------------------------------------

def drop_results(root: Path) -> None:
    for path in root.rglob("*.json"):
        if "fitted" not in path.parts:
            path.unlink()


def test_saved_fit_of_other_data_is_not_reused(bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench(save_aligners=True)
    drop_results(tmp_path / "results")
    monkeypatch.setattr(Squares, "version", "2")
    said: list[str] = []
    bench(save_aligners=True, echo=said.append)
    assert not any("reusing the fitted aligner" in s for s in said)
    fitted = json.loads(next((tmp_path / "results").rglob("ridge/fitted/*.json")).read_text())
    assert fitted["provenance"]["identity"]["parts"]["dataset"]["version"] == "2"


def test_damaged_saved_fit_is_fitted_again(bench, tmp_path: Path) -> None:
    bench(save_aligners=True)
    root = tmp_path / "results"
    first = {k: r["metrics"] for k, r in records(root).items()}
    tensors = next(root.rglob("procrustes-8/fitted/*.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0x40
    tensors.write_bytes(bytes(data))
    drop_results(root)
    said: list[str] = []
    bench(save_aligners=True, echo=said.append)
    assert {k: r["metrics"] for k, r in records(root).items()} == first
    assert sum("reusing the fitted aligner" in s for s in said) == 1  # ridge's; procrustes-8's is damaged
    assert any(str(tensors.with_suffix("")) in s and "fitting again" in s for s in said)


# ---- divergence and the feature cache ---------------------------------------------------------------------

def test_a_diverging_fit_is_named(bench) -> None:
    config = CONFIG.replace("aligners: [ridge, {name: procrustes, label: procrustes-8, hparams: {dim: 8}}]",
                            "aligners: [{name: contrastive, label: unstable, "
                            "hparams: {lr: 1.0e+10, max_epochs: 3, batch_size: 8}}]")
    with pytest.raises(AlignError) as caught:
        bench(config)
    message = str(caught.value)
    assert "\n" not in message and "unstable" in message and "test-integrity" in message, message
    assert "diverged" in message and "epoch" in message, message


def test_nan_in_the_feature_cache_is_blamed_on_the_cache(bench, tmp_path: Path, caplog) -> None:
    from align.features.shards import write_shard

    bench()
    index_path = next(p for p in (tmp_path / "features").rglob("index.json") if "train" in p.parts
                      and p.parent.name.startswith("image-"))
    index = json.loads(index_path.read_text())
    shard = index_path.parent / index["shards"][0]
    from safetensors import safe_open

    with safe_open(str(shard), "pt") as f:
        header, features = f.metadata(), f.get_tensor("features")
    features[3, 1] = float("nan")
    header.pop("data_sha256")
    index["sha256"][shard.name] = write_shard(shard, features, header)
    index_path.write_text(json.dumps(index))
    with caplog.at_level(logging.WARNING):
        summary = bench(overwrite=True)
    assert summary.written == 8
    assert any(str(index_path.parent) in r.getMessage() and "NaN" in r.getMessage() for r in caplog.records)


# ---- names from the config stay inside the results folder ----------------------------------------------------

@pytest.mark.parametrize("label", ["..", "../../escaped", "/tmp/escaped", "a\0b", "x" * 300, "."])
def test_a_hostile_label_stays_inside_the_results_folder(bench, tmp_path: Path, label: str) -> None:
    config = CONFIG.replace("label: procrustes-8", f"label: {json.dumps(label)}")
    bench(config, save_aligners=True)
    root = (tmp_path / "results").resolve()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "features" not in p.parts and p.name != "bench.yaml"]
    assert written and all(p.resolve().is_relative_to(root) for p in written)
    # each aligner keeps its own folder: nothing of procrustes lands among ridge's results or at the top
    assert all(len(p.relative_to(root).parts) >= 3 for p in written)
    assert all(len(part.encode()) <= 255 for p in written for part in p.parts)
    by_model = {r["model"] for r in records(root).values()}
    assert by_model == {"ridge", label}


def test_a_hostile_config_name_stays_inside_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from align.cli import main

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("ALIGN_FEATURE_CACHE", str(tmp_path / "features"))
    (work / "bench.yaml").write_text(CONFIG.replace("name: integrity", "name: ../../escaped"))
    assert main(["bench", "--config", "bench.yaml", "--quiet"]) == 0
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and "features" not in p.parts
               and not p.resolve().is_relative_to((work / "results").resolve()) and p.name != "bench.yaml"]
    assert outside == [] and not (tmp_path.parent / "escaped").exists()
    assert os.listdir(work / "results")


def test_each_text_encoder_fits_on_its_own_features(bench, tmp_path: Path) -> None:
    """Results filed beside a text encoder come from a fit on that encoder's caption features, also when the
    config lists a second text encoder of the same width (both fits are made after the loop over them)."""
    two = CONFIG.replace("text_encoders: [toy:text]", 'text_encoders: [toy:text, "table:toy:table-causal"]')
    bench(two)
    both = {k: r["metrics"] for k, r in records(tmp_path / "results").items() if r["text_encoder"] == "toy:text"}
    path = tmp_path / "alone.yaml"
    path.write_text(CONFIG)
    run_benchmark(load_config(path), tmp_path / "alone", echo=quiet,
                  bank=FeatureBank(FeatureCache(tmp_path / "features"), progress=False))
    assert both == {k: r["metrics"] for k, r in records(tmp_path / "alone").items()}
