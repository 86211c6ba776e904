"""Third-party parts arrive through the ``align.plugins`` entry point, in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin"


def install_example_plugin(site: Path) -> None:
    """What ``pip install examples/plugin`` leaves on sys.path: the module and its dist-info."""
    shutil.copy(EXAMPLE / "align_example_plugin.py", site)
    dist_info = site / "align_example_plugin-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: align-example-plugin\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text("[align.plugins]\nexample = align_example_plugin\n")


def run_align(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "align", *args], capture_output=True, text=True, env=env, timeout=120)


def test_entry_point_plugin_is_listed_and_built_in_a_fresh_process(tmp_path: Path) -> None:
    install_example_plugin(tmp_path)
    listed = run_align(tmp_path, "list", "encoders", "example:*")
    assert listed.returncode == 0, listed.stderr
    assert "example:mean-color" in listed.stdout
    assert "mean colour of 8x8 patches" in listed.stdout

    code = (
        "import torch; from align.registry import VISION_ENCODERS as R; e = R.create('example:mean-color');"
        "print(tuple(e(torch.zeros(2, 3, 32, 32)).shape), tuple(e.forward_tokens(torch.zeros(1, 3, 32, 32)).shape))"
    )
    built = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert built.returncode == 0, built.stderr
    assert built.stdout.split() == ["(2,", "3)", "(1,", "16,", "3)"]


def test_without_the_plugin_the_name_is_unknown(tmp_path: Path) -> None:
    result = run_align(tmp_path, "list", "encoders", "example:*")
    assert result.returncode == 0 and "example:mean-color" not in result.stdout
