"""Benchmark config validation, an end-to-end run on toy parts, skip/overwrite, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from item_checks import assert_items_give_every_metric
from PIL import Image

from align.bench.execute.features import FeatureBank
from align.bench.execute.phases import ENCODING
from align.bench.plan.config import load_config
from align.bench.report.leaderboard import aggregate, markdown, write_report
from align.bench.report.uncertainty import load_items
from align.bench.runner import run_benchmark
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.errors import BadInputError
from align.features.cache import FeatureCache
from align.registry import DATASETS

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}


class ColourSquares(Dataset):
    """Plain colour squares with a little noise; captions name the colour."""

    name, version, splits = "test-colours", "1", ("train", "test")

    def load(self, split: str) -> DatasetSplit:
        rng = np.random.default_rng(0 if split == "train" else 1)
        names = list(COLOURS)
        labels = np.array([i % len(names) for i in range(24)], dtype=np.int64)

        def image(i: int) -> Image.Image:
            base = np.array(COLOURS[names[labels[i]]], dtype=np.float64)
            pixels = np.clip(base + rng.normal(0, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
            return Image.fromarray(pixels)

        images = [image(i) for i in range(len(labels))]
        return DatasetSplit(
            dataset=self.name, split=split, version=self.version, num_items=len(labels),
            load_image=lambda i: images[i], captions=[[f"a {names[c]} square", names[c]] for c in labels],
            labels=LabelSet(labels, names, ("a {c} square.", "{c}")),
        )


if "test-colours" not in DATASETS:
    DATASETS.add("test-colours", ColourSquares)

CONFIG = """
name: toy
seeds: [0, 1]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge, {name: procrustes, label: procrustes-8, hparams: {dim: 8}}]
datasets:
  - {name: test-colours, fit: train, eval: test,
     tasks: [zeroshot_classification, zeroshot_retrieval, linear_probe, fewshot], fewshot_k: 2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path


def test_end_to_end_writes_clip_benchmark_results_and_skips_existing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    results = tmp_path / "results"
    summary = run_benchmark(config, results, bank=bank, echo=lambda _: None)
    assert summary.written == 2 * 2 * 4 and summary.skipped == 0
    assert {"build encoders", "image features", "text features", "fits", "scoring", "other"} <= set(summary.phases)
    assert sum(summary.phases.values()) == pytest.approx(summary.seconds, abs=0.01)  # every second counted once
    files = sorted(results.rglob("*.json"))
    assert len(files) == 16
    record = json.loads(files[0].read_text())
    assert list(record)[:5] == ["dataset", "model", "pretrained", "task", "metrics"]
    assert record["pretrained"] == "toy:cnn+toy:text" and record["fit_split"] == "train"
    for key in ("hparams", "seed", "versions", "dataset_version", "weights_sha256", "config", "wall_time_s"):
        assert key in record
    retrieval = next(json.loads(f.read_text()) for f in files if "zeroshot_retrieval" in f.name)
    assert set(retrieval["metrics"]) == {f"{side}_retrieval_recall@{k}" for side in ("image", "text") for k in (1, 5, 10)}

    assert assert_items_give_every_metric(results) == 16

    again = run_benchmark(config, results, bank=bank, echo=lambda _: None)
    assert again.written == 0 and again.skipped == 16
    redo = run_benchmark(config, results, bank=bank, overwrite=True, echo=lambda _: None)
    assert redo.written == 16


def test_each_result_counts_the_encoding_it_paid_for_apart_and_the_run_adds_up(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG))
    summary = run_benchmark(config, tmp_path / "results", bank=FeatureBank(FeatureCache(tmp_path / "f"), progress=False),
                            echo=lambda _: None)
    records = [json.loads(f.read_text()) for f in (tmp_path / "results").rglob("*.json")]
    fits = {(r["model"], r["seed"]): r["wall_time_s"]["encoding"]["fit"] for r in records}
    tasks = [r["wall_time_s"]["encoding"]["task"] for r in records]
    assert len(fits) == 4 and max(fits.values()) > 0  # the first fit encodes the shared features
    in_phases = sum(summary.phases.get(name, 0.0) for name in ENCODING)
    assert sum(fits.values()) + sum(tasks) == pytest.approx(in_phases, abs=0.01)  # each second paid once
    first = max(fits, key=fits.get)
    assert all(seconds < fits[first] / 2 for key, seconds in fits.items() if key != first)  # later fits read the cache


