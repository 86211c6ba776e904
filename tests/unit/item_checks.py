"""A check shared by the benchmark tests: every metric of every result comes back from its per-item outputs."""

from __future__ import annotations

import json
from pathlib import Path

from align.bench.record.item_files import read_items


def assert_items_give_every_metric(results: Path) -> int:
    """Recompute each scored result's metrics from its ``.items.safetensors`` alone and require the
    reported values exactly; return how many results were checked."""
    checked = 0
    for path in sorted(Path(results).rglob("*__seed*.json")):
        if path.parent.name == "fitted":
            continue
        record = json.loads(path.read_text())
        if not record["metrics"]:  # a task the aligner cannot do: nothing scored, nothing kept
            assert "items" not in record
            continue
        items = read_items(record, path)
        assert items.metrics() == record["metrics"], path
        checked += 1
    assert checked, f"no scored result under {results}"
    return checked
