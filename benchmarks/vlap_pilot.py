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

import argparse
import os
import time
from pathlib import Path
from typing import Any

import yaml

from _common import emit, machine_info, markdown_table, save_figure  # benchmarks/_common.py
from align.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "studies" / "vlap_pilot.yaml"
CURVES = ("val_cap_nll", "val_lm_r1", "val_lm_mrr", "val_lm_image_r1", "val_r1", "train_loss", "l_cap", "l_map")
# (metric, higher is better): the report's plateau columns
WATCHED = (("val_lm_r1", True), ("val_lm_mrr", True), ("val_lm_image_r1", True), ("val_cap_nll", False),
           ("val_r1", True))


def load_config(path: Path) -> dict[str, Any]:
    """The config, over the one its ``base`` names (a path beside it): keys given here win."""
    path = path.resolve()
    with open(path) as f:
        config = yaml.safe_load(f)
    if "base" in config:
        with open(path.parent / config.pop("base")) as f:
            config = {**yaml.safe_load(f), **config}
    config["histories"] = ROOT / "studies" / "vlap" / config["name"]
    config["checkpoints"] = ROOT / "results" / f"vlap-{config['name']}"
    config["path"] = path
    return config


def hparams(config: dict[str, Any], variant: str, seed: int, epochs: int) -> dict[str, Any]:
    """A variant's hyper-parameters; ``name@key=value[,key=value]`` changes some of a named variant's (a point
    of a grid: ``full-lambda1@lr=0.01``), each value read as YAML."""
    base, _, changes = variant.partition("@")
    if base not in config["variants"]:
        raise SystemExit(f"vlap_pilot: no variant {base!r} in {config['path'].name} "
                         f"(has: {', '.join(config['variants'])})")
    changed = {}
    for change in filter(None, changes.split(",")):
        key, sep, value = change.partition("=")
        if not sep or not key:
            raise SystemExit(f"vlap_pilot: {variant!r}: write a change as key=value, got {change!r}")
        changed[key] = yaml.safe_load(value)
    return {**config["common"], **config["variants"][base], **changed, "max_epochs": epochs, "seed": seed,
            "checkpoint_dir": str(config["checkpoints"] / f"{variant}-seed{seed}")}


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
    start = time.perf_counter()
    aligner.fit_captions(images, captions)
    seconds = time.perf_counter() - start
    final = final_scores(aligner, images, captions, final_items) if final_items else None
    write_history(config, variant, seed, hp, aligner.history, partial=False, seconds=seconds, pairs=len(captions),
                  final=final)


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
    amend(config, variant, seed, captions=result)


def score_check(config: dict[str, Any], variant: str, seed: int, count: int) -> None:
    """:func:`final_scores` of a fit's last checkpoint, kept in its history file."""
    import json

    from align.methods.vlap.aligner import VLAPAligner

    aligner = VLAPAligner.from_checkpoint(config["checkpoints"] / f"{variant}-seed{seed}" / "last.ckpt")
    _, images, captions = fit_data(config, aligner)
    result = {**final_scores(aligner, images, captions, count),
              "epochs": len(aligner.history.get("train_loss", []))}
    print(json.dumps(result, indent=1))
    amend(config, variant, seed, final=result)


def amend(config: dict[str, Any], variant: str, seed: int, **fields: Any) -> None:
    """Add ``fields`` (captions, final) to a fit's history file: the finished one, else the partial one."""
    import json

    for partial in (False, True):
        path = config["histories"] / f"{variant}-seed{seed}{'.partial' if partial else ''}.json"
        if path.exists():
            run = json.loads(path.read_text())
            kept = {"captions": run.get("captions"), "final": run.get("final"), **fields}
            write_history(config, variant, seed, run["hparams"], run["history"], partial=partial,
                          seconds=run.get("seconds_this_run"), pairs=run.get("fit_pairs"), **kept)
            return
    raise SystemExit(f"vlap_pilot: no history of {variant} seed {seed} in {config['histories']} to add to")


def plateau(values: list[float], higher: bool, first_epoch: int = 1) -> tuple[int, float, int]:
    """``(best epoch (1-based), best value, epochs since it)`` of a curve whose first value is ``first_epoch``'s."""
    best = max(range(len(values)), key=lambda i: (values[i] if higher else -values[i], -i))
    return best + first_epoch, values[best], len(values) - 1 - best