def test_report_aggregates_seeds(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG))
    results = tmp_path / "results"
    run_benchmark(config, results, bank=FeatureBank(FeatureCache(tmp_path / "f"), progress=False), echo=lambda _: None)
    records = [json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))]
    rows = aggregate(records, load_items(results, records))
    assert len(rows) == 2 * 4 and all(row["seeds"] == [0, 1] for row in rows)
    table = write_report(results)
    assert (results / "leaderboard.csv").read_text().startswith("image_encoder,")
    assert "procrustes-8" in table and "ridge" in table and table == markdown(rows)


@pytest.mark.parametrize("text,message", [
    ("name: x\nimage_encoders: [a]\ntext_encoders: [b]\naligners: [ridge]\ndatasets: []\ncolour: red\n",
     "unknown key 'colour'"),
    (CONFIG.replace("fit: train", "fit: test"), "fit and eval are the same split"),
    (CONFIG.replace("fewshot]", "fewshots]"), "unknown task 'fewshots'"),
    (CONFIG.replace("seeds: [0, 1]", "seeds: zero"), "seeds: expected a non-empty list"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_configs_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInputError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_default_config_is_valid() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "bench" / "default.yaml")
    assert {d.name for d in config.datasets} == {"emoji", "digits", "fashion_mnist"}
    assert {a.name for a in config.aligners} >= {"ridge", "procrustes", "asif", "contrastive"}
    asif = next(a for a in config.aligners if a.name == "asif")
    assert asif.hparams["k"] == 30 and asif.display == "asif-k30-p8"  # chosen on validation: configs/bench/sweeps.yaml


def test_the_default_config_loads_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its aligner files (``configs/aligners/*.yaml``) are found beside its ``configs/`` folder, so the default runs
    outside the checkout too: named by its full path, or (no ``--config``) as the copy installed with align."""
    from align.cli import DEFAULT_BENCH_CONFIG, _bench_config

    checkout = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    assert next(a for a in load_config(checkout / DEFAULT_BENCH_CONFIG).aligners if a.name == "asif").hparams["k"] == 30
    packaged = _bench_config(DEFAULT_BENCH_CONFIG)
    assert packaged.parts[-4:] == ("align", "configs", "bench", "default.yaml")
    assert packaged.read_text() == (checkout / DEFAULT_BENCH_CONFIG).read_text()
    assert load_config(packaged).aligners == load_config(checkout / DEFAULT_BENCH_CONFIG).aligners
    assert _bench_config("mine.yaml") == Path("mine.yaml")  # a config the user names is read as named


def test_aligner_entry_from_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("name: ridge\nlabel: ridge-a10\nhparams: {alpha: 10}\n")
    config = load_config(write(tmp_path, CONFIG.replace("aligners: [ridge,", "aligners: [mine.yaml,")))
    assert config.aligners[0].display == "ridge-a10" and config.aligners[0].hparams == {"alpha": 10}
    with pytest.raises(BadInputError, match="aligner config 'nope.yaml' not found"):
        load_config(write(tmp_path, CONFIG.replace("aligners: [ridge,", "aligners: [nope.yaml,")))


def manifest_with_a_missing_image(tmp_path: Path) -> Path:
    rows = ["image,caption,label"]
    for i in range(12):
        colour = list(COLOURS)[i % 4]
        Image.new("RGB", (32, 32), COLOURS[colour]).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,a {colour} square,{colour}")
    rows.append("gone.png,a red square,red")  # line 14 of the file
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_bad_manifest_row_fails_in_one_line_or_is_skipped_and_counted(tmp_path: Path) -> None:
    manifest = manifest_with_a_missing_image(tmp_path)
    config = load_config(write(tmp_path, f"""
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets: [{{name: "manifest:{manifest}", fit: train, eval: test, tasks: [zeroshot_retrieval]}}]
"""))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    with pytest.raises(BadInputError, match=r"pairs.csv, line 14") as info:
        run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None)
    assert "\n" not in str(info.value)

    summary = run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None, skip_bad=True)
    assert summary.written == 1
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")]
    assert record["skipped_rows"]["fit"] + record["skipped_rows"]["eval"] >= 1


STRINGS_CONFIG = """
image_encoders: [toy:cnn]
text_encoders: [toy:text, "table:toy:table-causal"]
aligners: [ridge, {name: vlap, hparams: {table: toy:table-causal, max_epochs: 2, batch_size: 8}}]
datasets:
  - {name: test-colours, fit: train, eval: test, tasks: [zeroshot_classification, zeroshot_retrieval, captioning]}
"""


def test_strings_aligner_runs_in_its_own_text_space_and_only_it_captions(tmp_path: Path) -> None:
    """VLAP reads caption strings: it runs only beside ``table:<its table>`` (where ridge is fitted on the same
    text feature), and captioning is scored for it alone (ridge has no language model)."""
    config = load_config(write(tmp_path, STRINGS_CONFIG))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    summary = run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")]
    found = sorted((r["model"], r["pretrained"].split("+")[1], r["task"]) for r in records)
    tasks = ("captioning", "zeroshot_classification", "zeroshot_retrieval")
    ridge = [("ridge", enc, t) for enc in ("table:toy:table-causal", "toy:text") for t in tasks]
    vlap = [("vlap", "table:toy:table-causal", t) for t in tasks]
    assert found == sorted(ridge + vlap) and summary.written == 9
    caption = next(r for r in records if r["task"] == "captioning" and r["model"] == "vlap")
    assert {"Bleu_4", "ROUGE_L", "CIDEr"} <= set(caption["metrics"])
    assert len(caption["task_details"]["examples"]) == 20
    # ridge cannot caption: a result with no metrics says why, and the leaderboard shows "–"
    for record in (r for r in records if r["task"] == "captioning" and r["model"] == "ridge"):
        assert record["metrics"] == {} and "no language model" in record["task_details"]["not_applicable"]
    assert assert_items_give_every_metric(tmp_path / "results") == 7  # captions included
    board = write_report(tmp_path / "results")
    assert "| captioning | CIDEr | – |" in board and "- ridge (captioning): ridge has no language model" in board
    assert run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None).skipped == 9

    # without its table among the text encoders, VLAP still runs once, filed under its own text side,
    # and ridge runs only beside the listed text encoder
    missing = STRINGS_CONFIG.replace(', "table:toy:table-causal"', "")
    run_benchmark(load_config(write(tmp_path, missing)), tmp_path / "r2", bank=bank, echo=lambda _: None)
    records = [json.loads(p.read_text()) for p in (tmp_path / "r2").rglob("*.json")]
    found = sorted((r["model"], r["pretrained"].split("+")[1]) for r in records)
    assert found == [("ridge", "toy:text")] * 3 + [("vlap", "table:toy:table-causal")] * 3


def test_saved_aligners_are_reused_only_with_the_same_hparams(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG.replace("seeds: [0, 1]", "seeds: [0]")))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    results = tmp_path / "results"
    run_benchmark(config, results, bank=bank, echo=lambda _: None, save_aligners=True)
    first = {p.name: json.loads(p.read_text())["metrics"] for p in results.rglob("*.json") if "fitted" not in p.parts}
    assert len(list(results.rglob("fitted/*.safetensors"))) == 2
    for path in results.rglob("*.json"):
        if "fitted" not in path.parts:
            path.unlink()
    said: list[str] = []
    run_benchmark(config, results, bank=bank, echo=said.append, save_aligners=True)
    assert sum("reusing the fitted aligner" in s for s in said) == 2
    again = {p.name: json.loads(p.read_text())["metrics"] for p in results.rglob("*.json") if "fitted" not in p.parts}
    assert again == first

    changed = load_config(write(tmp_path, CONFIG.replace("seeds: [0, 1]", "seeds: [0]").replace("dim: 8", "dim: 6")))
    for path in results.rglob("*.json"):
        if "fitted" not in path.parts:
            path.unlink()
    said.clear()
    run_benchmark(changed, results, bank=bank, echo=said.append, save_aligners=True)
    assert sum("reusing the fitted aligner" in s for s in said) == 1  # ridge only: procrustes-8 now has dim 6


def test_save_aligners_fits_again_when_only_the_fitted_file_is_missing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG.replace("seeds: [0, 1]", "seeds: [0]")))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    results = tmp_path / "results"
    run_benchmark(config, results, bank=bank, echo=lambda _: None)
    assert not list(results.rglob("fitted/*"))
    summary = run_benchmark(config, results, bank=bank, echo=lambda _: None, save_aligners=True)
    assert summary.written == 0 and len(list(results.rglob("fitted/*.safetensors"))) == 2


INPUT_KINDS_CONFIG = """
name: kinds
seeds: [0]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners:
  - ridge
  - {name: codebook_vlp, hparams: {table: "toy:table-masked", image_width: 16, image_heads: 2, embed_dim: 16,
                                   num_codes: 8, code_dim: 8, queue_size: 16, batch_size: 8, max_epochs: 1}}
  - {name: lqae, hparams: {table: "toy:table-masked", image_size: 16, patch_size: 4, in_chans: 3, encoder_width: 32,
                           encoder_depth: 1, encoder_heads: 2, decoder_width: 32, decoder_depth: 1, decoder_heads: 2,
                           batch_size: 8, max_epochs: 1}}
datasets:
  - {name: test-colours, fit: train, eval: test,
     tasks: [zeroshot_classification, zeroshot_retrieval, linear_probe, fewshot, code_statistics], fewshot_k: 2}
"""


def test_every_input_kind_runs_and_tasks_an_aligner_cannot_do_say_why(tmp_path: Path) -> None:
    """Pooled features (ridge), token grids (Codebook-VLP, with its own text encoder) and pixels (LQAE,
    images only) from one config: each aligner gets the input it declares, LQAE's zero-shot tasks are
    "–" with a reason, and the token grids come from the feature cache in float16."""
    config = load_config(write(tmp_path, INPUT_KINDS_CONFIG))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None)
    records = {(r["model"], r["task"]): r for r in map(json.loads, map(Path.read_text, (tmp_path / "results").rglob("*.json")))}
    assert len(records) == 15
    assert records[("codebook_vlp", "zeroshot_retrieval")]["image_input"]["kind"] == "tokens"
    assert "own text encoder" in records[("codebook_vlp", "zeroshot_retrieval")]["text_side"]
    assert records[("lqae", "linear_probe")]["image_input"] == {"kind": "pixels", "size": 16, "channels": 3}
    for task in ("zeroshot_classification", "zeroshot_retrieval"):
        assert records[("lqae", task)]["metrics"] == {}
        assert "no text side" in records[("lqae", task)]["task_details"]["not_applicable"]
        assert 0 <= records[("codebook_vlp", task)]["metrics"][
            "acc1" if task == "zeroshot_classification" else "image_retrieval_recall@1"] <= 1
    for task in ("linear_probe", "fewshot"):
        assert 0 <= records[("lqae", task)]["metrics"]["acc1"] <= 1
    # discrete codes: LQAE's table tokens and Codebook-VLP's 8 codes; ridge has none
    assert "discrete codes" in records[("ridge", "code_statistics")]["task_details"]["not_applicable"]
    for model, most in (("lqae", None), ("codebook_vlp", 8)):
        stats = records[(model, "code_statistics")]["metrics"]
        assert 1 <= stats["code_perplexity"] <= stats["codes_used"] <= (most or stats["codes_used"])
        assert 0 <= stats["code_class_nmi"] <= 1 and 0 <= stats["code_histogram_nmi"] <= 1
    tokens = bank.tokens("toy:cnn", ColourSquares().load("test"))
    assert tokens.dtype == torch.float16 and tokens.shape == (24, 16, 32)
    assert assert_items_give_every_metric(tmp_path / "results") == 12  # code statistics included
    board = write_report(tmp_path / "results")
    assert "| dataset | task | metric | codebook_vlp | lqae | ridge |" in board
    assert "lqae has no text side" in board


def test_each_text_encoder_fits_on_its_own_features(tmp_path: Path) -> None:
    """With two text encoders of the same width, ridge beside each must be fitted on that encoder's
    caption features: its scores equal those of a config that lists that encoder alone."""
    two = STRINGS_CONFIG.replace("aligners: [ridge, {name: vlap, hparams: {table: toy:table-causal, max_epochs: 2, "
                                 "batch_size: 8}}]", "aligners: [ridge]")
    assert two != STRINGS_CONFIG
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    run_benchmark(load_config(write(tmp_path, two)), tmp_path / "both", bank=bank, echo=lambda _: None)
    for encoder in ("toy:text", "table:toy:table-causal"):
        alone = two.replace('text_encoders: [toy:text, "table:toy:table-causal"]', f'text_encoders: ["{encoder}"]')
        run_benchmark(load_config(write(tmp_path, alone)), tmp_path / encoder.replace(":", "_"), bank=bank,
                      echo=lambda _: None)
        for task in ("zeroshot_classification", "zeroshot_retrieval"):
            def metrics(root: Path) -> dict[str, float]:
                return next(json.loads(p.read_text())["metrics"] for p in root.rglob(f"*__{task}__seed0.json")
                            if json.loads(p.read_text())["text_encoder"] == encoder)
            assert metrics(tmp_path / "both") == metrics(tmp_path / encoder.replace(":", "_")), (encoder, task)
