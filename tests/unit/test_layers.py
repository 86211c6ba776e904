"""Imports point one way: registry and assets <- encoders and data <- methods <- evaluation <- runner and CLI.

Checked statically on every ``import`` statement (including those inside functions), so a lazy
import cannot hide a backwards dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "align"

# Lower number = lower layer. A module may import from its own layer or any lower one.
LAYERS = {
    "align.errors": 0, "align.atomic": 0, "align.checksum": 0, "align.registry": 0, "align.assets": 0,
    "align.precision": 0,  # encoder precision names: the registry builds "<name>@bfloat16"
    # kernels sit beside the data layer (ASIF's anchor reader streams verified feature-cache shards)
    # and below every method: they can be tested and timed without one
    "align.kernels": 1,
    "align.encoders": 1, "align.text": 1, "align.data": 1, "align.embed": 1, "align.features": 1,
    "align.methods": 2,
    "align.eval": 3,
    "align.bench": 4, "align.cli": 4, "align.__main__": 4, "align.builtins": 4,
}


def layer_of(module: str) -> int | None:
    for prefix, layer in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.startswith("align")}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    module = "align." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    own = layer_of(module)
    assert own is not None, f"{module} is not assigned to a layer in {__file__}"
    upward = sorted(name for name in imported(path) if (layer_of(name) or 0) > own)
    assert not upward, f"{module} (layer {own}) imports from a higher layer: {upward}"


METHODS_OF_THE_PAPERS = ("asif", "vlap", "lqae", "codebook_vlp")
BASELINES = ("ridge", "procrustes", "contrastive", "clip")


def test_each_method_lives_in_a_folder_named_after_it() -> None:
    """A method of the papers is a subpackage ``align/methods/<name>/`` holding its aligner and parts;
    a baseline is one file ``align/methods/<name>.py``; the stand-alone kernels import no method."""
    from align.registry import ALIGNERS

    for name in METHODS_OF_THE_PAPERS:
        module = ALIGNERS._entry(name).factory.__module__
        assert module.startswith(f"align.methods.{name}."), (name, module)
        assert (PACKAGE / "methods" / name / "__init__.py").is_file()
    for name in BASELINES:
        assert ALIGNERS._entry(name).factory.__module__ == f"align.methods.{name}"
    for path in (PACKAGE / "kernels").glob("*.py"):
        assert not {n for n in imported(path) if n.startswith("align.methods")}, path
    loose = {p.stem for p in (PACKAGE / "methods").glob("*.py")} - {"__init__"} - set(FORMER_PATHS) - set(BASELINES)
    assert not loose, f"files in align/methods/ that belong to no method folder: {sorted(loose)}"


# the framework's modules under the import paths they had before align/methods/framework/ (README and
# plugins import align.methods.base, .hparams and .trained; a test still imports .lightning_utils)
FORMER_PATHS = ("base", "hparams", "trained", "lightning_utils")


@pytest.mark.parametrize("name", FORMER_PATHS)
def test_former_paths_only_re_export_the_framework(name: str) -> None:
    """Each former path is a module of imports from ``align.methods.framework``, all of them in its
    ``__all__``, and nothing else."""
    import importlib

    tree = ast.parse((PACKAGE / "methods" / f"{name}.py").read_text())
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    imported_names = set()
    for node in body:
        if isinstance(node, ast.ImportFrom):
            assert node.module and node.module.startswith("align.methods.framework."), ast.dump(node)
            imported_names |= {alias.asname or alias.name for alias in node.names}
        else:
            assert isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"], ast.dump(node)
    assert set(importlib.import_module(f"align.methods.{name}").__all__) == imported_names


def test_the_framework_imports_no_method() -> None:
    """``align/methods/framework/`` is what the methods are built on: it imports none of them (a core named
    in an old checkpoint is imported by its name, :mod:`align.methods.framework.cores`)."""
    for path in (PACKAGE / "methods" / "framework").glob("*.py"):
        names = {n for n in imported(path) if n.startswith("align.methods")}
        assert all(n.startswith("align.methods.framework") for n in names), (path.name, names)


# the code maps, moved from the README onto the documentation site
CODE_MAPS = PACKAGE.parent / "docs" / "architecture.md"


def _map_block(heading: str) -> str:
    page = CODE_MAPS.read_text()
    section = page.split(heading, 1)[1]
    return section.split("```", 2)[1]


def _region(lines: list[str], folder: str) -> str:
    """The map's lines about ``folder/``: its own line and the lines under it (indented deeper)."""
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{folder}/"))
    depth = len(lines[start]) - len(lines[start].lstrip())
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= depth), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize(("heading", "folder"), [("## Where each method lives", "methods"),
                                                 ("## Where the benchmark lives", "bench")])
def test_the_code_map_names_every_file_of_the_code(heading: str, folder: str) -> None:
    """docs/architecture.md's map of a folder and the folder agree: every module is named under its own subfolder."""
    lines = _map_block(heading).splitlines()
    root = PACKAGE / folder
    for path in sorted(root.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        where = path.relative_to(root)
        text = _region(lines, where.parts[0]) if len(where.parts) > 1 else "\n".join(lines)
        assert path.name in text, f"docs/architecture.md '{heading}' does not name align/{folder}/{where}"
