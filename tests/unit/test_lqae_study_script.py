"""benchmarks/lqae_study.py's bookkeeping: the usage term joins a run's settings only when on (so
saved runs keep their keys), applies to every model alike, and the selection takes the best
validation probe over the whole (LM weight, usage weight) grid; the claim table's paired intervals
from planted per-image outputs (a real gap is told apart, noise is not), and runs saved before
per-item outputs were kept are reported without intervals."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from bench_scripts import load_benchmark

study = load_benchmark("lqae_study")


def args(**kw: Any) -> SimpleNamespace:
    base = dict(rows="words", codebook_size=8192, tokens=16, epochs=2, batch=32, usage_temperature=0.01,
                select_weights=[0.01, 0.1], select_usage=[0.0, 1.0], datasets=["fashion_mnist"], runs=Path("runs"),
                saved_only=False)
    return SimpleNamespace(**base | kw)


DATA = {"channels": 1, "train_x": torch.zeros(10, 1, 32, 32), "train_y": torch.zeros(10).numpy()}


def test_usage_term_is_left_out_of_the_settings_when_off_and_shared_by_every_model_when_on() -> None:
    off = study.hparams("lqae", DATA, args(), 0, (0.1, 0.0))
    assert "usage_weight" not in off and "usage_temperature" not in off and off["lm_weight"] == 0.1
    for label in ("lqae", "random-table", "vq-vae", "lqae-lm-off"):
        on = study.hparams(label, DATA, args(), 1, (0.1, 1.0))
        assert on["usage_weight"] == 1.0 and on["usage_temperature"] == 0.01 and on["seed"] == 1
    assert study.hparams("lqae-lm-off", DATA, args(), 0, (0.1, 1.0))["lm_weight"] == 0.0
    assert "lm_weight" not in study.hparams("vq-vae", DATA, args(), 0, (0.1, 1.0))


def test_selection_takes_the_best_validation_probe_over_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = {"fashion_mnist_lm0.01.json": 0.40, "fashion_mnist_lm0.1.json": 0.47,
              "fashion_mnist_lm0.01_usage1.json": 0.52, "fashion_mnist_lm0.1_usage1.json": 0.45}
    seen = []

    def fake_cached_run(path: Path, key: dict, make: Any, log: Any, **kw: Any) -> dict:
        seen.append((path.name, key.get("usage_weight", 0.0), key["lm_weight"]))
        return {"val_probe": probes[path.name], "train_s": 1.0}

    monkeypatch.setattr(study, "cached_run", fake_cached_run)
    chosen, found = study.select_weights(DATA | {"train_y": torch.arange(10).numpy()}, args())
    assert chosen == (0.01, 1.0)
    assert sorted(seen) == sorted([("fashion_mnist_lm0.01.json", 0.0, 0.01), ("fashion_mnist_lm0.1.json", 0.0, 0.1),
                                   ("fashion_mnist_lm0.01_usage1.json", 1.0, 0.01),
                                   ("fashion_mnist_lm0.1_usage1.json", 1.0, 0.1)])
    assert set(found) == {(0.01, 0.0), (0.1, 0.0), (0.01, 1.0), (0.1, 1.0)}


def test_saved_only_reports_just_the_seeds_every_model_has(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = {("lqae", 0), ("random-table", 0), ("lqae", 1)}  # seed 1 lacks its random-table run

    def fake_study_run(label: str, dataset: str, seed: int, data: Any, a: Any, chosen: Any) -> dict | None:
        return {"seed": seed, "label": label} if (label, seed) in saved else None

    monkeypatch.setattr(study, "study_run", fake_study_run)
    runs = study.dataset_runs("emoji", ["lqae", "random-table"], DATA, args(seeds=[0, 1], saved_only=True), (0.1, 0.0))
    assert runs == {"lqae": [{"seed": 0, "label": "lqae"}], "random-table": [{"seed": 0, "label": "random-table"}]}


def test_saved_run_answers_only_a_result_made_with_the_same_key(tmp_path: Path) -> None:
    common = load_benchmark("_common")
    path = tmp_path / "run.json"
    made = common.cached_run(path, {"seed": 0, "lm_weight": 0.1}, lambda: {"probe": 0.5})
    assert common.saved_run(path, {"seed": 0, "lm_weight": 0.1}) == made
    assert common.saved_run(path, {"seed": 1, "lm_weight": 0.1}) is None
    assert common.saved_run(tmp_path / "missing.json", {"seed": 0}) is None
    path.write_text("{not json")
    assert common.saved_run(path, {"seed": 0, "lm_weight": 0.1}) is None


# ------------------------------------------------------------------------------- intervals from items

N, CLASSES = 400, 10
LABELS = np.arange(N) % CLASSES


def planted_run(seed: int, correct: np.ndarray, errors: np.ndarray) -> dict[str, Any]:
    """A study run whose probe, 5-shot and mean-token probe get right the images in ``correct`` and
    whose per-image reconstruction errors are ``errors`` (codes: one per class, so NMI is 1)."""
    from align.eval.items import ClassificationItems, CodeItems, MeanItems

    wrong = (LABELS + 1) % CLASSES
    top = np.stack([np.where(correct, LABELS, wrong), *[(LABELS + j) % CLASSES for j in range(2, 6)]], axis=1)
    guess = ClassificationItems(top.astype(np.int64), LABELS.astype(np.int64), CLASSES)
    codes = CodeItems(np.stack([LABELS, LABELS + 100], axis=1).astype(np.int64), LABELS.astype(np.int64), seed)
    items = {"rec": MeanItems(errors.astype(np.float64), "rec"), "probe": guess, "probe_tokens": guess,
             "fewshot": guess, "codes": codes}
    usage = codes.metrics()
    return {"key": {"seed": seed}, "train_s": 1.0, "rec": items["rec"].value("rec"), "probe": guess.value("acc1"),
            "probe_tokens": guess.value("acc1"), "fewshot": guess.value("acc1"), "token_nmi": usage["code_class_nmi"],
            "cluster_nmi": 0.5 + 0.01 * seed, "distinct": usage["codes_used"], "perplexity": usage["code_perplexity"],
            study.PER_ITEM: items}


def rows_of(lines: list[str], difference: str) -> dict[str, list[str]]:
    """The claim table's cells by metric, for one difference."""
    found = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == difference:
            found[cells[1]] = cells[2:]
    return found


