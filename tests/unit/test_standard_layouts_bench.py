"""``align bench`` end to end on the COCO (Karpathy) and CIFAR fixtures, and a wrong root through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_checks import cli_fails, untouched
from layout_fixtures import cifar10_files, karpathy_coco, write_archive

from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.runner import run_benchmark
from align.features.cache import FeatureCache

pytestmark = pytest.mark.usefixtures("isolated_home")

CONFIG = """
name: layouts
seeds: [0]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {{name: coco, fit: train, eval: test, tasks: [zeroshot_retrieval], options: {{root: "{coco}"}}}}
  - {{name: cifar10, fit: train, eval: test, tasks: [zeroshot_classification], options: {{root: "{cifar}"}}}}
"""


def test_bench_runs_on_the_coco_and_cifar_layouts(tmp_path: Path) -> None:
    coco = karpathy_coco(tmp_path / "coco", extra_train=10)
    cifar = tmp_path / "cifar"
    write_archive(cifar / "cifar-10-python.tar.gz", "cifar-10-batches-py", cifar10_files(per_batch=4))
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(coco=coco, cifar=cifar))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    summary = run_benchmark(load_config(path), tmp_path / "results", bank=bank, echo=lambda _: None)
    assert summary.written == 2 and summary.skipped == 0
    records = {(r["dataset"], r["task"]): r for r in
               (json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("*.json")))}
    assert set(records) == {("coco", "zeroshot_retrieval"), ("cifar10", "zeroshot_classification")}
    retrieval = records[("coco", "zeroshot_retrieval")]
    assert retrieval["eval_split"] == "test" and retrieval["fit_split"] == "train"
    # 2 test images, 3 captions: recall@5 and @10 see every candidate, so both are 1 in either direction
    metrics = retrieval["metrics"]
    assert metrics["image_retrieval_recall@5"] == metrics["text_retrieval_recall@5"] == 1.0
    assert records[("cifar10", "zeroshot_classification")]["dataset_version"].startswith("cifar-python+r1-cifar10-")


def test_cli_wrong_root_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGN_COCO_ROOT", raising=False)
    cli_fails(capsys, ["embed", "--dataset", "coco", "--split", "test", "--encoder", "toy:cnn"],
              "ALIGN_COCO_ROOT", "dataset_coco.json")
    (tmp_path / "coco").mkdir()
    monkeypatch.setenv("ALIGN_COCO_ROOT", str(tmp_path / "coco"))
    with untouched(tmp_path / "coco"):
        cli_fails(capsys, ["embed", "--dataset", "coco", "--split", "test", "--encoder", "toy:cnn"],
                  str(tmp_path / "coco" / "dataset_coco.json"), "Karpathy split file")
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG.format(coco=tmp_path / "nowhere", cifar=tmp_path / "nowhere"))
    cli_fails(capsys, ["bench", "--config", str(config), "--results", str(tmp_path / "results"), "--quiet"],
              str(config), "datasets[0]", "nowhere", "dataset_coco.json")


def test_own_pairs_fit_and_coco_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What configs/bench/coco.yaml documents: fit on the user's manifest, score on COCO's test split."""
    from layout_fixtures import image

    pairs = tmp_path / "pairs"
    rows = ["image,caption"]
    for i in range(8):
        image(pairs / f"p{i}.png", 40 + i)
        rows.append(f"p{i}.png,my picture {i}")
    (pairs / "pairs.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("ALIGN_COCO_ROOT", str(karpathy_coco(tmp_path / "coco")))
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.split("datasets:")[0] + "datasets:\n  - {name: \"manifest:" + str(pairs / "pairs.csv")
                    + "\", fit: all, eval: test, eval_dataset: coco, tasks: [zeroshot_retrieval]}\n")
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    assert run_benchmark(load_config(path), tmp_path / "results", bank=bank, echo=lambda _: None).written == 1
    record = json.loads(next((tmp_path / "results").rglob("*.json")).read_text())
    assert record["shift"] == {"fit": f"manifest:{pairs / 'pairs.csv'}", "eval": "coco"}
    assert record["eval_split"] == "test"
