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
