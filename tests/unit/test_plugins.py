"""Third-party parts arrive through the ``align.plugins`` entry point, in a fresh process."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
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


BUILT_IN_ALIGNERS = ("ridge", "asif", "vlap", "lqae", "codebook_vlp")


def checkout_without_dist_info(tmp_path: Path) -> dict[str, str]:
    """A fresh copy of the package on a path with no ``align`` dist-info (a source checkout that was never
    installed), beside a mirror of site-packages without align's dist-info and editable hook; for ``python -S``."""
    src, site_dir = tmp_path / "src", tmp_path / "site"
    shutil.copytree(Path(__file__).resolve().parents[2] / "align", src / "align",
                    ignore=shutil.ignore_patterns("__pycache__"))
    site_dir.mkdir()
    for packages in map(Path, site.getsitepackages()):
        for entry in packages.iterdir():
            name = entry.name.lower()
            if name == "align" or name.startswith(("align-", "align.", "__editable__")) or name.endswith(".pth"):
                continue
            if not (site_dir / entry.name).exists():
                (site_dir / entry.name).symlink_to(entry)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(site_dir)])}


def test_built_ins_register_without_the_entry_point(tmp_path: Path) -> None:
    env = checkout_without_dist_info(tmp_path)
    code = (
        "import importlib.metadata as m, align, json;"
        "from align.registry import ALIGNERS, PLUGIN_GROUP;"
        "print(json.dumps({'file': align.__file__, 'eps': [e.value for e in m.entry_points(group=PLUGIN_GROUP)],"
        " 'dists': [d.metadata['Name'] for d in m.distributions() if d.metadata['Name'] == 'align'],"
        " 'aligners': ALIGNERS.list()}))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)  # not the checkout: '' on sys.path would find its align first
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["file"].startswith(str(tmp_path / "src")) and seen["eps"] == [] and seen["dists"] == []
    assert set(BUILT_IN_ALIGNERS) <= set(seen["aligners"]), seen["aligners"]

    listed = subprocess.run([sys.executable, "-S", "-m", "align", "list", "aligners"], capture_output=True, text=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert all(re.search(rf"^\s*{name}\b", listed.stdout, re.M) for name in BUILT_IN_ALIGNERS), listed.stdout


def test_the_builtins_entry_point_is_not_loaded_again_and_third_party_ones_once(monkeypatch) -> None:  # noqa: ANN001
    from align import registry

    loaded = []

    class FakeEntryPoint:
        def __init__(self, name: str, value: str) -> None:
            self.name, self.value = name, value

        def load(self) -> None:
            loaded.append(self.value)

    found = [FakeEntryPoint("zoo", "zoo_plugin"), FakeEntryPoint("builtins", "align.builtins"),
             FakeEntryPoint("zoo", "zoo_plugin")]  # the same dist-info twice on sys.path
    monkeypatch.setattr(registry, "entry_points", lambda group: found if group == registry.PLUGIN_GROUP else [])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    registry.load_plugins()
    registry.load_plugins()
    assert loaded == ["zoo_plugin"]
    assert "align.builtins" in sys.modules and "ridge" in registry.ALIGNERS.list()