def first_epoch(history: dict[str, list[float]], metric: str) -> int:
    """The epoch of ``metric``'s first value: a metric added while a fit was under way was logged only from the
    epoch its fit resumed at, and its values are the last ones of the fit's epochs."""
    return len(history.get("train_loss", [])) - len(history[metric]) + 1


def report(config: dict[str, Any], output: Path | None, figure: Path | None) -> None:
    import json

    runs = [json.loads(p.read_text()) for p in sorted(config["histories"].glob("*.json"))]
    rows = []
    for run in runs:
        h, cells = run["history"], []
        for metric, higher in WATCHED:
            values = h.get(metric, [])
            if values:
                epoch, value, since = plateau(values, higher, first_epoch(h, metric))
                cells += [f"{value:.3f} @ {epoch}", since]
            else:
                cells += [None, None]
        status = "under way" if run.get("seconds_this_run") is None else "done"
        caps = run.get("captions") or {}
        cider = (f"{caps['model']['CIDEr']:.3f} ({caps['most frequent training caption']['CIDEr']:.3f}) @ "
                 f"{caps['epochs']}") if caps else None
        final = run.get("final")
        final_cell = (f"{final['val_lm_r1']:.3f} / {final['val_lm_image_r1']:.3f} / {final['val_cap_nll']:.2f} "
                      f"({final['items']})") if final else None
        rows.append((run["variant"], run["seed"], run["epochs"], status, *cells, final_cell, cider))
    header = ("variant", "seed", "epochs", "fit", *(c for m, _ in WATCHED for c in (f"best {m} @ epoch",
                                                                                     "epochs since")),
              "last epoch, more pairs: LM R@1 / LM image R@1 / NLL (pairs)", "val CIDEr (constant caption) @ epoch")
    lines = [f"VLAP pilots on {config['dataset']} {config['fit']} ({1 - config['common']['val_fraction']:.0%} train, "
             f"{config['common']['val_fraction']:.0%} validation, {config['common']['val_lm_items']} of those pairs "
             f"scored by the LM's likelihood every epoch; `{config['path'].relative_to(ROOT)}`). "
             "A variant has plateaued on a metric when its best epoch lies several epochs before its last "
             "(\"epochs since\"); 0 means it was still improving at the last epoch.", "",
             *(markdown_table(header, rows, missing="–") if rows else ["No pilot of this config has run yet."])]
    chosen = selection_rows(runs)
    if chosen:
        lines += ["", "Choices on validation (stage 2): each point's score is its LM-likelihood R@1 on the held-out "
                  f"pairs (the `--score` value where there is one, else the mean of the last {LAST} epochs' "
                  "`val_lm_r1`), averaged over its seeds; ties go to the lower caption NLL. A choice at the edge of "
                  "a swept value's range means that grid must be widened.", "",
                  *markdown_table(("variant", "points", "chosen", "score", "caption NLL", "at a grid edge"), chosen,
                                  missing="–")]
    if figure is not None and runs:
        save_figure(curves(runs), figure)
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


def selection_rows(runs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
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
            pairs = [selection_score(run) for run in seeds]
            scores[name] = (sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs))
        best = max(scores, key=lambda n: (scores[n][0], -scores[n][1]))
        hps = {name: seeds[0]["hparams"] for name, seeds in points.items()}
        swept = [k for k in hps[best] if len({repr(h.get(k)) for h in hps.values()}) > 1 and
                 all(isinstance(h.get(k), (int, float)) for h in hps.values())]
        edges = [k for k in swept if hps[best][k] in (min(h[k] for h in hps.values()), max(h[k] for h in hps.values()))]
        rows.append((base, len(points), best, f"{scores[best][0]:.3f}", f"{scores[best][1]:.2f}",
                     ", ".join(edges) if edges else "no"))
    return rows


def curves(runs: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in CURVES if any(run["history"].get(m) for run in runs)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="default: the config's")
    parser.add_argument("--final-items", type=int, default=0, metavar="N",
                        help="after the fit, score N held-out pairs by the LM's likelihood (9,216 pairs for N = 96)")
    parser.add_argument("--snapshot", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--captions", type=int, metavar="N", help="caption N validation images of --variant")
    parser.add_argument("--score", type=int, metavar="N",
                        help="score N held-out pairs of --variant's last checkpoint by the LM's likelihood")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--figure", type=Path)
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
