"""``align bench --executor ray``: the units of the toy benchmark run as Ray tasks on a local cluster
(2 CPUs) and write what the serial run writes; a unit that fails leaves no result and is redone by the
next run, alone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool
from item_checks import assert_items_give_every_metric
from report_toys import CONFIG  # also registers the toy dataset

from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.runner import run_benchmark
from align.features.cache import FeatureCache


@pytest.fixture(scope="module")
def executor() -> Any:
    need_tool(importlib.util.find_spec("ray") is not None, "ray is not installed (pip install 'align[ray]')")
    import ray

    from align.bench.execute.executors import RayExecutor

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayExecutor()
    finally:
        ray.shutdown()


def _run(tmp_path: Path, name: str, text: str, executor: Any = None) -> Any:
    config = tmp_path / f"{name}.yaml"
    config.write_text(text)
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)  # one cache, shared by both runs
    return run_benchmark(load_config(config), tmp_path / name, bank=bank, echo=lambda _: None, executor=executor)


def _comparable(value: Any) -> Any:
    """A result without what differs between any two runs (timings, the date, and the checksum that covers
    them; the items file's hash: a worker process computes similarities with its own thread count, so a
    rank far past every k reported may differ by float rounding: the items' metrics are compared instead)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if k not in ("wall_time_s", "date", "checksum", "config_path", "sha256")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _results(root: Path) -> dict[str, Any]:
    return {str(p.relative_to(root)): _comparable(json.loads(p.read_text())) for p in sorted(root.rglob("*.json"))}


def test_ray_run_writes_what_the_serial_run_writes(tmp_path: Path, executor: Any) -> None:
    serial = _run(tmp_path, "serial", CONFIG)
    on_ray = _run(tmp_path, "ray", CONFIG, executor)
    assert (on_ray.written, on_ray.skipped) == (serial.written, serial.skipped) == (6, 0)
    expected, found = _results(tmp_path / "serial"), _results(tmp_path / "ray")
    assert found.keys() == expected.keys() and len(found) == 6
    for key in expected:
        assert found[key] == expected[key], key
    assert assert_items_give_every_metric(tmp_path / "ray") == 6
    again = _run(tmp_path, "ray", CONFIG, executor)  # resume: everything is there
    assert (again.written, again.skipped) == (0, 6)


def test_a_failed_unit_leaves_nothing_and_the_rerun_redoes_it_alone(tmp_path: Path, executor: Any) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the contrastive fit wants its checkpoint folder")
    text = CONFIG.replace("val_fraction: 0.25}", f"val_fraction: 0.25, checkpoint_dir: {blocker}}}")
    assert text != CONFIG
    with pytest.raises(Exception) as failed:
        _run(tmp_path, "ray", text, executor)
    assert "blocker" in str(failed.value), failed.value  # the unit's own error, raised by the driver
    left = sorted(p.name for p in (tmp_path / "ray").rglob("*") if p.is_file())
    assert len([n for n in left if n.endswith(".json")]) == 4, left  # ridge and asif, both tasks
    assert not [n for n in left if "contrastive" in n or n.startswith(".") or "tmp" in n], left
    blocker.unlink()
    rerun = _run(tmp_path, "ray", text, executor)
    assert (rerun.written, rerun.skipped) == (2, 4)
