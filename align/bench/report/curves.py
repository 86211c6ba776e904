"""Training curves left by the runner's fits (``<pair>/<aligner>/curves/<fit>/metrics.csv``, Lightning's
CSV log, with ``fit.yaml`` naming the fit), read back and drawn for ``align report --html``.

Lightning writes one CSV row per logged step or epoch, each row filling only the columns logged then:
``train_loss_step`` is a per-step series (x = optimiser step), every other metric column a per-epoch
series (x = epoch, from 1).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STEP_COLUMNS = ("train_loss_step",)


@dataclass
class Curves:
    """One fit's curves: ``label`` says which fit; ``steps`` and ``epochs`` map a metric to its points."""

    folder: Path
    label: str
    steps: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    epochs: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    diverged: str | None = None


def _label(folder: Path) -> tuple[str, str | None]:
    """``aligner · dataset/fit split · seed k`` from ``fit.yaml``, else from the folder names."""
    try:
        fit = yaml.safe_load((folder / "fit.yaml").read_text())
        label = f"{fit['aligner']} · {fit['fit']} · seed {fit['seed']}"
        return label, fit.get("diverged") if isinstance(fit.get("diverged"), str) else None
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return f"{folder.parent.parent.name} · {folder.name}", None


def read_curves(folder: Path) -> Curves:
    """The curves in ``folder/metrics.csv`` (a ``ValueError`` naming the file when it is not Lightning's CSV)."""
    path = Path(folder) / "metrics.csv"
    label, diverged = _label(Path(folder))
    curves = Curves(Path(folder), label, diverged=diverged)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "epoch" not in reader.fieldnames or "step" not in reader.fieldnames:
            raise ValueError(f"{path}: not a Lightning metrics CSV (no epoch and step columns)")
        for row in reader:
            for name, text in row.items():
                if name in ("epoch", "step") or not text:
                    continue
                value = float(text)
                if name in STEP_COLUMNS:
                    curves.steps.setdefault(name, []).append((int(row["step"]) + 1, value))
                else:
                    curves.epochs.setdefault(name, []).append((int(row["epoch"]) + 1, value))
    return curves


def find_curves(results_dir: Path) -> tuple[list[Curves], list[str]]:
    """Every fit's curves under ``results_dir`` (sorted by folder), and one line per folder that could not be read."""
    found, problems = [], []
    for path in sorted(Path(results_dir).glob("*/*/curves/*/metrics.csv")):
        try:
            found.append(read_curves(path.parent))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            problems.append(str(err) if str(path) in str(err) else f"{path}: {err}")
    return found, problems


def plot_png(curves: Curves, dpi: int = 80) -> bytes:
    """A PNG of ``curves``: losses (every step faint, epoch means bold) and, beside them, any other metric."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    losses = {k: v for k, v in curves.epochs.items() if "loss" in k}
    others = {k: v for k, v in curves.epochs.items() if "loss" not in k}
    figure = Figure(figsize=(8 if others else 4.5, 3), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if others else 1, squeeze=False)[0]
    steps_per_epoch = _steps_per_epoch(curves)
    for name, points in curves.steps.items():
        axes[0].plot([s / steps_per_epoch for s, _ in points], [v for _, v in points], lw=0.8, alpha=0.35,
                     label=name.replace("_", " "))
    for name, points in sorted(losses.items()):
        axes[0].plot(*zip(*points), marker="o", ms=3, label=name.replace("_", " "))
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    for name, points in sorted(others.items()):
        axes[1].plot(*zip(*points), marker="o", ms=3, label=name.replace("_", " "))
    if others:
        axes[1].set(xlabel="epoch", title="other metrics")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    figure.suptitle(curves.label, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _steps_per_epoch(curves: Curves) -> float:
    """Steps per epoch, to put per-step points on the epoch axis (epoch k's steps end at x = k)."""
    points = next(iter(curves.steps.values()), [])
    epochs = max((e for series in curves.epochs.values() for e, _ in series), default=0)
    return max(1.0, len(points) / epochs) if epochs and points else 1.0


def summary(curves: Curves) -> dict[str, Any]:
    """Last epoch's value of every per-epoch metric (for the caption under a plot)."""
    return {name: points[-1][1] for name, points in sorted(curves.epochs.items())
            if points and math.isfinite(points[-1][1])}
