"""A run stopped by SIGTERM or SIGINT is not reported as a success: ``align bench`` exits 128 + the signal,
says what finished and how to resume, and keeps every finished result (verified) and no partial file.

The child runs ``align bench`` on the toy colour squares with ridge (fast) and a contrastive head whose
fit takes minutes; once ridge's results are on disk the contrastive fit is under way inside Lightning,
whose own SIGTERM handling would otherwise end the fit with ``SystemExit(None)``: exit status 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from align.bench.record.result_files import read_result

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
sys.path.insert(0, {tests!r})
import report_toys  # registers the toy dataset
from align.cli import main
sys.exit(main(["bench", "--config", {config!r}, "--results", {results!r}, "--quiet"]))
"""
CONFIG = """
name: signals
seeds: [0]
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners:
  - ridge
  - {name: contrastive, hparams: {max_epochs: 100000, batch_size: 4}}
datasets:
  - {name: report-colours, fit: train, eval: test, tasks: [zeroshot_classification, zeroshot_retrieval]}
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_exits_non_zero_and_keeps_what_finished(tmp_path: Path, sig: signal.Signals) -> None:
    config, results = tmp_path / "bench.yaml", tmp_path / "results"
    config.write_text(CONFIG)
    script = CHILD.format(tests=str(ROOT / "tests" / "unit"), config=str(config), results=str(results))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "ALIGN_FEATURE_CACHE": str(tmp_path / "features")})
    try:
        deadline = time.monotonic() + 240
        while len(list(results.rglob("ridge/*.json"))) < 2:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "ridge's results never appeared"
            time.sleep(0.2)
        time.sleep(3)  # the contrastive fit is under way
        assert child.poll() is None
        child.send_signal(sig)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + sig, err
    assert f"stopped by {sig.name}: 2 results written, 0 already there" in err, err
    assert "run the same command again to resume" in err and "Traceback" not in err, err
    kept = sorted(p.name for p in results.rglob("*") if p.is_file())
    assert not [name for name in kept if name.startswith(".") or name.endswith(".part")], kept
    assert [p.parent.name for p in results.rglob("*.json")] == ["ridge", "ridge"]
    for path in results.rglob("*.json"):
        read_result(path)  # verified, whole
