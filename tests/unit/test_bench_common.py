"""``benchmarks/_common.py``: the Markdown tables, machine line and output file all benchmark scripts share."""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_common_under_test", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


common = load_common()


def test_table_formats_numbers_and_aligns_numeric_columns_right() -> None:
    lines = common.markdown_table(
        ("method", "dim", "R@1", "speed-up"),
        [("ridge", 384, 0.12345, 2.0), ("a|b", 1280, 1.0, None)],
        formats=("", "d", ".3f", "{:.1f}x"))
    assert lines == [
        "| method | dim | R@1 | speed-up |",
        "|---|---:|---:|---:|",
        "| ridge | 384 | 0.123 | 2.0x |",
        "| a\\|b | 1280 | 1.000 |  |",
    ]


def test_table_missing_cells_explicit_alignment_and_bad_rows() -> None:
    lines = common.markdown_table(("k", "x"), [("all", None), (5, 0.5)], align="rr", missing="–")
    assert lines == ["| k | x |", "|---:|---:|", "| all | – |", "| 5 | 0.500 |"]
    assert common.markdown_table(("a",), [("text",)])[1] == "|---|"
    with pytest.raises(ValueError, match="2 cells"):
        common.markdown_table(("a",), [(1, 2)])
    with pytest.raises(ValueError, match="align"):
        common.markdown_table(("a", "b"), [(1, 2)], align="lc")


def test_mean_std_cell_is_mean_and_sample_std_and_a_single_run_prints_alone() -> None:
    three = common.mean_std([0.1, 0.2, 0.3])
    assert three.format() == "0.200 ± 0.100"
    assert three.mean == pytest.approx(0.2) and three.std == pytest.approx(0.1)
    one = common.mean_std([0.25])
    assert one.format(".2f") == "0.25" and one.std == 0.0
    lines = common.markdown_table(("metric", "full", "diff"), [("acc1", three, common.mean_std([1, 3]))])
    assert lines[1:] == ["|---|---:|---:|", "| acc1 | 0.200 ± 0.100 | 2.000 ± 1.414 |"]
    with pytest.raises(ValueError):
        common.mean_std([])


def test_machine_line_names_cpu_cores_threads_versions_and_date() -> None:
    info = common.machine_info(threads=3, packages=("numpy", "no-such-package-xyz"))
    assert info["cores"] == os.cpu_count() and info["threads"] == 3
    assert info["python"] == platform.python_version()
    assert info["versions"]["no-such-package-xyz"] is None
    line = common.machine_line(threads=3, packages=("numpy", "no-such-package-xyz"), load=True)
    import numpy

    assert line.startswith(f"Machine: {info['cpu']} ({platform.machine()}), {os.cpu_count()} cores")
    assert ", 3 threads, " in line and f"numpy {numpy.__version__}" in line and "no-such-package" not in line
    assert f"Python {platform.python_version()}" in line and "load average" in line
    assert line.endswith(f", {datetime.date.today().isoformat()}.")


def test_machine_line_from_given_facts() -> None:
    info = {"cpu": "Toy CPU", "arch": "x86_64", "cores": 8, "usable_cores": 2, "threads": 1, "python": "3.11.7",
            "versions": {"torch": "2.14.1+cpu", "numpy": None}, "load": (1.0, 0.5, 0.25), "date": "2030-01-02"}
    assert common.machine_line(info=info) == (
        "Machine: Toy CPU (x86_64), 8 cores (2 usable), 1 thread, torch 2.14.1+cpu, Python 3.11.7, 2030-01-02.")


