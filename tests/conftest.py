"""Shared test setup: no model hub, and a clear rule for integration tests' assets.

Integration tests need assets that `make test` pulls first. Run by hand without them, they skip
with the command that fetches them; under `make test` or CI (ALIGN_REQUIRE_ASSETS=1 or CI=true) a
missing asset is a failure, so a green run always means the real weights were exercised.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _assets_required() -> bool:
    return os.environ.get("ALIGN_REQUIRE_ASSETS") == "1" or os.environ.get("CI", "").lower() == "true"


def need_asset(name: str) -> Path:
    """Root folder of a pulled asset; skip (or fail under CI) when it is absent."""
    from align.assets import require
    from align.errors import AssetMissingError

    try:
        return require(name)
    except AssetMissingError as err:
        if _assets_required():
            pytest.fail(str(err))
        pytest.skip(str(err))


def need_tool(found: bool, message: str) -> None:
    """Skip a test whose optional tool (Ray) is missing; under CI (CI=true, where `make test` installs it)
    fail instead, so the optional feature is exercised there."""
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ALIGN_HOME, so asset tests never touch the real cache."""
    home = tmp_path / "align-home"
    monkeypatch.setenv("ALIGN_HOME", str(home))
    return home


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test, so every sum is reduced in the same order (fits compared bit for bit)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
