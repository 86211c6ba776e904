"""Headless Chromium screenshots for the rendering tests (the HTML report's and the documentation site's).

Chromium is optional: ``make test-tools`` installs Debian's ``chromium`` where apt can, and elsewhere the
rendering tests skip and say why instead of failing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def chromium() -> str | None:
    """A Chromium or Chrome binary (``ALIGN_CHROMIUM`` first), or None."""
    named = os.environ.get("ALIGN_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def need_chromium() -> str:
    """The Chromium binary, or skip the test saying how to get one (it is optional, see the module docstring)."""
    binary = chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (install Debian's `chromium`, or set ALIGN_CHROMIUM)")
    return binary


def screenshot(binary: str, page: Path, out: Path, profile: Path, size: str = "1200,1600") -> Image.Image:
    """Render ``page`` headless to ``out`` (a PNG) and open it."""
    subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={size}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return Image.open(out).convert("RGB")