def test_machine_line_neither_imports_torch_nor_numpy() -> None:
    """asif_scale.py's driver prints it and must stay small, so its children's peak memory is their own."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _common; line = _common.machine_line();"
            "print('torch' in line, sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(BENCHMARKS)], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "True []"


def test_write_atomic_replaces_the_file_with_a_plain_mode_and_a_final_newline(tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.md"
    common.write_atomic(target, "old")
    common.write_atomic(target, "| a |\n")
    assert target.read_text() == "| a |\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["table.md"]  # no temporary file left behind


def test_every_script_uses_the_shared_helpers() -> None:
    """No private table writer, machine line or plain (non-atomic) output write left in a script."""
    for script in sorted(BENCHMARKS.glob("*.py")):
        if script.name.startswith("_"):  # shared helpers (_common.py, _lqae_data.py), not scripts
            continue
        if script.name == "generated.py":  # writes nothing itself: it runs the scripts that write the pages
            continue
        source = script.read_text()
        assert "from _common import" in source, script.name
        for private in ("platform.", ".write_text(", "Machine:", "|---"):
            assert private not in source, f"{script.name} still has its own {private!r}"


def test_a_saved_run_is_reused_only_for_the_same_key(tmp_path: Path) -> None:
    calls = []

    def make() -> dict:
        calls.append(1)
        return {"i2t_r1": 0.5}

    path, said = tmp_path / "run.json", []
    key = {"hparams": {"max_epochs": 2, "weights": {}}, "grid": (1, 2)}
    assert common.cached_run(path, key, make, said.append)["i2t_r1"] == 0.5
    assert common.cached_run(path, key, make, said.append)["key"] == {"hparams": {"max_epochs": 2, "weights": {}},
                                                                      "grid": [1, 2]}  # tuples saved as lists
    assert len(calls) == 1 and not said
    common.cached_run(path, key | {"hparams": {"max_epochs": 4, "weights": {}}}, make, said.append)
    assert len(calls) == 2 and "other settings" in said[0]
    path.write_text("{not json")  # a torn or hand-edited file is redone, never trusted
    assert common.cached_run(path, key, make, said.append)["i2t_r1"] == 0.5 and len(calls) == 3


def test_save_figure_writes_a_whole_png_with_a_plain_mode_and_closes_the_figure(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [1, 0])
    target = tmp_path / "figures" / "plot.png"
    common.save_figure(fig, target, dpi=100)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_mode & 0o044  # readable by others, unlike the private temporary file
    assert not plt.fignum_exists(fig.number) and not list(target.parent.glob(".*.part"))
    from PIL import Image

    assert Image.open(target).size == (200, 100)  # dpi=100 over the figure's own 50


# ------------------------------------------------------------------------------- per-item outputs

def every_kind() -> dict:
    """One per-item output of each kind, small."""
    import numpy as np

    from align.eval.items import CaptionItems, ClassificationItems, CodeItems, MeanItems, RetrievalItems

    labels = np.array([0, 1, 2, 1], dtype=np.int64)
    return {"probe": ClassificationItems(np.array([[0, 1], [2, 1], [2, 0], [1, 0]], dtype=np.int64), labels, 3),
            "retrieval": RetrievalItems(np.array([0, 3, 1, 0, 2], dtype=np.int64), np.array([0, 1, -1, 2], dtype=np.int64),
                                        np.array([0, 1, 1, 3, 0], dtype=np.int64), (1, 5)),
            "captions": CaptionItems(np.array([0.5, 1.0], dtype=np.float64), ("a cat", "ä dog"), (("a cat",), ("dog", "a dog"))),
            "codes": CodeItems(np.array([[5, 7], [5, 5], [9, 7], [7, 7]], dtype=np.int64), labels, 3),
            "rec": MeanItems(np.array([0.1, 0.2, 0.3, 0.4]), "rec"),
            "episodes": MeanItems(np.array([1.0, 0.0]), "episode_acc", np.array([4, 9], dtype=np.int64))}


def test_a_runs_items_round_trip_through_one_safetensors_file_sealed_by_its_json(tmp_path: Path) -> None:
    import numpy as np

    items = every_kind()
    path = tmp_path / "run.json"
    record = common.write_run_items(path, items)
    assert record["file"] == "run.items.safetensors" and (tmp_path / record["file"]).is_file()
    assert record["entries"]["retrieval"] == {"kind": "retrieval", "num_units": 4}
    back = common.read_run_items(path, {"items": record})
    assert list(back) == list(items)
    for name, found in items.items():
        again = back[name]
        assert type(again) is type(found) and again.meta() == found.meta(), name
        assert all(np.array_equal(again.arrays()[k], v) and again.arrays()[k].dtype == v.dtype
                   for k, v in found.arrays().items()), name
    assert back["codes"].metrics() == items["codes"].metrics()
    assert back["codes"].codes.dtype == np.int64  # read back as ids, whatever they were stored as
    assert common.read_run_items(path, {"probe": 0.5}) is None  # a run saved before items were kept
    (tmp_path / record["file"]).write_bytes((tmp_path / record["file"]).read_bytes()[:-3] + b"xyz")
    with pytest.raises(common.RunItemsProblem, match="changed or damaged"):
        common.read_run_items(path, {"items": record})


def test_codes_are_stored_in_the_narrowest_type_that_holds_them(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    from align.eval.items import CodeItems

    labels = np.zeros(3, dtype=np.int64)
    for top, stored in ((255, np.uint8), (8191, np.uint16), (70_000, np.uint32)):
        codes = np.array([[0, top], [1, 2], [top, 0]], dtype=np.int64)
        record = common.write_run_items(tmp_path / "run.json", {"codes": CodeItems(codes, labels, 0)})
        assert load_file(str(tmp_path / record["file"]))["codes/codes"].dtype == stored, top
        back = common.read_run_items(tmp_path / "run.json", {"items": record})["codes"]
        assert back.codes.dtype == np.int64 and np.array_equal(back.codes, codes)


def test_cached_run_keeps_items_reruns_when_they_are_damaged_and_reuses_older_runs_without_them(tmp_path: Path) -> None:
    import json

    import numpy as np

    from align.eval.items import MeanItems

    calls, said = [], []

    def make() -> dict:
        calls.append(1)
        return {"rec": 0.25, common.PER_ITEM: {"rec": MeanItems(np.array([0.0, 0.5]), "rec")}}

    path, key = tmp_path / "run.json", {"seed": 0}
    made = common.cached_run(path, key, make, said.append, items=True)
    assert made[common.PER_ITEM]["rec"].value("rec") == 0.25 and common.PER_ITEM not in json.loads(path.read_text())
    again = common.cached_run(path, key, make, said.append, items=True)
    assert len(calls) == 1 and np.array_equal(again[common.PER_ITEM]["rec"].values, [0.0, 0.5])
    assert common.saved_run(path, key, items=True, log=said.append)[common.PER_ITEM]["rec"].num_units == 2
    assert common.PER_ITEM not in common.cached_run(path, key, make, said.append)  # a caller without items
    common.run_items_path(path).unlink()
    common.cached_run(path, key, make, said.append, items=True)
    assert len(calls) == 2 and "missing; rerunning" in said[-1]
    old = json.loads(path.read_text())
    del old["items"]
    path.write_text(json.dumps(old))  # as saved before per-item outputs were kept
    reused = common.cached_run(path, key, make, said.append, items=True)
    assert len(calls) == 2 and reused[common.PER_ITEM] is None and "reported without intervals" in said[-1]
    assert common.saved_run(path, key, items=True, log=said.append)[common.PER_ITEM] is None
    common.cached_run(path, key, make, said.append, items=True, redo_without_items=True)
    assert len(calls) == 3 and "items" in json.loads(path.read_text())


def test_claim_cells_interval_verdict_and_signs() -> None:
    import numpy as np

    from align.eval.bootstrap import Bootstrap
    from align.eval.items import MeanItems

    boot = Bootstrap(resamples=200)
    rng = np.random.default_rng(1)
    a = {s: MeanItems(rng.normal(1.0, 0.1, 300), "err") for s in (0, 1, 2)}
    b = {s: MeanItems(a[s].values + 0.2 + rng.normal(0, 0.01, 300), "err") for s in (0, 1, 2)}
    va, vb = ({s: i.value("err") for s, i in x.items()} for x in (a, b))
    lower = common.claim_cells(va, vb, a, b, "err", boot, higher=False)
    assert lower.seeds_better == "3/3" and lower.verdict == "lower (better)" and lower.interval.startswith("-0.200 [")
    assert common.claim_cells(vb, va, b, a, "err", boot).verdict == "higher (better)"
    assert common.claim_cells(vb, va, b, a, None, boot).interval == "not resampled"
    assert common.claim_cells(vb, va, None, a, "err", boot).verdict == "–"
    cell = common.interval_cell(list(va.values()), list(a.values()), "err", boot)
    assert cell.count("±") == 1 and cell.endswith("]")


def test_verdict_lines_say_per_claim_where_it_held_went_the_other_way_or_cannot_be_told() -> None:
    cells = common.ClaimCells
    lines = common.verdict_lines([
        ("a − b", "emoji R@1", cells("0.1 ± 0.0", "[0.05, 0.15]", "3/3", "higher (better)")),
        ("a − b", "emoji acc1", cells("0.0 ± 0.0", "[-0.02, 0.02]", "2/3", "cannot be told apart")),
        ("a − b", "shapes acc1", cells("-0.1 ± 0.0", "[-0.2, -0.1]", "0/3", "lower (worse)")),
        ("a − c", "emoji R@1", cells("0.0 ± 0.0", "no per-item outputs", "1/2", "–")),
        ("a − c", "emoji R@5", cells("0.0 ± 0.0", "[-0.1, 0.1]", "1/2", "cannot be told apart"))])
    assert lines == [
        "- **a − b** (3 cells): better on emoji R@1 (3/3 seeds); worse on shapes acc1 (0/3 seeds better); "
        "cannot be told apart on 1.",
        "- **a − c** (2 cells): better on none; cannot be told apart on 1; no interval on 1."]
    # lower is better: the verdict's "(better)" decides, not the direction
    assert "better on emoji NLL" in common.verdict_lines(
        [("a − b", "emoji NLL", cells("-0.1 ± 0.0", "[-0.2, -0.1]", "3/3", "lower (better)"))])[0]


def test_a_claimed_run_is_busy_for_every_other_holder_until_released(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "fit.json"
    with common.claimed(path):
        with pytest.raises(common.RunBusy, match="another process is making this run"):
            with common.claimed(path):
                pass
        with pytest.raises(common.RunBusy):
            common.cached_run(path, {"k": 1}, lambda: pytest.fail("made a run another holder is making"),
                              when_busy="skip")
    with common.claimed(path):  # released
        pass
    assert not path.exists() and [p.name for p in (path.parent / ".locks").iterdir()] == ["fit.json.lock"]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "fit.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); import _common; "
         "cm = _common.claimed(__import__('pathlib').Path(sys.argv[2])); cm.__enter__(); print('held', flush=True); "
         "time.sleep(60)", str(BENCHMARKS), str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(common.RunBusy):
            with common.claimed(path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with common.claimed(path):  # the kernel dropped the killed process's lock
        pass


def test_a_waiting_run_reads_what_the_holder_saved_instead_of_making_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    path, key, said = tmp_path / "fit.json", {"hparams": {"seed": 0}}, []
    ready = threading.Event()

    def other_process() -> None:  # holds the lock, then saves the run as cached_run would
        with common.claimed(path):
            ready.set()
            time.sleep(0.3)
            common.write_json_atomic(path, {"i2t_r1": 0.25, "key": key})

    monkeypatch.setattr(common, "BUSY_POLL_SECONDS", 0.05)
    holder = threading.Thread(target=other_process)
    holder.start()
    ready.wait()
    found = common.cached_run(path, key, lambda: pytest.fail("made a run another holder saved"), said.append)
    holder.join()
    assert found["i2t_r1"] == 0.25 and len(said) == 1 and "waiting for it" in said[0]
    with pytest.raises(ValueError, match="when_busy"):
        common.cached_run(path, key, dict, when_busy="later")


def test_a_busy_run_inside_make_is_not_taken_for_this_runs_lock(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    inner = tmp_path / "inner.json"
    monkeypatch.setattr(common, "time", SimpleNamespace(sleep=lambda seconds: pytest.fail("waited on make()'s lock")))

    def make() -> dict:  # a run whose making needs another run that a second holder is making
        return common.cached_run(inner, {"k": 2}, dict, when_busy="skip")

    with common.claimed(inner):
        with pytest.raises(common.RunBusy, match="inner.json"):
            common.cached_run(tmp_path / "outer.json", {"k": 1}, make)  # "wait" on its own lock
