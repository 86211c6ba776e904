"""What the method pilots (benchmarks/vlap_pilot.py, lqae_pilot.py) share: a config read over its base, a
variant's hyper-parameters (``name@key=value`` grid points), per-epoch histories written where the repo keeps
them (``studies/<method>/<name>/``, committed) and snapshotted from a fit under way, where a curve's best
epoch lies, the choice on validation with its grid-edge flag, and the curves figure."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from _common import machine_info  # benchmarks/_common.py
from align.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def load_config(path: Path, method: str) -> dict[str, Any]:
    """A ``method``'s pilot config, over the one its ``base`` names (a path beside it): keys given here win.
    Its ``name`` places the histories (``studies/<method>/<name>/``) and checkpoints (``results/<method>-<name>/``)."""
    path = path.resolve()
    with open(path) as f:
        config = yaml.safe_load(f)
    if "base" in config:
        with open(path.parent / config.pop("base")) as f:
            config = {**yaml.safe_load(f), **config}
    config["histories"] = ROOT / "studies" / method / config["name"]
    config["checkpoints"] = ROOT / "results" / f"{method}-{config['name']}"
    config["path"], config["tool"] = path, f"{method}_pilot"
    return config


def yaml_value(text: str) -> Any:
    """A hyper-parameter given on the command line, read as YAML, and ``3e-4``, which YAML 1.1 leaves a
    string, as a number."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(text)
        except ValueError:
            pass
    return value


def hparams(config: dict[str, Any], variant: str, seed: int, epochs: int) -> dict[str, Any]:
    """A variant's hyper-parameters; ``name@key=value[,key=value]`` changes some of a named variant's (a point
    of a grid: ``full-lambda1@lr=0.01``), each value read by :func:`yaml_value`."""
    base, _, changes = variant.partition("@")
    if base not in config["variants"]:
        raise SystemExit(f"{config['tool']}: no variant {base!r} in {config['path'].name} "
                         f"(has: {', '.join(config['variants'])})")
    changed = {}
    for change in filter(None, changes.split(",")):
        key, sep, value = change.partition("=")
        if not sep or not key:
            raise SystemExit(f"{config['tool']}: {variant!r}: write a change as key=value, got {change!r}")
        changed[key] = yaml_value(value)
    return {**config["common"], **config["variants"][base], **changed, "max_epochs": epochs, "seed": seed,
            "checkpoint_dir": str(config["checkpoints"] / f"{variant}-seed{seed}")}


def write_history(config: dict[str, Any], variant: str, seed: int, hp: dict[str, Any],
                  history: dict[str, list[float]], *, partial: bool, seconds: float | None = None,
                  pairs: int | None = None, captions: dict[str, Any] | None = None,
                  final: dict[str, Any] | None = None) -> Path:
    path = config["histories"] / f"{variant}-seed{seed}{'.partial' if partial else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in hp.items() if k != "checkpoint_dir"}
    write_json_atomic(path, {"variant": variant, "seed": seed, "hparams": kept, "fit_pairs": pairs,
                             "epochs": len(history.get("train_loss", [])), "seconds_this_run": seconds,
                             "history": {k: [float(x) for x in v] for k, v in history.items()},
                             "captions": captions, "final": final, "machine": machine_info()})
    if not partial:
        path.with_name(f"{variant}-seed{seed}.partial.json").unlink(missing_ok=True)
    return path


def snapshot(config: dict[str, Any]) -> None:
    """``.partial.json`` histories of the fits with a checkpoint newer than their written history."""
    import json

    import torch

    for ckpt in sorted(config["checkpoints"].glob("*-seed*/last.ckpt")):
        variant, _, seed = ckpt.parent.name.rpartition("-seed")
        done = config["histories"] / f"{variant}-seed{seed}.json"
        if done.exists() and done.stat().st_mtime >= ckpt.stat().st_mtime:
            continue
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # our own checkpoint, tensors only
        hp = hparams(config, variant, int(seed), int(state["hyper_parameters"]["extra"]["max_epochs"]))
        partial = done.with_name(f"{variant}-seed{seed}.partial.json")
        kept = json.loads(partial.read_text()) if partial.exists() else {}  # checks made on an earlier epoch
        print(write_history(config, variant, int(seed), hp, state.get("history", {}), partial=True,
                            captions=kept.get("captions"), final=kept.get("final")))


def plateau(values: list[float], higher: bool, first_epoch: int = 1) -> tuple[int, float, int]:
    """``(best epoch (1-based), best value, epochs since it)`` of a curve whose first value is ``first_epoch``'s."""
    best = max(range(len(values)), key=lambda i: (values[i] if higher else -values[i], -i))
    return best + first_epoch, values[best], len(values) - 1 - best


