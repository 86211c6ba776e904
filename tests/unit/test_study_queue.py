"""benchmarks/study_queue.py: which fits are done, under way or waiting, and a run that starts only the
waiting ones, never more at once than asked, and does not retry one that stopped short."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench_scripts import load_benchmark

queue = load_benchmark("study_queue")


def fake_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str | None = None) -> list[dict]:
    """Four fits whose "pilot" writes its finished history after a moment (or exits 1 when ``fail``)."""
    monkeypatch.setattr(queue, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(queue, "history_path",
                        lambda fit, partial=False: tmp_path / f"{fit['variant']}{'.partial' if partial else ''}.json")
    config = queue.ROOT / "configs" / "studies" / "vlap_pilot.yaml"
    fits = [{"script": "vlap_pilot.py", "config": config, "variant": v, "seed": 0, "epochs": 3} for v in "abcd"]

    def command(fit: dict) -> list[str]:
        path, code = tmp_path / f"{fit['variant']}.json", 1 if fit["variant"] == fail else 0
        started, events = tmp_path / "started.txt", tmp_path / "events.txt"  # events: + a start, - an end
        return [sys.executable, "-c",
                f"import json, time; open({str(started)!r}, 'a').write({fit['variant']!r}); "
                f"open({str(events)!r}, 'a').write('+'); time.sleep(0.5); open({str(events)!r}, 'a').write('-'); "
                f"json.dump({{'epochs': 3}}, open({str(path)!r}, 'w')) if {code} == 0 else None; "
                f"raise SystemExit({code})"]

    monkeypatch.setattr(queue, "command", command)
    return fits


def test_the_queue_runs_what_is_left_and_lists_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fits = fake_fits(tmp_path, monkeypatch)
    (tmp_path / "a.json").write_text(json.dumps({"epochs": 3}))  # done already
    (tmp_path / "b.json").write_text(json.dumps({"epochs": 2}))  # to be extended
    (tmp_path / "c.partial.json").write_text(json.dumps({"epochs": 1}))
    rows = {row[1]: row for row in queue.status_rows(fits)}
    assert rows["a"][3:] == ("3/3", None, "done") and rows["b"][3:] == ("2/3", None, "waiting")
    assert rows["c"][4] == 1
    queue.run(fits, streams=2, poll=0.1)
    assert (tmp_path / "started.txt").read_text() == "bcd"  # in queue order, the done one skipped
    assert all(queue.epochs_done(f) == 3 for f in fits)
    events = (tmp_path / "events.txt").read_text()
    at_once = [events[:i].count("+") - events[:i].count("-") for i in range(len(events) + 1)]
    assert max(at_once) == 2  # two side by side, never three


def test_a_fit_that_stops_short_is_reported_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    fits = fake_fits(tmp_path, monkeypatch, fail="b")
    queue.run(fits, streams=1, poll=0.1)
    assert (tmp_path / "started.txt").read_text() == "abcd"
    assert "seed0-e3 stopped short" in capsys.readouterr().out


def test_a_bad_queue_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "queue.yaml"
    bad.write_text("fits:\n  - {script: other.py, config: configs/studies/vlap_pilot.yaml, variant: a, epochs: 1}\n")
    with pytest.raises(SystemExit, match="fit 1: script must be one of"):
        queue.load_queue(bad)
    bad.write_text("fits:\n  - {script: vlap_pilot.py, config: configs/nope.yaml, variant: a, epochs: 1}\n")
    with pytest.raises(SystemExit, match="no config 'configs/nope.yaml'"):
        queue.load_queue(bad)


def test_the_committed_queue_names_known_variants() -> None:
    for fit in queue.load_queue(queue.QUEUE):
        config = queue._pilot.load_config(fit["config"], queue.METHODS[fit["script"]])
        assert fit["variant"].partition("@")[0] in config["variants"], fit
