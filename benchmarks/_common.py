"""What every benchmark script shares: Markdown tables, the machine line, and writing the output file.

Scripts run as ``python benchmarks/X.py``, so this folder is on ``sys.path`` and they import it as
``from _common import ...``. It imports neither torch nor numpy: ``asif_scale.py``'s driver must stay
small so its children's peak memory is their own, so versions are read from package metadata and
torch's thread count only when torch is already loaded.
"""

from __future__ import annotations

import datetime
import json
import numbers
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from align.atomic import atomic_path, write_json_atomic

DEFAULT_PACKAGES = ("torch", "numpy")
_MODULES = {"pot": "ot", "faiss-cpu": "faiss", "scikit-learn": "sklearn"}  # distribution -> module, where they differ


@dataclass(frozen=True)
class MeanStd:
    """Runs of one measurement (one per seed); a table cell shows ``mean ± sample std``, or the value
    alone when there is a single run, so deterministic methods do not get a spurious ``± 0``."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def format(self, spec: str = ".3f") -> str:
        if len(self.values) == 1:
            return fmt(self.values[0], spec)
        return f"{fmt(self.mean, spec)} ± {fmt(self.std, spec)}"


def mean_std(values: Iterable[float]) -> MeanStd:
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("mean_std needs at least one value")
    return MeanStd(values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (numbers.Real, MeanStd)) and not isinstance(value, bool)


def fmt(value: Any, spec: str = ".3f", missing: str = "") -> str:
    """One cell. ``spec`` is a format spec (``.3f``) or a template (``{:.2f}x``); it applies to floats and
    :class:`MeanStd`; integers print whole, ``None`` prints ``missing``, anything else as ``str``."""
    if value is None:
        return missing
    if isinstance(value, MeanStd):
        return value.format(spec)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return spec.format(value) if "{" in spec else format(value, spec)
    return str(value)


def _escape(text: str) -> str:
    """A pipe or a line break inside a cell would end the cell or the row."""
    return text.replace("\n", " ").replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], formats: str | Sequence[str] = ".3f",
                   align: str | None = None, missing: str = "") -> list[str]:
    """Lines of a Markdown table (no blank line around it).

    ``formats``: one spec for every column or one per column (see :func:`fmt`). ``align``: one letter per
    column, ``l`` or ``r``; by default a column is right-aligned when all its present cells are numbers."""
    rows = [list(r) for r in rows]
    width = len(header)
    for r in rows:
        if len(r) != width:
            raise ValueError(f"row {r!r} has {len(r)} cells; the header has {width}")
    specs = [formats] * width if isinstance(formats, str) else list(formats)
    if len(specs) != width:
        raise ValueError(f"{len(specs)} formats for {width} columns")
    if align is None:
        align = "".join("r" if any(r[c] is not None for r in rows)
                        and all(r[c] is None or _is_number(r[c]) for r in rows) else "l" for c in range(width))
    if len(align) != width or set(align) - {"l", "r"}:
        raise ValueError(f"align must be {width} letters l or r, got {align!r}")
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |",
             "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    for r in rows:
        lines.append("| " + " | ".join(_escape(fmt(v, s, missing)) for v, s in zip(r, specs)) + " |")
    return lines


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _version(distribution: str) -> str | None:
    """The loaded module's ``__version__`` when there is one (torch's carries its build, ``+cu130``),
    else the installed distribution's, else ``None``."""
    module = sys.modules.get(_MODULES.get(distribution, distribution))
    loaded = getattr(module, "__version__", None)
    if isinstance(loaded, str):
        return loaded
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def machine_info(threads: int | None = None, packages: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """The facts a timing depends on. ``threads``: what the run used; by default torch's thread count
    when torch is already imported (never imported here), else left out."""
    if threads is None and "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    versions = {name: _version(name) for name in packages}
    return {"cpu": _cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(), "usable_cores": _usable_cores(),
            "threads": threads, "python": platform.python_version(), "versions": versions,
            "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "date": datetime.date.today().isoformat()}


def machine_line(threads: int | None = None, packages: Sequence[str] = DEFAULT_PACKAGES, load: bool = False,
                 info: Mapping[str, Any] | None = None) -> str:
    """``Machine: <cpu> (<arch>), <n> cores, <t> threads, torch <v>, numpy <v>, Python <v>, <date>.``;
    ``load`` adds the load average, for runs on cores shared with other jobs."""
    info = info or machine_info(threads, packages)
    cores = f"{info['cores']} cores"
    if info.get("usable_cores") and info["usable_cores"] != info["cores"]:
        cores += f" ({info['usable_cores']} usable)"
    parts = [f"{info['cpu']} ({info['arch']})", cores]
    if info.get("threads"):
        parts.append(f"{info['threads']} thread{'s' if info['threads'] != 1 else ''}")
    parts += [f"{name} {v}" for name, v in info["versions"].items() if v]
    parts.append(f"Python {info['python']}")
    if load and info.get("load"):
        parts.append("load average " + ", ".join(f"{x:.1f}" for x in info["load"]))
    return f"Machine: {', '.join(parts)}, {info['date']}."


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (ending in a newline) so README updates never copy a half-written file (with a
    plain file's mode under the umask, as every ``align.atomic`` write ends)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text if text.endswith("\n") else text + "\n")


def save_figure(fig: Any, path: Path, dpi: float | None = None) -> None:
    """Write a matplotlib figure as a PNG atomically (a README figure is never half written) and close it;
    ``dpi`` None keeps the figure's own."""
    import matplotlib.pyplot as plt

    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi="figure" if dpi is None else dpi)
    plt.close(fig)


def emit(text: str, output: Path | None) -> None:
    """Print the report and, when ``output`` is given, write it there atomically."""
    print(text.rstrip("\n"))
    if output is not None:
        write_atomic(output, text)


def saved_run(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The result saved at ``path`` by :func:`cached_run` if it was made with ``key``, else None."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == json.loads(json.dumps(key)) else None


def cached_run(path: Path, key: Mapping[str, Any], make: Callable[[], dict[str, Any]],
               log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)) -> dict[str, Any]:
    """The result saved at ``path`` if it was made with ``key`` (hyper-parameters and data), else ``make()``
    saved there atomically with its key: a long study that is interrupted resumes where it stopped, and
    a changed setting is never answered by a stale file. Plain JSON: nothing is unpickled."""
    key = json.loads(json.dumps(key))  # JSON's own types, so a saved key compares equal
    saved = saved_run(path, key)
    if saved is not None:
        return saved
    if path.is_file():
        log(f"{path}: unreadable or made with other settings; rerunning")
    result = make() | {"key": key}
    write_json_atomic(path, result)
    return result
