"""VLAP pilots: train each variant with per-epoch validation and find the epoch where it stops improving
(issue 30, item 1), so the study runs every variant at a budget where none is still learning.

Settings come from a config (``configs/studies/vlap_pilot.yaml``: emoji; ``vlap_pilot_shapes.yaml``: the
procedural set), whose ``name`` places its files. A fit keeps ``last.ckpt`` under ``results/vlap-<name>/``
after every epoch (ignored by git; a killed fit resumes from it, and asking for more epochs extends it: the
rate is constant after the warm-up), and writes its per-epoch history to
``studies/vlap/<name>/<variant>-seed<seed>.json`` (committed: the report regenerates from the repo).
``--snapshot`` writes the history of a fit still under way (from its last checkpoint) as ``.partial.json``;
``--captions N`` captions N validation images with a fit's last checkpoint and scores them against all
their references (CIDEr, as the captioning task), beside the caption-free baseline of always saying the
most frequent training caption; ``--score N`` (or ``--final-items N`` with the fit) scores N held-out pairs
by the LM's likelihood once, more than the per-epoch ``val_lm_items``.

    python benchmarks/vlap_pilot.py --variant caption-only --seed 0 [--epochs 20]
    python benchmarks/vlap_pilot.py --variant full-lambda10@lr=0.01   # a variant with one value changed
    python benchmarks/vlap_pilot.py --snapshot                      # histories of the fits under way
    python benchmarks/vlap_pilot.py --score 96 --variant caption-only   # all 96 held-out emoji, once
    python benchmarks/vlap_pilot.py --config configs/studies/vlap_pilot_shapes.yaml --captions 50 --variant caption-only
    python benchmarks/vlap_pilot.py --report [--output docs/studies/vlap_pilot.md] [--figure curves.png]
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import _pilot  # benchmarks/_pilot.py
from _common import emit, markdown_table, save_figure  # benchmarks/_common.py
from _pilot import ROOT, hparams, snapshot, write_history

CONFIG = ROOT / "configs" / "studies" / "vlap_pilot.yaml"
CURVES = ("val_cap_nll", "val_lm_r1", "val_lm_mrr", "val_lm_image_r1", "val_r1", "train_loss", "l_cap", "l_map")
# (metric, higher is better): the report's plateau columns
WATCHED = (("val_lm_r1", True), ("val_lm_mrr", True), ("val_lm_image_r1", True), ("val_cap_nll", False),
           ("val_r1", True))


def load_config(path: Path) -> dict[str, Any]:
    """A VLAP pilot config (:func:`_pilot.load_config`): files under ``studies/vlap/`` and ``results/vlap-*``."""
    return _pilot.load_config(path, "vlap")


def fit_data(config: dict[str, Any], aligner: Any) -> tuple[Any, Any, list[str]]:
    """``(split, image inputs the aligner takes, the first caption of each image)`` of the fit split."""
    from align.bench.execute.features import FeatureBank, fit_captions
    from align.registry import DATASETS

    split = DATASETS.create(config["dataset"]).load(config["fit"])
    bank = FeatureBank(progress=False)
    if aligner.image_input_spec().kind == "tokens":
        images = bank.tokens(config["image_encoder"], split).float()
    else:
        images = bank.images(config["image_encoder"], split)
    return split, images, fit_captions(split)[0]


def fit(config: dict[str, Any], variant: str, seed: int, epochs: int, final_items: int = 0) -> None:
    """Train one pilot (resuming its checkpoint) and write its history; with ``final_items``, the LM's
    likelihood scores of that many held-out pairs once the fit ends (:func:`final_scores`)."""
    from align.methods.vlap.aligner import VLAPAligner

    hp = hparams(config, variant, seed, epochs)
    aligner = VLAPAligner(**hp)
    _, images, captions = fit_data(config, aligner)
    earlier = _pilot.earlier_checks(config, variant, seed)  # an extended fit keeps its earlier checks
    start = time.perf_counter()
    aligner.fit_captions(images, captions)
    seconds = time.perf_counter() - start
    final = ({**final_scores(aligner, images, captions, final_items), "epochs": len(aligner.history["train_loss"])}
             if final_items else earlier["final"])
    write_history(config, variant, seed, hp, aligner.history, partial=False, seconds=seconds, pairs=len(captions),
                  captions=earlier["captions"], final=final)


def final_scores(aligner: Any, images: Any, captions: list[str], count: int) -> dict[str, Any]:
    """``val_cap_nll`` / ``val_lm_r1`` / ``val_lm_image_r1`` of the fitted map on the first ``count`` held-out
    pairs (all of them if fewer): the per-epoch values use ``val_lm_items`` pairs, whose R@1 moves in steps
    of 1/``val_lm_items``, so a choice between fits is made on more."""
    import torch

    from align.methods.framework.data import split_rows
    from align.methods.vlap.aligner import likelihood_scores, load_table, tokenize_captions

    hp, core = aligner.config, aligner.core
    _, val = split_rows(len(captions), hp.val_fraction, hp.seed)
    rows = val[:count].tolist()
    ids, mask = tokenize_captions(load_table(hp.table), [captions[i] for i in rows], hp.max_caption_tokens)
    with torch.no_grad():
        prefix = core.project(images[rows].to(core.g.weight.device))
        scores = core.caption_logprobs(prefix, ids.to(prefix.device), mask.to(prefix.device))
    return {"items": len(rows), **likelihood_scores(scores.cpu(), ids, mask)}


def caption_check(config: dict[str, Any], variant: str, seed: int, count: int) -> None:
    """Greedy captions of ``count`` validation images from the fit's last checkpoint, CIDEr against all
    their references, beside the most frequent training caption said for every image; kept in the
    history file (the partial one while the fit is under way)."""
    import json
    from collections import Counter

    from align.eval.captioning import caption_metrics
    from align.methods.framework.data import split_rows
    from align.methods.vlap.aligner import VLAPAligner

    ckpt = config["checkpoints"] / f"{variant}-seed{seed}" / "last.ckpt"
    aligner = VLAPAligner.from_checkpoint(ckpt)
    split, images, captions = fit_data(config, aligner)
    train, val = split_rows(len(captions), aligner.config.val_fraction, seed)
    shown = val[:count].tolist()
    references = [list(split.captions[i]) if split.captions is not None else [captions[i]] for i in shown]
    generated = aligner.caption(images[shown], max_new_tokens=config.get("caption_tokens", 20))
    constant = Counter(captions[i] for i in train.tolist()).most_common(1)[0][0]
    result = {"images": len(shown), "epochs": len(aligner.history.get("train_loss", [])),
              "model": caption_metrics(generated, references),
              "most frequent training caption": caption_metrics([constant] * len(shown), references),
              "constant caption": constant, "examples": [[g, r[0]] for g, r in zip(generated[:8], references[:8])]}
    print(json.dumps(result, indent=1))
    _pilot.amend(config, variant, seed, captions=result)


def score_check(config: dict[str, Any], variant: str, seed: int, count: int) -> None:
    """:func:`final_scores` of a fit's last checkpoint, kept in its history file."""
    import json

    from align.methods.vlap.aligner import VLAPAligner

    aligner = VLAPAligner.from_checkpoint(config["checkpoints"] / f"{variant}-seed{seed}" / "last.ckpt")
    _, images, captions = fit_data(config, aligner)
    result = {**final_scores(aligner, images, captions, count),
              "epochs": len(aligner.history.get("train_loss", []))}
    print(json.dumps(result, indent=1))
    _pilot.amend(config, variant, seed, final=result)


