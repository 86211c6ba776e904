"""benchmarks/lqae_pilot.py end to end on a tiny LQAE (the toy masked table, sklearn's digits): a fit writes
its per-epoch validation history, asking for more epochs resumes it on the same curve, the validation probe
is kept beside it, and the report reads them back; the study config names only models the study knows."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from bench_scripts import load_benchmark

script = load_benchmark("lqae_pilot")
study = load_benchmark("lqae_study")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "studies"
TINY = {"table": "toy:table-masked", "image_size": 32, "patch_size": 8, "encoder_width": 32, "encoder_depth": 1,
        "encoder_heads": 2, "decoder_width": 32, "decoder_depth": 1, "decoder_heads": 2, "codebook_size": 256,
        "in_chans": 1, "batch_size": 16, "val_fraction": 0.25}


def tiny_config(tmp_path: Path) -> dict:
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "dataset": "digits", "fit": "train@64", "channels": 1,
                                    "epochs": 2, "common": TINY, "variants": {"lqae-a": {"lm_weight": 0.001}}}))
    config = script.load_config(path)
    return config | {"histories": tmp_path / "histories", "checkpoints": tmp_path / "checkpoints"}


def test_a_pilot_fits_resumes_probes_and_reports(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    script.fit(config, "lqae-a", 0, 2)
    run = json.loads((config["histories"] / "lqae-a-seed0.json").read_text())
    assert run["epochs"] == 2 and len(run["history"]["val_rec"]) == 2 and run["fit_pairs"] == 64
    assert run["hparams"]["lm_weight"] == 0.001 and "checkpoint_dir" not in run["hparams"]
    first = run["history"]["val_rec"]
    script.fit(config, "lqae-a", 0, 3)  # more epochs: resumes from last.ckpt
    run = json.loads((config["histories"] / "lqae-a-seed0.json").read_text())
    assert run["epochs"] == 3 and run["history"]["val_rec"][:2] == first
    script.probe_check(config, "lqae-a", 0)
    run = json.loads((config["histories"] / "lqae-a-seed0.json").read_text())
    assert 0 <= run["final"]["val_probe"] <= 1 and run["final"]["val_images"] == 16 and run["final"]["epochs"] == 3
    out = tmp_path / "report.md"
    script.report(config, out, None)
    row = next(line for line in out.read_text().splitlines() if line.startswith("| lqae-a"))
    assert "| 3 | done |" in row and f"{run['final']['val_probe']:.3f} @ 3" in row


def test_the_study_config_varies_only_what_each_model_ablates() -> None:
    """Every pilot variant is one of lqae_study.py's models at a named LM weight: the pilots choose the
    weight and budget the study then uses, so they must train the same models."""
    config = script.load_config(CONFIGS / "lqae_pilot.yaml")
    weights = {v["lm_weight"] for name, v in config["variants"].items() if name.startswith("lqae-")}
    assert {0.0, 1e-4} <= weights  # no language prior, and the paper's value
    for name, fields in config["variants"].items():
        model = name.rsplit("-lm", 1)[0]
        assert model in study.MODELS, name
        expected = {k: v for k, v in study.MODELS[model].items() if v is not None}
        assert {k: fields[k] for k in expected} == expected, name
        assert set(fields) - set(expected) <= {"lm_weight"}, name
