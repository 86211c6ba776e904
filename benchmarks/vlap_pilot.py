"""VLAP pilots: train each variant with per-epoch validation and find the epoch where it stops improving
(issue 30, item 1), so the study runs every variant at a budget where none is still learning.

Settings come from ``configs/studies/vlap_pilot.yaml``. A fit keeps ``last.ckpt`` under
``results/vlap-pilot/`` after every epoch (ignored by git; a killed fit resumes from it, and asking for
more epochs extends it: the rate is constant after the warm-up), and writes its per-epoch history to
``studies/vlap/pilot/<variant>-seed<seed>.json`` (committed: the report regenerates from the repo).
``--snapshot`` writes the history of a fit still under way (from its last checkpoint) as ``.partial.json``.

    python benchmarks/vlap_pilot.py --variant caption-only --seed 0 [--epochs 20]
    python benchmarks/vlap_pilot.py --snapshot                      # histories of the fits under way
    python benchmarks/vlap_pilot.py --report [--output docs/studies/vlap_pilot.md] [--figure curves.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import yaml

from _common import emit, machine_info, markdown_table, save_figure  # benchmarks/_common.py
from align.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "studies" / "vlap_pilot.yaml"
HISTORIES = ROOT / "studies" / "vlap" / "pilot"
CHECKPOINTS = ROOT / "results" / "vlap-pilot"
CURVES = ("val_cap_nll", "val_lm_r1", "val_lm_image_r1", "val_r1", "train_loss", "l_cap", "l_map")
# (metric, higher is better): the report's plateau columns
WATCHED = (("val_lm_r1", True), ("val_cap_nll", False), ("val_r1", True))


def load_config(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def hparams(config: dict[str, Any], variant: str, seed: int, epochs: int) -> dict[str, Any]:
    if variant not in config["variants"]:
        raise SystemExit(f"vlap_pilot: no variant {variant!r} in {CONFIG.name} (has: {', '.join(config['variants'])})")
    return {**config["common"], **config["variants"][variant], "max_epochs": epochs, "seed": seed,
            "checkpoint_dir": str(CHECKPOINTS / f"{variant}-seed{seed}")}


def fit(config: dict[str, Any], variant: str, seed: int, epochs: int) -> None:
    """Train one pilot (resuming its checkpoint) and write its history."""
    from align.bench.execute.features import FeatureBank, fit_captions
    from align.methods.vlap.aligner import VLAPAligner
    from align.registry import DATASETS

    hp = hparams(config, variant, seed, epochs)
    split = DATASETS.create(config["dataset"]).load(config["fit"])
    bank = FeatureBank(progress=False)
    aligner = VLAPAligner(**hp)
    kind = aligner.image_input_spec().kind
    images = bank.tokens(config["image_encoder"], split).float() if kind == "tokens" else \
        bank.images(config["image_encoder"], split)
    captions, _ = fit_captions(split)
    start = time.perf_counter()
    aligner.fit_captions(images, captions)
    write_history(variant, seed, hp, aligner.history, partial=False, seconds=time.perf_counter() - start,
                  pairs=len(captions))


def write_history(variant: str, seed: int, hp: dict[str, Any], history: dict[str, list[float]], *, partial: bool,
                  seconds: float | None = None, pairs: int | None = None) -> Path:
    path = HISTORIES / f"{variant}-seed{seed}{'.partial' if partial else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in hp.items() if k != "checkpoint_dir"}
    write_json_atomic(path, {"variant": variant, "seed": seed, "hparams": kept, "fit_pairs": pairs,
                             "epochs": len(history.get("train_loss", [])), "seconds_this_run": seconds,
                             "history": {k: [float(x) for x in v] for k, v in history.items()},
                             "machine": machine_info()})
    if not partial:
        path.with_name(f"{variant}-seed{seed}.partial.json").unlink(missing_ok=True)
    return path


def snapshot(config: dict[str, Any]) -> None:
    """``.partial.json`` histories of the fits with a checkpoint newer than their written history."""
    import torch

    for ckpt in sorted(CHECKPOINTS.glob("*-seed*/last.ckpt")):
        variant, _, seed = ckpt.parent.name.rpartition("-seed")
        done = HISTORIES / f"{variant}-seed{seed}.json"
        if done.exists() and done.stat().st_mtime >= ckpt.stat().st_mtime:
            continue
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # our own checkpoint, tensors only
        hp = hparams(config, variant, int(seed), int(state["hyper_parameters"]["extra"]["max_epochs"]))
        print(write_history(variant, int(seed), hp, state.get("history", {}), partial=True))


def plateau(values: list[float], higher: bool) -> tuple[int, float, int]:
    """``(best epoch (1-based), best value, epochs since it)``."""
    best = max(range(len(values)), key=lambda i: (values[i] if higher else -values[i], -i))
    return best + 1, values[best], len(values) - 1 - best


def report(output: Path | None, figure: Path | None) -> None:
    import json

    runs = [json.loads(p.read_text()) for p in sorted(HISTORIES.glob("*.json"))]
    rows = []
    for run in runs:
        h, cells = run["history"], []
        for metric, higher in WATCHED:
            values = h.get(metric, [])
            if values:
                epoch, value, since = plateau(values, higher)
                cells += [f"{value:.3f} @ {epoch}", since]
            else:
                cells += [None, None]
        status = "under way" if run.get("seconds_this_run") is None else "done"
        rows.append((run["variant"], run["seed"], run["epochs"], status, *cells))
    header = ("variant", "seed", "epochs", "fit", *(c for m, _ in WATCHED for c in (f"best {m} @ epoch",
                                                                                     "epochs since")))
    lines = ["VLAP pilots on the emoji fit split (90% train, 10% validation; `configs/studies/vlap_pilot.yaml`). "
             "A variant has plateaued on a metric when its best epoch lies several epochs before its last "
             "(\"epochs since\"); 0 means it was still improving at the last epoch.", "",
             *markdown_table(header, rows, missing="–")]
    if figure is not None and runs:
        save_figure(curves(runs), figure)
        lines += ["", f"Curves: `{figure.name}`."]
    emit("\n".join(lines), output)


def curves(runs: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in CURVES if any(run["history"].get(m) for run in runs)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.0), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        for run in runs:
            values = run["history"].get(metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, label=f"{run['variant']} s{run['seed']}")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="default: the config's")
    parser.add_argument("--snapshot", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    config = load_config(args.config)
    if args.report:
        report(args.output, args.figure)
    elif args.snapshot:
        snapshot(config)
    elif args.variant:
        fit(config, args.variant, args.seed, args.epochs or config["epochs"])
    else:
        parser.error("give --variant, --snapshot or --report")


if __name__ == "__main__":
    main()