def report(config: dict[str, Any], output: Path | None, figure: Path | None) -> None:
    import json

    runs = [json.loads(p.read_text()) for p in sorted(config["histories"].glob("*.json"))]
    rows = []
    for run in runs:
        cells = _pilot.plateau_cells(run["history"], WATCHED)
        status = "under way" if run.get("seconds_this_run") is None else "done"
        caps = run.get("captions") or {}
        cider = (f"{caps['model']['CIDEr']:.3f} ({caps['most frequent training caption']['CIDEr']:.3f}) @ "
                 f"{caps['epochs']}") if caps else None
        final = run.get("final")
        final_cell = (f"{final['val_lm_r1']:.3f} / {final['val_lm_image_r1']:.3f} / {final['val_cap_nll']:.2f} "
                      f"({final['items']})" + (f" @ {final['epochs']}" if "epochs" in final else "")) if final else None
        rows.append((run["variant"], run["seed"], run["epochs"], status, *cells, final_cell, cider))
    header = ("variant", "seed", "epochs", "fit", *(c for m, _ in WATCHED for c in (f"best {m} @ epoch",
                                                                                     "epochs since")),
              "last epoch, more pairs: LM R@1 / LM image R@1 / NLL (pairs)", "val CIDEr (constant caption) @ epoch")
    lines = [f"VLAP pilots on {config['dataset']} {config['fit']} ({1 - config['common']['val_fraction']:.0%} train, "
             f"{config['common']['val_fraction']:.0%} validation, {config['common']['val_lm_items']} of those pairs "
             f"scored by the LM's likelihood every epoch; `{_pilot.shown_path(config['path'])}`). "
             "A variant has plateaued on a metric when its best epoch lies several epochs before its last "
             "(\"epochs since\"); 0 means it was still improving at the last epoch.", "",
             *(markdown_table(header, rows, missing="–") if rows else ["No pilot of this config has run yet."])]
    chosen = _pilot.selection_rows(runs, selection_score)
    if chosen:
        lines += ["", "Choices on validation (stage 2): each point's score is its LM-likelihood R@1 on the held-out "
                  f"pairs (the `--score` value where there is one, else the mean of the last {LAST} epochs' "
                  "`val_lm_r1`), averaged over its seeds; ties go to the lower caption NLL. A choice at the edge of "
                  "a swept value's range means that grid must be widened.", "",
                  *markdown_table(("variant", "points", "chosen", "score", "caption NLL", "at a grid edge"), chosen,
                                  missing="–")]
    if figure is not None and runs:
        save_figure(_pilot.curves(runs, CURVES), figure)
        where = os.path.relpath(figure, output.parent) if output is not None else str(figure)
        lines += ["", f"![per-epoch curves of every pilot]({where})"]
    emit("\n".join(lines), output)


