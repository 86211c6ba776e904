"""What every benchmark script shares: Markdown tables, the machine line, and writing the output file.

Scripts run as ``python benchmarks/X.py``, so this folder is on ``sys.path`` and they import it as
``from _common import ...``. It imports neither torch nor numpy: ``asif_scale.py``'s driver must stay
small so its children's peak memory is their own, so versions are read from package metadata and
torch's thread count only when torch is already loaded.

The method studies (``lqae_study.py``, ``codebook_vlp_compare.py``, ``vlap_emoji.py``) keep each run's
per-item outputs (:mod:`align.eval.items`) beside its JSON and report bootstrap intervals from them
(:mod:`align.eval.bootstrap`): :func:`cached_run` with ``items=True``, :func:`interval_cell`,
:func:`claim_cells`. Those import numpy only when called.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import numbers
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from align.atomic import atomic_path, write_json_atomic
from align.checksum import file_sha256

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


ITEMS_SUFFIX = ".items.safetensors"
PER_ITEM = "per_item"  # in memory only: a run's per-item outputs {name: Items}, None when it has none


class RunItemsProblem(Exception):
    """A run's per-item outputs that cannot be used: missing, damaged, or not the ones its JSON sealed."""


def run_items_path(path: Path) -> Path:
    """``<run>.items.safetensors`` beside ``<run>.json``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".json") + ITEMS_SUFFIX)


def write_run_items(path: Path, items: Mapping[str, Any]) -> dict[str, Any]:
    """Write a run's named per-item outputs (``{name: Items}``) beside ``path`` as one safetensors file
    (arrays as ``<name>/<array>`` tensors, kinds and metadata as JSON in its header: nothing pickled),
    atomically; return the record the run's JSON keeps under ``items`` (file name, sha256, each
    entry's kind and item count), which seals the file."""
    import numpy as np
    from safetensors.numpy import save_file

    for name in items:
        if not name or "/" in name:
            raise ValueError(f"per-item outputs need a name without '/', got {name!r}")
    target = run_items_path(path)
    arrays = {f"{name}/{field}": np.ascontiguousarray(array)
              for name, found in items.items() for field, array in found.arrays().items()}
    header = {"items": json.dumps({name: {"kind": type(found).kind, "meta": found.meta()}
                                   for name, found in items.items()}, ensure_ascii=False)}
    with atomic_path(target) as tmp:
        save_file(arrays, str(tmp), metadata=header)
    return {"file": target.name, "sha256": file_sha256(target),
            "entries": {name: {"kind": type(found).kind, "num_units": found.num_units} for name, found in items.items()}}


def read_run_items(path: Path, run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The verified per-item outputs of the run saved at ``path`` (``{name: Items}``), None when it has
    none (saved before they were kept), or a :class:`RunItemsProblem` naming the file."""
    from safetensors import SafetensorError, safe_open

    from align.errors import BadInputError
    from align.eval.items import items_from_stored

    record = run.get("items")
    if record is None:
        return None
    target = run_items_path(path)
    if not isinstance(record, dict) or record.get("file") != target.name or not isinstance(record.get("entries"), dict):
        raise RunItemsProblem(f"{path}: its per-item outputs record is malformed or names another file")
    if not target.is_file():
        raise RunItemsProblem(f"{target}: per-item outputs are missing")
    try:
        if file_sha256(target) != record.get("sha256"):
            raise RunItemsProblem(f"{target}: per-item outputs changed or damaged after their run was saved")
        with safe_open(str(target), framework="np") as handle:
            described = json.loads((handle.metadata() or {}).get("items", "{}"))
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        found = {}
        for name, about in described.items():
            arrays = {key.split("/", 1)[1]: value for key, value in tensors.items() if key.split("/", 1)[0] == name}
            found[name] = items_from_stored(about["kind"], arrays, about["meta"])
    except OSError as err:
        raise RunItemsProblem(f"{target}: cannot read the per-item outputs ({err.strerror or err})") from None
    except (SafetensorError, ValueError, KeyError, TypeError, AttributeError, BadInputError) as err:
        raise RunItemsProblem(f"{target}: not valid per-item outputs ({err})") from None
    sealed = {name: (e.get("kind"), e.get("num_units")) for name, e in record["entries"].items() if isinstance(e, dict)}
    if sealed != {name: (type(i).kind, i.num_units) for name, i in found.items()}:
        raise RunItemsProblem(f"{target}: holds other per-item outputs than its run names")
    return found


def _saved(path: Path, key: Any) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def saved_run(path: Path, key: Mapping[str, Any], items: bool = False,
              log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)) -> dict[str, Any] | None:
    """The result saved at ``path`` by :func:`cached_run` if it was made with ``key``, else None. With
    ``items``, it carries its verified per-item outputs under :data:`PER_ITEM` (None, logged, when it
    has none or they are damaged: it is then reported without intervals)."""
    saved = _saved(Path(path), json.loads(json.dumps(key)))
    if saved is None or not items:
        return saved
    try:
        found = read_run_items(path, saved)
    except RunItemsProblem as err:
        log(f"{err}; reported without intervals")
        found = None
    if found is None and "items" not in saved:
        log(f"{path}: saved before per-item outputs were kept; reported without intervals")
    return saved | {PER_ITEM: found}


BUSY_POLL_SECONDS = 30.0  # how often a run waiting for another process's fit looks again


class RunBusy(Exception):
    """Another process holds the run's lock: it is making that run now."""


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[None]:
    """Hold the lock of the run saved at ``path`` while it is made, so that two processes sharing a study's
    runs (one per core) never make the same run; :class:`RunBusy` at once when another process holds it.

    An advisory ``flock`` on ``.locks/<name>.lock`` beside the run: the kernel drops it when its process
    ends, however it ends, so a killed study leaves no stale lock. The lock files stay (empty): removing one
    while another process waits to open it would let two processes hold the "same" lock."""
    lock = Path(path).parent / ".locks" / f"{Path(path).name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"{path}: another process is making this run (it holds {lock})") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _reusable(path: Path, key: Any, items: bool, redo_without_items: bool,
              log: Callable[[str], None]) -> dict[str, Any] | None:
    """The saved run ``cached_run`` may answer with, or None (saying why, where a file was there)."""
    saved = _saved(path, key)
    if saved is not None and not items:
        return saved
    if saved is not None:
        try:
            found = read_run_items(path, saved)
        except RunItemsProblem as err:
            log(f"{err}; rerunning")
        else:
            if found is not None or not redo_without_items:
                if found is None:
                    log(f"{path}: saved before per-item outputs were kept; reported without intervals")
                return saved | {PER_ITEM: found}
            log(f"{path}: saved before per-item outputs were kept; rerunning")
    elif path.is_file():
        log(f"{path}: unreadable or made with other settings; rerunning")
    return None


