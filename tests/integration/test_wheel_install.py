"""The release as a user gets it: ``python -m build`` makes the sdist and, from the sdist, the wheel; the wheel is
installed into a fresh virtualenv and ``align`` runs from a folder outside the checkout.

What it guards: a file align reads at run time (a prompt template, an encoder JSON, the default benchmark config
and the aligner configs it names) that the editable install finds in the checkout but that ``package-data`` in
pyproject.toml leaves out of the wheel. Every such file of ``align/`` must be in the sdist and in the wheel, and
``align bench`` with no ``--config`` must start on the packaged default and write its first result.

Dependencies are not reinstalled (torch alone is gigabytes): the wheel goes in with ``--no-deps`` and a ``.pth``
file puts this interpreter's site-packages after the new virtualenv's own, so ``align`` itself is imported from
the wheel (checked with ``align.__file__``) and everything else from the project's environment. The build runs
with ``--no-isolation`` (this environment's setuptools; no package index needed) on a copy of the files git
knows (tracked, or untracked and not ignored), as in a fresh clone.

Cost: about 7 s to build and install; the benchmark is stopped (SIGTERM, as a user would stop it) once its first
result is written (the emoji entry's features, one ridge fit and its scores): about 20 s in all on a warm feature
cache, 3 minutes on a cold one (2 cores shared with training runs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import align
from conftest import need_asset

ROOT = Path(__file__).resolve().parents[2]
BENCH_ASSETS = ("mobilenet_v2.imagenet1k_v1", "all-minilm-l6-v2", "emoji-google")  # the default's first entry
FIRST_RESULT_TIMEOUT_S = 900

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def package_files() -> set[str]:
    """Every file under ``align/`` as the wheel should hold it (``align/configs`` is a link: followed), caches aside."""
    found = set()
    for folder, _, names in os.walk(ROOT / "align", followlinks=True):
        if "__pycache__" not in Path(folder).parts:
            found |= {(Path(folder) / name).relative_to(ROOT).as_posix() for name in names if not name.endswith(".pyc")}
    return found


def copy_checkout(dest: Path) -> Path:
    """The files git knows, copied (links kept as links) to ``dest``: what a fresh clone would build from."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if os.path.lexists(source):  # a tracked file deleted in the working tree is not built
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built by ``python -m build`` (sdist first, the wheel from it)."""
    pytest.importorskip("build", reason="the `build` package is not installed (pip install -e '.[dev]')")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files to build from")
    work = tmp_path_factory.mktemp("release")
    source = copy_checkout(work / "source")
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return work / "dist"


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel alone; this environment's site-packages come after it (a .pth file)."""
    (wheel,) = dist.glob("align-*.whl")
    env = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site) / "zz_project_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return env


def outside(tmp_path: Path) -> dict[str, Any]:
    """Where the new virtualenv's commands run: an empty folder outside the checkout, with no PYTHONPATH."""
    folder = tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return {"cwd": folder, "env": env}


def run_outside(venv: Path, tmp_path: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` of the new virtualenv (its bin/) with ``args``, from outside the checkout."""
    return subprocess.run([str(venv / "bin" / command), *args], capture_output=True, text=True, timeout=300,
                          **outside(tmp_path))


def test_sdist_and_wheel_hold_every_file_of_the_package(dist: Path) -> None:
    (sdist,) = dist.glob("align-*.tar.gz")
    (wheel,) = dist.glob("align-*.whl")
    expected = package_files()
    assert {"align/configs/bench/default.yaml", "align/configs/aligners/asif.yaml",
            "align/data/templates/emoji.txt", "align/encoders/configs/align-tiny-clip.json"} <= expected
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        in_sdist = {member.name.removeprefix(f"{top}/") for member in archive.getmembers() if member.isfile()}
    assert not expected - in_sdist, f"missing from the sdist: {sorted(expected - in_sdist)}"
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert not expected - in_wheel, f"missing from the wheel: {sorted(expected - in_wheel)}"


def test_the_installed_align_is_the_wheel_and_prints_its_version(venv: Path, tmp_path: Path) -> None:
    where = run_outside(venv, tmp_path, "python", "-c", "import align; print(align.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), f"align imported from {where.stdout.strip()}, not the wheel"
    version = run_outside(venv, tmp_path, "align", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"align {align.__version__}", version


def test_align_bench_runs_the_packaged_default_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    for name in BENCH_ASSETS:
        need_asset(name)
    results, log = tmp_path / "results", tmp_path / "bench.log"  # a file, not a pipe nobody reads while it runs
    with log.open("w") as output:
        bench = subprocess.Popen([str(venv / "bin" / "align"), "bench", "--results", str(results), "--quiet"],
                                 stdout=output, stderr=subprocess.STDOUT, **outside(tmp_path))
        try:
            deadline = time.monotonic() + FIRST_RESULT_TIMEOUT_S
            while not list(results.glob("*/ridge/*.json")):
                assert bench.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no result of the default benchmark appeared"
                time.sleep(0.5)
            bench.send_signal(signal.SIGTERM)  # one result is the proof; the whole default takes minutes
            bench.wait(timeout=300)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
    assert bench.returncode in (0, 128 + signal.SIGTERM), log.read_text()[-3000:]
    first = json.loads(next(results.glob("*/ridge/*.json")).read_text())
    assert Path(first["config_path"]).is_relative_to(venv), first["config_path"]  # the copy in the wheel
    assert first["config"] == yaml.safe_load((ROOT / "configs" / "bench" / "default.yaml").read_text())
    report = run_outside(venv, tmp_path, "align", "report", str(results))
    assert report.returncode == 0, report.stderr
    assert "emoji" in report.stdout and "ridge" in report.stdout, report.stdout
