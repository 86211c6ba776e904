"""The files in configs/aligners/ that say they hold an aligner's default hyper-parameters must hold
exactly those (a stale file silently runs other settings than the README's defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from align.registry import ALIGNERS

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "aligners"
DEFAULT_FILES = [p for p in sorted(CONFIGS.glob("*.yaml")) if "default hyper-parameters" in p.read_text().split("\n", 1)[0]]


def test_some_files_claim_the_defaults() -> None:
    assert {p.stem for p in DEFAULT_FILES} >= {"vlap", "contrastive"}


@pytest.mark.parametrize("path", DEFAULT_FILES, ids=lambda p: p.stem)
def test_file_equals_the_class_defaults(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    hparams = config.get("hparams", {})
    defaults = ALIGNERS.create(config["name"]).hparams
    assert set(hparams) == set(defaults) - {"seed"}, "every default but the seed is spelled out"
    assert ALIGNERS.create(config["name"], **hparams).hparams == defaults