def cached_run(path: Path, key: Mapping[str, Any], make: Callable[[], dict[str, Any]],
               log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
               items: bool = False, redo_without_items: bool = False, when_busy: str = "wait") -> dict[str, Any]:
    """The result saved at ``path`` if it was made with ``key`` (hyper-parameters and data), else ``make()``
    saved there atomically with its key: a long study that is interrupted resumes where it stopped, and
    a changed setting is never answered by a stale file. Plain JSON: nothing is unpickled.

    With ``items``, ``make()`` returns its per-item outputs (``{name: Items}``) under :data:`PER_ITEM`:
    they are written beside the run (:func:`write_run_items`, sealed by their sha256 in the JSON), and
    the result carries them under :data:`PER_ITEM`, read back and verified when the run was saved
    before. A saved run whose items file is missing or damaged is rerun; one saved before per-item
    outputs were kept is reused with ``PER_ITEM`` None (reported without intervals), or rerun with
    ``redo_without_items``.

    A run is made under its lock (:func:`claimed`). Where another process is making it, ``when_busy="wait"``
    checks again every :data:`BUSY_POLL_SECONDS` and then reads what that process saved (or makes the run itself if
    it ended without saving); ``"skip"`` raises :class:`RunBusy`, for a stream that has other runs to make."""
    if when_busy not in ("wait", "skip"):
        raise ValueError(f"when_busy: {when_busy!r} is neither 'wait' nor 'skip'")
    path = Path(path)
    key = json.loads(json.dumps(key))  # JSON's own types, so a saved key compares equal
    reused = _reusable(path, key, items, redo_without_items, log)
    if reused is not None:
        return reused
    waiting = False
    while True:
        holding = False
        try:
            with claimed(path):
                holding = True  # from here on, a RunBusy is make()'s own, not this run's lock
                # another process may have saved it since the first look (said already, unless we waited)
                reused = _reusable(path, key, items, redo_without_items, log if waiting else lambda message: None)
                if reused is not None:
                    return reused
                result = make()
                per_item = result.pop(PER_ITEM, None)
                if items and per_item:
                    result["items"] = write_run_items(path, per_item)  # first the items, then the JSON that seals them
                result |= {"key": key}
                write_json_atomic(path, result)
                return result | ({PER_ITEM: per_item or None} if items else {})
        except RunBusy as busy:
            if holding or when_busy == "skip":
                raise
            if not waiting:
                log(f"{busy}; waiting for it")
            waiting = True
            time.sleep(BUSY_POLL_SECONDS)


# ------------------------------------------------------------------------------ intervals from items

