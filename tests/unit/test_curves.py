"""Training curves: a trained aligner's fit through the runner leaves Lightning's CSV beside its results,
atomically, without changing any result's identity."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from align.atomic import atomic_dir
from align.bench.report.curves import find_curves, plot_png
from align.methods.contrastive import ContrastiveAligner
from report_toys import toy_run


def test_a_contrastive_fit_through_the_runner_leaves_a_loss_csv_with_a_row_per_epoch(tmp_path: Path) -> None:
    results = toy_run(tmp_path, save_aligners=False)
    (folder,) = [p.parent for p in results.rglob("curves/*/metrics.csv")]
    assert folder.parent.parent.name == "contrastive" and folder.name == "report-colours__train__seed0"
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    epochs = [r for r in rows if r["train_loss"]]
    assert [int(r["epoch"]) for r in epochs] == [0, 1, 2]  # max_epochs: 3
    assert len([r for r in rows if r["val_loss"]]) == 3 and len([r for r in rows if r["train_loss_step"]]) >= 3
    fit = yaml.safe_load((folder / "fit.yaml").read_text())
    assert fit["aligner"] == "contrastive" and fit["seed"] == 0 and fit["diverged"] is None
    # ridge and ASIF are not trained: no curves; no temporary folder is left behind
    assert not [p for p in results.rglob("*") if p.name.endswith((".part", ".old"))]
    (curves,), problems = find_curves(results)
    assert not problems and len(curves.epochs["train_loss"]) == 3
    assert plot_png(curves).startswith(b"\x89PNG")


def test_curves_change_no_identity_and_no_saved_hparam(tmp_path: Path) -> None:
    """``log_dir`` is an attribute, not a hyper-parameter: a rerun into a folder with curves keeps every result."""
    from align.bench.plan.config import load_config
    from align.bench.execute.features import FeatureBank
    from align.bench.runner import run_benchmark
    from align.features.cache import FeatureCache

    results = toy_run(tmp_path, save_aligners=True)
    saved = json.loads(next(results.rglob("fitted/*.json")).read_text())
    assert "log_dir" not in saved["hparams"]
    again = run_benchmark(load_config(tmp_path / "bench.yaml"), results, echo=lambda _: None, save_aligners=True,
                          bank=FeatureBank(FeatureCache(tmp_path / "features"), progress=False))
    assert again.written == 0 and again.skipped > 0


def test_an_interrupted_fit_leaves_no_curves_and_a_refit_replaces_them(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from align.methods.contrastive import ContrastiveHeads

    target = tmp_path / "curves" / "fit"
    aligner = ContrastiveAligner(max_epochs=3, batch_size=4)
    aligner.log_dir = target
    steps = []

    def killed_later(self: ContrastiveHeads) -> None:
        steps.append(1)
        if len(steps) == 4:  # in the second epoch, after the first epoch's rows were logged
            raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(ContrastiveHeads, "after_step", killed_later)
        with pytest.raises(RuntimeError, match="killed"):
            aligner.fit(torch.randn(8, 5), torch.randn(8, 3))
    assert len(steps) == 4 and list((tmp_path / "curves").iterdir()) == []
    aligner.fit(torch.randn(8, 5), torch.randn(8, 3))
    (target / "stale.txt").write_text("from an earlier fit")
    aligner.fit(torch.randn(8, 5), torch.randn(8, 3))
    assert sorted(p.name for p in target.iterdir()) == ["hparams.yaml", "metrics.csv"]


def test_atomic_dir_keeps_the_old_folder_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "logs"
    target.mkdir()
    (target / "old.csv").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new.csv").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["logs"] and (target / "old.csv").read_text() == "old"
