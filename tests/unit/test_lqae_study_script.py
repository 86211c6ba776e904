"""benchmarks/lqae_study.py's bookkeeping: the usage term joins a run's settings only when on (so
saved runs keep their keys), applies to every model alike, and the selection takes the best
validation probe over the whole (LM weight, usage weight) grid."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

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

    def fake_cached_run(path: Path, key: dict, make: Any, log: Any) -> dict:
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