def interval_cell(values: Sequence[float], items: Sequence[Any] | None, metric: str | None, boot: Any,
                  spec: str = ".3f") -> str:
    """``mean ± std [low, high]``: the seeds' mean and sample std (:class:`MeanStd`) and the bootstrap
    interval of that mean over the test items pooled over the seeds (:func:`align.eval.bootstrap.metric_interval`);
    the interval is left out where the runs have no per-item outputs (``items`` None) or the metric is
    not resampled (``metric`` None)."""
    cell = mean_std(values).format(spec)
    if items is None or metric is None:
        return cell
    from align.eval.bootstrap import metric_interval

    interval = metric_interval(list(items), metric, boot)
    return f"{cell} [{fmt(interval.low, spec)}, {fmt(interval.high, spec)}]"


@dataclass(frozen=True)
class ClaimCells:
    """One metric of a claim (variant − baseline): the seeds' differences, and the pooled paired interval."""

    mean_std: str  # of the per-seed differences
    interval: str  # paired bootstrap interval pooled over seeds, or why there is none
    seeds_better: str  # "2/3": seeds where the variant is better (higher, or lower where lower is better)
    verdict: str  # "higher (better)", "lower (worse)", "cannot be told apart", or "–" without an interval


NO_ITEMS = "no per-item outputs"
NOT_RESAMPLED = "not resampled"


def verdict_side(cells: ClaimCells) -> str:
    """Where a cell's paired interval puts the variant: ``better``, ``worse``, ``tie`` (it includes zero) or
    ``none`` (no interval: not resampled, or runs without per-item outputs)."""
    if cells.verdict.endswith("(better)"):
        return "better"
    if cells.verdict.endswith("(worse)"):
        return "worse"
    return "tie" if cells.verdict == "cannot be told apart" else "none"


def verdict_lines(verdicts: Iterable[tuple[str, str, ClaimCells]]) -> list[str]:
    """One plain line per claim from its ``(claim, where, cells)`` over datasets and metrics: where the paired
    interval says better, where it says worse (each with the seeds that agree), and how many cells cannot be
    told apart or have no interval. The page's answer to "did it hold?", written from the same cells as its
    claim tables, so the two cannot disagree."""
    by_claim: dict[str, dict[str, list[str]]] = {}
    for claim, where, cells in verdicts:
        groups = by_claim.setdefault(claim, {"better": [], "worse": [], "tie": [], "none": []})
        side = verdict_side(cells)
        seeds = {"better": f" ({cells.seeds_better} seeds)", "worse": f" ({cells.seeds_better} seeds better)"}
        groups[side].append(where + seeds.get(side, ""))
    lines = []
    for claim, groups in by_claim.items():
        parts = [f"better on {', '.join(groups['better'])}" if groups["better"] else "better on none",
                 *([f"worse on {', '.join(groups['worse'])}"] if groups["worse"] else []),
                 *([f"cannot be told apart on {len(groups['tie'])}"] if groups["tie"] else []),
                 *([f"no interval on {len(groups['none'])}"] if groups["none"] else [])]
        total = sum(map(len, groups.values()))
        lines.append(f"- **{claim}** ({total} cells): " + "; ".join(parts) + ".")
    return lines


def claim_cells(variant: Mapping[int, float], baseline: Mapping[int, float], variant_items: Mapping[int, Any] | None,
                baseline_items: Mapping[int, Any] | None, metric: str | None, boot: Any, higher: bool = True,
                spec: str = ".3f") -> ClaimCells:
    """``variant − baseline`` of one metric over the seeds both have (``{seed: value}``): mean ± std of the
    per-seed differences, the seeds where the variant is better, and, from their per-item outputs
    (``{seed: Items}``), the paired bootstrap interval pooled over seeds
    (:func:`align.eval.bootstrap.paired_difference`) and its verdict: ``higher`` / ``lower`` when the
    interval excludes zero (``(better)`` / ``(worse)`` by ``higher``), else ``cannot be told apart``.
    ``metric`` None: not a mean over items (not resampled); items None: the runs have none."""
    seeds = sorted(set(variant) & set(baseline))
    if not seeds:
        raise ValueError("claim_cells: the variant and the baseline share no seed")
    diffs = [variant[s] - baseline[s] for s in seeds]
    better = f"{sum((d > 0) if higher else (d < 0) for d in diffs)}/{len(diffs)}"
    spread = mean_std(diffs).format(spec)
    if metric is None:
        return ClaimCells(spread, NOT_RESAMPLED, better, "–")
    if variant_items is None or baseline_items is None:
        return ClaimCells(spread, NO_ITEMS, better, "–")
    from align.eval.bootstrap import paired_difference

    diff = paired_difference({s: variant_items[s] for s in seeds}, {s: baseline_items[s] for s in seeds}, metric, boot)
    if higher:
        better = diff.seeds_better
    verdict = diff.verdict()
    if verdict != "cannot be told apart":
        verdict += " (better)" if (verdict == "higher") == higher else " (worse)"
    return ClaimCells(spread, diff.interval.format(spec), better, verdict)
