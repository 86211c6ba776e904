from __future__ import annotations

import pytest

from align.errors import DuplicateNameError, UnknownNameError
from align.registry import Registry


@pytest.fixture
def registry() -> Registry[str]:
    reg: Registry[str] = Registry("widgets")

    @reg.register("toy:alpha", embed_dim=8, license="MIT", description="first")
    def alpha(scale: int = 1) -> str:
        return f"alpha x{scale}"

    reg.add("toy:beta.v2", lambda: "beta", embed_dim=16)
    reg.add("real:gamma10", lambda: "g10")
    reg.add("real:gamma9", lambda: "g9")
    return reg


def test_create_passes_kwargs_and_keeps_metadata(registry: Registry[str]) -> None:
    assert registry.create("toy:alpha", scale=3) == "alpha x3"
    meta = registry.meta("toy:alpha")
    assert (meta.embed_dim, meta.license, meta.source) == (8, "MIT", "toy")


def test_list_filters_with_fnmatch_in_natural_order(registry: Registry[str]) -> None:
    assert registry.list("toy:*") == ["toy:alpha", "toy:beta.v2"]
    assert registry.list("real:*") == ["real:gamma9", "real:gamma10"]
    assert "toy:alpha" in registry and "toy:nope" not in registry


def test_duplicate_name_is_an_error(registry: Registry[str]) -> None:
    with pytest.raises(DuplicateNameError, match="toy:alpha"):
        registry.add("toy:alpha", lambda: "again")


def test_unknown_name_suggests_close_matches(registry: Registry[str]) -> None:
    with pytest.raises(UnknownNameError) as info:
        registry.create("toy:alpah")
    message = str(info.value)
    assert "unknown widgets 'toy:alpah'" in message and "toy:alpha" in message
    assert "\n" not in message


@pytest.mark.parametrize("bad", ["alpha", "Toy:alpha", "toy:", "toy:has space"])
def test_names_must_have_a_source_prefix(registry: Registry[str], bad: str) -> None:
    with pytest.raises(ValueError, match="<source>:<identifier>"):
        registry.add(bad, lambda: "x")


def test_open_ended_source_builds_any_identifier(registry: Registry[str]) -> None:
    @registry.register_source("lib", description="anything lib can build")
    def from_lib(identifier: str, suffix: str = "") -> str:
        return identifier + suffix

    assert registry.create("lib:resnet50.a1", suffix="!") == "resnet50.a1!"
    assert registry.meta("lib:resnet50.a1").name == "lib:resnet50.a1"
    assert "lib:*" in registry.list()
    with pytest.raises(DuplicateNameError):
        registry.register_source("lib")(from_lib)
