"""The documentation site as a reader sees it: ``mkdocs build --strict`` into a temporary folder, then a
headless-Chromium screenshot of the home page and of one method page (VLAP).

``mkdocs build --strict`` alone passes on a site whose theme or stylesheets never load (an empty page is
valid HTML), so the pictures are checked: not blank, Material's coloured header band across the top (the
theme's CSS was applied), text in the body, and two different pages (each page has its own content).
Skips, saying why, without mkdocs (the ``docs`` extra) or without Chromium. About 10-15 s on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from headless_chromium import need_chromium, screenshot

ROOT = Path(__file__).resolve().parents[2]
HEADER_INDIGO = np.array([64, 81, 181])  # mkdocs-material's default primary colour (#4051b5), the header band
HEADER_ROWS = 40  # the band is 48 px tall at this window size; its top 40 rows are checked
PAGES = {"home": "index.html", "vlap": "methods/vlap/index.html"}  # docs/index.md, docs/methods/vlap.md

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from this checkout with ``make docs``' command, into a temporary folder (site/ is left alone)."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]', or `make test-tools`)")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
               "--site-dir", str(out)]
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary; requested before ``site``, so a machine without one skips before the build."""
    return need_chromium()


@pytest.fixture(scope="module")
def shots(chromium: str, site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Each page of ``PAGES`` rendered at 1200x1600."""
    work = tmp_path_factory.mktemp("shots")
    pictures = {}
    for name, page in PAGES.items():
        assert (site / page).is_file(), f"the site has no {page}"
        image = screenshot(chromium, site / page, work / f"{name}.png", work / "profile")
        pictures[name] = np.asarray(image, dtype=np.float64)
    return pictures


@pytest.mark.parametrize("name", PAGES)
def test_the_page_renders_with_the_theme_and_its_text(shots: dict[str, np.ndarray], name: str) -> None:
    pixels = shots[name]
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 20, "a flat, blank picture"
    band = np.abs(pixels[:HEADER_ROWS] - HEADER_INDIGO).max(axis=2) < 12
    assert band.mean() > 0.9, f"no Material header band at the top ({band.mean():.0%} of it indigo): theme CSS missing?"
    body = pixels[HEADER_ROWS + 20:]
    assert (body.min(axis=2) < 100).mean() > 0.005, "no dark text in the page body"


def test_the_two_pages_differ(shots: dict[str, np.ndarray]) -> None:
    body = slice(HEADER_ROWS + 20, None)  # below the header band, which every page shares
    difference = np.abs(shots["home"][body] - shots["vlap"][body]).max(axis=2) > 60
    assert difference.mean() > 0.02, "the home page and the VLAP page render the same"