def first_epoch(history: dict[str, list[float]], metric: str) -> int:
    """The epoch of ``metric``'s first value: a metric added while a fit was under way was logged only from the
    epoch its fit resumed at, and its values are the last ones of the fit's epochs."""
    return len(history.get("train_loss", [])) - len(history[metric]) + 1


def selection_rows(runs: list[dict[str, Any]], score: Callable[[dict[str, Any]], tuple[float, float]]
                   ) -> list[tuple[Any, ...]]:
    """One row per variant that has grid points (``name@key=value``): the point chosen and whether any swept
    value was chosen at the end of its range."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        base = run["variant"].partition("@")[0]
        groups.setdefault(base, {}).setdefault(run["variant"], []).append(run)
    rows = []
    for base, points in groups.items():
        if len(points) < 2:
            continue
        scores = {}
        for name, seeds in points.items():
            pairs = [score(run) for run in seeds]
            scores[name] = (sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs))
        best = max(scores, key=lambda n: (scores[n][0], -scores[n][1]))
        hps = {name: seeds[0]["hparams"] for name, seeds in points.items()}
        swept = [k for k in hps[best] if len({repr(h.get(k)) for h in hps.values()}) > 1 and
                 all(isinstance(h.get(k), (int, float)) for h in hps.values())]
        edges = [k for k in swept if hps[best][k] in (min(h[k] for h in hps.values()), max(h[k] for h in hps.values()))]
        rows.append((base, len(points), best, f"{scores[best][0]:.3f}", f"{scores[best][1]:.2f}",
                     ", ".join(edges) if edges else "no"))
    return rows


def curves(runs: list[dict[str, Any]], metrics: Sequence[str]) -> Any:
    """Each of ``metrics`` per epoch, one panel each (four a row), every run a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(run["history"].get(m) for run in runs)]
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, shown):
        for run in runs:
            values = run["history"].get(metric)
            if values:
                start = first_epoch(run["history"], metric)
                ax.plot(range(start, start + len(values)), values, label=f"{run['variant']} s{run['seed']}")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def shown_path(path: Path) -> str:
    """``path`` as a report names it: from the repository's root when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def argument_parser(doc: str, config: Path) -> argparse.ArgumentParser:
    """The options every pilot script takes (one fit, snapshots, the report); a script adds its own checks."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=config)
    parser.add_argument("--variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="default: the config's")
    parser.add_argument("--snapshot", action="store_true", help="histories of the fits under way (.partial.json)")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--figure", type=Path)
    return parser


def plateau_cells(history: dict[str, list[float]], watched: Sequence[tuple[str, bool]], spec: str = ".3f") -> list[Any]:
    """For each ``(metric, higher is better)``: ``"best @ epoch"`` and the epochs since, or two Nones."""
    cells: list[Any] = []
    for metric, higher in watched:
        if history.get(metric):
            epoch, value, since = plateau(history[metric], higher, first_epoch(history, metric))
            cells += [f"{value:{spec}} @ {epoch}", since]
        else:
            cells += [None, None]
    return cells


def history_file(config: dict[str, Any], variant: str, seed: int) -> Path | None:
    """A fit's history file: the finished one, else the partial one, else None."""
    for partial in (False, True):
        path = config["histories"] / f"{variant}-seed{seed}{'.partial' if partial else ''}.json"
        if path.exists():
            return path
    return None


def earlier_checks(config: dict[str, Any], variant: str, seed: int) -> dict[str, Any]:
    """The checks (``captions``, ``final``) kept in a fit's history file, so that extending a fit keeps the
    checks made at an earlier epoch (each records its epoch)."""
    import json

    path = history_file(config, variant, seed)
    run = json.loads(path.read_text()) if path is not None else {}
    return {"captions": run.get("captions"), "final": run.get("final")}


def amend(config: dict[str, Any], variant: str, seed: int, **fields: Any) -> None:
    """Add ``fields`` (``captions``, ``final``) to a fit's history file, keeping the checks already in it."""
    import json

    path = history_file(config, variant, seed)
    if path is None:
        raise SystemExit(f"{config['tool']}: no history of {variant} seed {seed} in {config['histories']} to add to")
    run = json.loads(path.read_text())
    kept = {"captions": run.get("captions"), "final": run.get("final"), **fields}
    write_history(config, variant, seed, run["hparams"], run["history"], partial=path.name.endswith(".partial.json"),
                  seconds=run.get("seconds_this_run"), pairs=run.get("fit_pairs"), **kept)
