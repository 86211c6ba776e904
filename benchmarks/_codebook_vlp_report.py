"""What ``codebook_vlp_compare.py --report`` reads back, so the study's page regenerates from committed files
(issue 32): the manifest ``study.json`` the full run writes beside its runs (settings, dataset facts, the
study run's times and machine), the saved runs looked up by their keys, and the code gallery (its lines from
saved facts; its PNG the only thing that needs the emoji images).

Imports neither torch nor the script (which imports this module): a report needs no model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _common import RunItemsProblem, read_run_items, save_figure, saved_run  # benchmarks/_common.py
from align.atomic import write_json_atomic

MANIFEST = "study.json"  # beside the runs: what the report needs besides them


class MissingRun(Exception):
    """A run the report needs that is not saved (or not with the manifest's settings, or without its items)."""


def write_manifest(runs: Path, manifest: Mapping[str, Any]) -> None:
    """Atomically, keys in their order (not sorted: the arms' order is the report's column order)."""
    write_json_atomic(Path(runs) / MANIFEST, manifest, sort_keys=False)


def read_manifest(runs: Path) -> dict[str, Any]:
    """The manifest under ``runs``, or a one-line exit saying that the full study writes it."""
    path = Path(runs) / MANIFEST
    if not path.is_file():
        raise SystemExit(f"--report: {path} is missing (the study writes it when run without --report)")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise SystemExit(f"--report: {path} is not valid JSON ({err})") from None


def load_run(path: Path, key: Mapping[str, Any], items: bool = False) -> dict[str, Any]:
    """The run saved at ``path`` with ``key``, with its verified per-item outputs under ``PER_ITEM`` when
    ``items`` (None for a run saved before they were kept, as the full run reports it); :class:`MissingRun`
    when it is absent, made with other settings, or its items file is missing or damaged (the full run
    would refit it, so its report could not be this one)."""
    from _common import PER_ITEM

    path = Path(path)
    if not path.is_file():
        raise MissingRun(f"{path} (missing)")
    run = saved_run(path, key)
    if run is None:
        raise MissingRun(f"{path} (unreadable or made with other settings than {MANIFEST} records)")
    if not items:
        return run
    try:
        return run | {PER_ITEM: read_run_items(path, run)}
    except RunItemsProblem as err:
        raise MissingRun(str(err)) from None


def figure_names(grid: Mapping[str, Any], captions: Any) -> dict[str, str]:
    """The first caption of every image the gallery shows (saved in the manifest for its lines)."""
    return {str(i): captions[i][0] for row in grid["codes"] for i in row["images"]}


def code_grid_lines(grid: Mapping[str, Any], names: Mapping[str, str], where: str, seed: int, arm: str) -> list[str]:
    """The gallery's lines in the report: each frequent code and the names of its images."""
    lines = [f"Most used codes on the test emoji (seed {seed}, {arm}) and the images with most tokens on "
             f"each (figure: `{where}`):", ""]
    for entry in grid["codes"]:
        lines.append(f"- code {entry['code']} ({entry['tokens']} tokens): "
                     + ", ".join(names[str(i)] for i in entry["images"]))
    return lines + [""]


def draw_code_grid(grid: Mapping[str, Any], load_image: Callable[[int], Any], path: Path, seed: int,
                   arm: str) -> None:
    """PNG: a row per frequently used code, the test images with the largest share of tokens on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = grid["codes"]
    per_code = max(len(r["images"]) for r in rows)
    fig, axes = plt.subplots(len(rows), per_code, figsize=(per_code * 1.1, len(rows) * 1.25), squeeze=False)
    for row, entry in enumerate(rows):
        for col, (i, count) in enumerate(zip(entry["images"], entry["counts"])):
            ax = axes[row][col]
            ax.imshow(load_image(i).convert("RGBA"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{count}/{grid['tokens_per_image']}", fontsize=6)
            if col == 0:
                ax.set_ylabel(f"code {entry['code']}", fontsize=7)
    fig.suptitle(f"Codebook-VLP, {arm} (emoji, seed {seed}): test images with most tokens on each frequent code",
                 fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def curves_name(figure: Path) -> Path:
    """Where the validation curves go: beside the code gallery, ``<figure stem>_validation.png``."""
    return figure.with_name(f"{figure.stem}_validation.png")


def draw_validation_curves(found: Mapping[str, Mapping[int, Mapping[str, Any]]], path: Path) -> None:
    """PNG, the learning curves that show where each arm stops improving: validation I→T R@1 at every epoch
    count tried (left), and each epoch's training MIM accuracy against its marginal (right; the history of
    each arm's longest fit, which the shorter counts resumed into)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (label, per_epochs) in enumerate(found.items()):
        colour = f"C{i}"
        counts = sorted(per_epochs)
        left.plot(counts, [per_epochs[e]["i2t_r1"] for e in counts], "o-", color=colour, label=label)
        history = (per_epochs[counts[-1]].get("history") or {}) if counts else {}
        acc, marginal = history.get("mim_acc") or [], history.get("mim_marginal") or []
        if acc:
            epochs = range(1, len(acc) + 1)
            right.plot(epochs, acc, "-", color=colour, label=f"{label}: MIM acc")
            right.plot(epochs, marginal[:len(acc)], ":", color=colour, label=f"{label}: marginal")
    left.set(xlabel="epochs", ylabel="validation I→T R@1", title="held-out emoji anchors (seed 0)")
    right.set(xlabel="epoch", ylabel="accuracy on masked tokens", title="MIM on the training batches")
    left.legend(fontsize=7)
    if right.lines:
        right.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