def test_claim_table_tells_a_planted_gap_apart_and_calls_planted_noise_a_tie() -> None:
    from align.eval.bootstrap import Bootstrap

    rng = np.random.default_rng(0)
    runs: dict[str, list[dict]] = {"lqae": [], "random-table": [], "vq-vae": []}
    for seed in (0, 1):
        good = rng.random(N) < 0.8  # lqae: 80% right, low error
        base = good.copy()
        base[rng.choice(np.flatnonzero(good), 120, replace=False)] = False  # random-table: 50% right
        near = good.copy()  # vq-vae: the same as lqae but for 3 images each way (noise)
        near[rng.choice(np.flatnonzero(good), 3, replace=False)] = False
        near[rng.choice(np.flatnonzero(~good), 3, replace=False)] = True
        errors = rng.random(N) * 0.01
        runs["lqae"].append(planted_run(seed, good, errors))
        runs["random-table"].append(planted_run(seed, base, errors + 0.005))
        runs["vq-vae"].append(planted_run(seed, near, errors + rng.normal(0, 1e-4, N)))
    lines = study.claim_table(runs, Bootstrap(resamples=200))
    assert lines[0].split("|")[3:7] == [" mean ± std over seeds ", " paired 95% interval (pooled) ", " seeds better ",
                                        " verdict "]
    gap = rows_of(lines, "lqae − random-table")
    assert gap["linear probe (bench repr.)"][2:] == ["2/2", "higher (better)"]
    low, high = (float(x) for x in gap["linear probe (bench repr.)"][1].split("[")[1].rstrip("]").split(","))
    assert 0.2 < low < 0.3 < high < 0.4  # the planted gap (0.3) inside a paired interval that excludes zero
    assert gap["reconstruction MSE"][2:] == ["2/2", "lower (better)"]  # lower error is better
    for metric in ("histogram k-means NMI", "code/class NMI", "codes used", "code perplexity"):
        assert gap[metric][1:] == ["not resampled", "0/2", "–"], metric  # statistics of the pooled codes
    noise = rows_of(lines, "lqae − vq-vae")
    assert noise["linear probe (bench repr.)"][3] == "cannot be told apart"
    assert noise["reconstruction MSE"][3] == "cannot be told apart"
    table = study.study_table(runs, Bootstrap(resamples=200))
    assert any(line.startswith("| lqae |") and "[" in line for line in table)  # cells carry their intervals


def test_runs_saved_without_items_are_reported_without_intervals() -> None:
    from align.eval.bootstrap import Bootstrap

    good = np.arange(N) % 2 == 0
    runs = {"lqae": [planted_run(s, good, np.zeros(N)) for s in (0, 1)],
            "random-table": [planted_run(s, good, np.zeros(N)) for s in (0, 1)]}
    runs["random-table"][1][study.PER_ITEM] = None  # saved before per-item outputs were kept
    lines = study.claim_table(runs, Bootstrap(resamples=50))
    assert rows_of(lines, "lqae − random-table")["linear probe (bench repr.)"][1:] == ["no per-item outputs", "0/2", "–"]
    notes = study.interval_notes({"fashion_mnist": runs}, Bootstrap(resamples=50))
    assert "50 resamples" in notes[0] and "1 run(s) were saved before per-item outputs" in notes[1]
    assert not any("[" in line for line in study.study_table({"random-table": runs["random-table"]}, Bootstrap(resamples=50))[2:])


def test_code_statistics_are_not_resampled() -> None:
    """The code statistics are statistics of the pooled codes, which a bootstrap draw shifts: the study
    asks no interval of them, and align.eval.items refuses one."""
    from align.errors import BadInputError
    from align.eval.bootstrap import Bootstrap, metric_interval
    from align.eval.items import CodeItems

    codes = [CodeItems(np.stack([LABELS, LABELS + 10], 1).astype(np.int64), LABELS.astype(np.int64), s) for s in (0, 1)]
    for metric in ("codes_used", "code_perplexity", "code_class_nmi"):
        with pytest.raises(BadInputError):
            metric_interval(codes, metric, Bootstrap(resamples=10))
    assert all(metric is None for _, _, _, _, (name, metric) in study.METRICS if name == "codes")


def test_the_procedural_set_is_its_lone_shapes_labelled_by_kind_in_colour() -> None:
    import align.data  # noqa: F401
    from align.registry import DATASETS

    data_module = load_benchmark("_lqae_data")
    d = data_module.load_data(SimpleNamespace(dataset="shapes", train=12, test=8))
    test = DATASETS.create("shapes.single").load("test@8")
    assert d["train_x"].shape == (12, 3, 32, 32) and d["channels"] == 3
    assert d["class_names"] == list(test.extra_labels["shape"].class_names)
    assert np.array_equal(d["test_y"], test.extra_labels["shape"].labels)
