"""Every shipped benchmark config (configs/bench/*.yaml) is read and checked as ``align bench`` would
before it runs, so a config edited beside a code change cannot break only when someone runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.bench.plan.config import TASKS, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "bench").glob("*.yaml"))


def test_the_shipped_configs_are_found() -> None:
    assert len(CONFIGS) >= 5 and any(p.stem == "default" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_benchmark_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.aligners and config.datasets and config.seeds
    assert all(task in TASKS for spec in config.datasets for task in spec.tasks)
