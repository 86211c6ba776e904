"""No import cycles inside ``align/``, not even ones hidden by an import inside a function.

Every ``import`` statement is read with :mod:`ast` (module level, inside functions and methods, under
``if TYPE_CHECKING:``, relative forms included), so a lazy import cannot hide a loop: two modules that
need each other are one module split in the wrong place, and the shared part belongs lower down.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "align"


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` for every ``.py`` file under the package folder ``root``; a package is
    named by its folder and stands for its ``__init__.py``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _source(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads (``from . import x`` in ``a.b.c`` reads ``a.b``)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def reexports(names: dict[str, Path]) -> dict[str, dict[str, str]]:
    """``{package: {name: module it comes from}}`` for the names each ``__init__.py`` imports at its top
    level, so ``from align.features import FeatureCache`` counts as importing ``align.features.cache``."""
    found: dict[str, dict[str, str]] = {}
    for module, path in names.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.ImportFrom):
                source = _source(node, module, is_package=True)
                for alias in node.names:
                    found.setdefault(module, {})[alias.asname or alias.name] = source
    return found


def imports_of(module: str, path: Path, known: set[str],
               reexported: dict[str, dict[str, str]] | None = None) -> set[str]:
    """The modules of ``known`` that ``module`` (the file ``path``) imports anywhere in its text.

    ``import a.b.c`` imports ``a.b.c`` and the packages ``a.b`` and ``a``; ``from a.b import c`` imports
    ``a.b`` and, when ``c`` is a submodule, ``a.b.c``, or, when ``c`` is a name the package's
    ``__init__`` re-exports, the module it comes from. Edges to the module's own parent packages are
    left out: Python imports those before the module anyway, so they are no choice the module makes
    (a sibling reached through the parent's re-exports still is an edge)."""
    reexported = reexported or {}
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
                found.update(_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            source = _source(node, module, is_package)
            found.add(source)
            found.update(_parents(source))
            for alias in node.names:
                origin, seen = source, set()
                # follow re-exports (``pkg/__init__.py: from pkg.mod import name``) to the defining module
                while (f"{origin}.{alias.name}" not in known and alias.name in reexported.get(origin, {})
                       and origin not in seen):
                    seen.add(origin)
                    origin = reexported[origin][alias.name]
                    found.add(origin)
                found.add(f"{origin}.{alias.name}")
    return {name for name in found if name in known} - {module} - _parents(module)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module under the package folder ``root``."""
    names = module_names(root)
    reexported = reexports(names)
    return {module: imports_of(module, path, set(names), reexported) for module, path in names.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(graph[start])))]
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    """One loop through ``component``, written ``a -> b -> a``, then the component's other members."""
    members = set(component)
    path = [component[0]]
    while True:  # inside a strongly connected component every module has an edge to another member
        nxt = sorted(n for n in graph[path[-1]] if n in members)[0]
        if nxt in path:
            loop = path[path.index(nxt):] + [nxt]
            break
        path.append(nxt)
    rest = sorted(members - set(loop))
    return " -> ".join(loop) + (f"  (the same tangle also holds {', '.join(rest)})" if rest else "")


def test_no_import_cycles_in_align() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "align.atomic" in graph  # the walk read the package
    loops = [describe(graph, c) for c in cycles(graph)]
    assert not loops, ("import cycles in align/ (move what both modules need into the lower one, or into a "
                       "new small module below both):\n  " + "\n  ".join(loops))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_loop_hidden_inside_functions_is_found(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write(root, {
        "__init__.py": "",
        "a.py": "def f():\n    from pkg import b\n    return b.g()\n",
        "b.py": "def g():\n    from pkg.a import f\n    return f\n",
        "c.py": "import pkg.b\n",  # a one-way edge: no loop
    })
    graph = import_graph(root)
    assert graph["pkg.c"] == {"pkg.b"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert describe(graph, ["pkg.a", "pkg.b"]) == "pkg.a -> pkg.b -> pkg.a"


def test_relative_imports_inside_methods_are_edges(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write(root, {
        "__init__.py": "",
        "sub/__init__.py": "",
        "sub/a.py": "class A:\n    def m(self):\n        from .. import c\n",
        "sub/b.py": "from . import a\n",
        "c.py": "def f():\n    from .sub.b import x\n",
    })
    graph = import_graph(root)
    assert graph == {"pkg": set(), "pkg.sub": set(), "pkg.sub.a": {"pkg.c"}, "pkg.sub.b": {"pkg.sub.a"},
                     "pkg.c": {"pkg.sub", "pkg.sub.b"}}
    assert cycles(graph) == [["pkg.c", "pkg.sub.a", "pkg.sub.b"]]


def test_a_package_reexporting_its_own_modules_is_no_loop(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write(root, {
        "__init__.py": "from pkg.a import f\nfrom pkg.b import g\n",
        "a.py": "import pkg\n\ndef f():\n    from pkg.b import g\n    return g\n",
        "b.py": "from pkg import a\n",  # ``a`` is a submodule: an edge b -> a, none to the parent package
    })
    graph = import_graph(root)
    assert graph == {"pkg": {"pkg.a", "pkg.b"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]  # ... but a and b needing each other is a loop
    (root / "b.py").write_text("def g():\n    return 1\n")
    assert cycles(import_graph(root)) == []


def test_a_sibling_reached_through_the_package_reexports_is_an_edge(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write(root, {
        "__init__.py": "from pkg.base import Split\nfrom pkg.sub import thin\n",
        "base.py": "class Split:\n    def thin(self):\n        from pkg.sub import thin\n",
        "sub.py": "from pkg import Split\n",  # Split is defined in pkg.base: sub -> base
    })
    graph = import_graph(root)
    assert graph["pkg.sub"] == {"pkg.base"}
    assert cycles(graph) == [["pkg.base", "pkg.sub"]]