LAST = 3  # epochs averaged for a score without a --score value


def selection_score(run: dict[str, Any]) -> tuple[float, float]:
    """``(LM-likelihood R@1, caption NLL)`` of one fit, the first to maximise and the second to break ties."""
    final, h = run.get("final"), run["history"]
    if final:
        return final["val_lm_r1"], final["val_cap_nll"]
    r1, nll = h.get("val_lm_r1", [])[-LAST:], h.get("val_cap_nll", [])[-LAST:]
    return (sum(r1) / len(r1) if r1 else float("nan")), (sum(nll) / len(nll) if nll else float("nan"))


def main() -> None:
    parser = _pilot.argument_parser(__doc__, CONFIG)
    parser.add_argument("--final-items", type=int, default=0, metavar="N",
                        help="after the fit, score N held-out pairs by the LM's likelihood (9,216 pairs for N = 96)")
    parser.add_argument("--captions", type=int, metavar="N", help="caption N validation images of --variant")
    parser.add_argument("--score", type=int, metavar="N",
                        help="score N held-out pairs of --variant's last checkpoint by the LM's likelihood")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.report:
        report(config, args.output, args.figure)
    elif args.captions:
        caption_check(config, args.variant, args.seed, args.captions)
    elif args.score:
        score_check(config, args.variant, args.seed, args.score)
    elif args.snapshot:
        snapshot(config)
    elif args.variant:
        fit(config, args.variant, args.seed, args.epochs or config["epochs"], args.final_items)
    else:
        parser.error("give --variant, --snapshot or --report")


if __name__ == "__main__":
    main()
