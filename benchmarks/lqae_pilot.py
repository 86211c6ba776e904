"""LQAE pilots: train each model with per-epoch validation and find the epoch where its held-out images
stop improving (issue 31, item 2), so the study and its in-context evaluation run every model at a budget
where none is still learning, with the LM-loss weight chosen on validation.

Settings come from a config (``configs/studies/lqae_pilot.yaml``), whose ``name`` places its files. A fit
keeps ``last.ckpt`` under ``results/lqae-<name>/`` after every epoch (ignored by git; a killed fit resumes
from it, and asking for more epochs extends it), and writes its per-epoch history to
``studies/lqae/<name>/<variant>-seed<seed>.json`` (committed). ``--snapshot`` writes the history of a fit
still under way as ``.partial.json``. ``--probe`` fits a linear probe on the training images' features of a
fit's last checkpoint and scores it on the held-out ones (their labels are read only here): the value the
LM-loss weight is chosen on, never a test score.

    python benchmarks/lqae_pilot.py --variant lqae-lm1e-4 --seed 0 [--epochs 12]
    python benchmarks/lqae_pilot.py --variant lqae-lm1e-4@mask_ratio=0.3   # a variant with one value changed
    python benchmarks/lqae_pilot.py --snapshot
    python benchmarks/lqae_pilot.py --probe --variant lqae-lm1e-4
    python benchmarks/lqae_pilot.py --report [--output docs/studies/lqae_pilot.md] [--figure curves.png]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import _pilot  # benchmarks/_pilot.py
from _common import emit, markdown_table, save_figure  # benchmarks/_common.py
from _pilot import ROOT, hparams, snapshot, write_history

CONFIG = ROOT / "configs" / "studies" / "lqae_pilot.yaml"
CURVES = ("val_rec", "val_rec_masked", "val_lm", "val_codes_used", "val_code_perplexity", "train_loss", "rec", "lm")
# (metric, higher is better): the report's plateau columns
WATCHED = (("val_rec", False), ("val_rec_masked", False), ("val_lm", False), ("val_codes_used", True))
PROBE_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # as benchmarks/_lqae_data.py


def load_config(path: Path) -> dict[str, Any]:
    """An LQAE pilot config (:func:`_pilot.load_config`): files under ``studies/lqae/`` and ``results/lqae-*``."""
    return _pilot.load_config(path, "lqae")


def fit_images(config: dict[str, Any]) -> tuple[Any, Any]:
    """``(pixels [N, C, 32, 32] in [0, 1], labels [N])`` of the fit split."""
    import numpy as np

    import align.data  # noqa: F401  (registers the datasets)
    from align.data.pixels import images_tensor
    from align.registry import DATASETS

    split = DATASETS.create(config["dataset"]).load(config["fit"])
    return images_tensor(split, 32, config["channels"]), np.asarray(split.labels.labels)


def fit(config: dict[str, Any], variant: str, seed: int, epochs: int) -> None:
    """Train one pilot (resuming its checkpoint) and write its history."""
    from align.methods.lqae.aligner import LQAE

    hp = hparams(config, variant, seed, epochs)
    images, _ = fit_images(config)
    earlier = _pilot.earlier_checks(config, variant, seed)  # an extended fit keeps its earlier probe
    start = time.perf_counter()
    model = LQAE(**hp).fit_images(images)
    write_history(config, variant, seed, hp, model.history, partial=False, seconds=time.perf_counter() - start,
                  pairs=len(images), final=earlier["final"])


def probe_check(config: dict[str, Any], variant: str, seed: int) -> None:
    """The validation linear probe of a fit's last checkpoint (features as ``align bench`` reads them:
    the LM's layers mean-pooled, or the VQ-VAE's mean token), kept in its history file."""
    from align.eval.linear_probe import linear_probe
    from align.methods.framework.data import split_rows
    from align.methods.lqae.aligner import LQAE

    model = LQAE.from_checkpoint(config["checkpoints"] / f"{variant}-seed{seed}" / "last.ckpt")
    images, labels = fit_images(config)
    train, val = split_rows(len(images), model.config.val_fraction, model.config.seed)  # the fit's own split
    train_f, val_f = model.features(images[train]), model.features(images[val])
    key = "bert" if "bert" in train_f else "tokens"
    result = linear_probe(train_f[key], labels[train.numpy()], val_f[key], labels[val.numpy()], c_grid=PROBE_C,
                          max_iter=300, row_space=True)
    probe = {"val_probe": float(result.items.value("acc1")), "features": key, "val_images": len(val),
             "epochs": len(model.history.get("train_loss", []))}
    print(json.dumps(probe, indent=1))
    _pilot.amend(config, variant, seed, final=probe)


def report(config: dict[str, Any], output: Path | None, figure: Path | None) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(config["histories"].glob("*.json"))]
    rows = []
    for run in runs:
        cells = _pilot.plateau_cells(run["history"], WATCHED, ".4g")
        final = run.get("final")
        probe = f"{final['val_probe']:.3f} @ {final['epochs']}" if final else None
        status = "under way" if run.get("seconds_this_run") is None else "done"
        rows.append((run["variant"], run["seed"], run["epochs"], status, *cells, probe))
    header = ("variant", "seed", "epochs", "fit", *(c for m, _ in WATCHED for c in (f"best {m} @ epoch",
                                                                                     "epochs since")),
              "validation probe @ epoch")
    common = config["common"]
    lines = [f"LQAE pilots on {config['dataset']} {config['fit']} ({1 - common['val_fraction']:.0%} train, "
             f"{common['val_fraction']:.0%} held out and scored every epoch; `{_pilot.shown_path(config['path'])}`). "
             "A model has plateaued on a metric when its best epoch lies several epochs before its last "
             "(\"epochs since\"); 0 means it was still improving at the last epoch.", "",
             *(markdown_table(header, rows, missing="–") if rows else ["No pilot of this config has run yet."])]
    if figure is not None and runs:
        save_figure(_pilot.curves(runs, CURVES), figure)
        where = os.path.relpath(figure, output.parent) if output is not None else str(figure)
        lines += ["", f"![per-epoch curves of every pilot]({where})"]
    emit("\n".join(lines), output)


def main() -> None:
    parser = _pilot.argument_parser(__doc__, CONFIG)
    parser.add_argument("--probe", action="store_true", help="the validation probe of --variant's last checkpoint")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.report:
        report(config, args.output, args.figure)
    elif args.snapshot:
        snapshot(config)
    elif args.probe and args.variant:
        probe_check(config, args.variant, args.seed)
    elif args.variant:
        fit(config, args.variant, args.seed, args.epochs or config["epochs"])
    else:
        parser.error("give --variant, --snapshot, --probe --variant or --report")


if __name__ == "__main__":
    main()
