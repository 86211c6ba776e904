"""Codebook-VLP's arms on the same frozen tokens, seeds and budget (issues 15, 32).

Every arm is a config of ``configs/codebook_vlp/`` that differs from ``full.yaml`` exactly in the fields
:data:`ARM_FIELDS` declares (checked here, so a drifting config stops the study):

- **k-means codes** (``full.yaml``): codes are k-means clusters of the frozen MobileNetV2 tokens, moved by EMA;
  MIM on the image encoder;
- **no codebook/MIM** (``no_codebook_mim.yaml``): ``codebook: false, mim: false``;
- **joint codebook** (``joint.yaml``, the paper's mechanism): codes of a projection of the model's own image
  states, learned by the VQ loss with gradient, with commitment, restarts and VQ-VAE's reconstruction term;
- **random codes** (``random_codes.yaml``): a frozen random codebook, the control for the codes' meaning;
- **fusion MIM** (``fusion_mim.yaml``): MIM read from an image-side fusion block that sees the caption.

Claims (:data:`CLAIMS`): joint − no codebook/MIM, joint − random codes, joint − k-means codes, fusion MIM −
k-means codes (image MIM), and joint − the linear contrastive head that ``align bench`` fits by name, on the
same frozen features, fit pairs, seeds and test items (:mod:`_codebook_vlp_baseline`; not an arm: no
validation here, its defaults were chosen on validation parts before). Image side: MobileNetV2's 7x7x1280
feature map as 49 spatial tokens, computed once and kept in the feature cache. Text side: all-MiniLM-L6-v2's
tokenizer and first layers.

1. **Validation** (never test): a seeded 20% of the 948 emoji anchor pairs is held out; every arm (seed 0)
   trains on the other 80% for each epoch count of ``--epoch-grid`` (one fit per arm resumed from its
   checkpoint from one grid point to the next, so the grid costs its largest value), and the count with the
   best validation I→T R@1 averaged over the arms (ties: fewer epochs; no arm's own optimum) is used by every
   arm everywhere after (equal budget: same pairs, epochs, batch and seeds). When that count is the grid's
   largest the report says so (validation may still be climbing); ``--extend-grid`` then doubles the top
   point, resuming the fits, until the best count is inside the grid or ``--grid-limit`` is reached.
2. **Study** (every seed, every arm, the chosen epochs):

   - emoji, concept-disjoint: fit on the 948 anchor image-name pairs; on the 956 unseen test emoji,
     image<->caption retrieval (every caption of an image counts, CLIP_benchmark's recall) with plain
     ITC cosine and with the ITM head re-scoring each query's top ``--rerank-k`` candidates (ALBEF's 128;
     the same fitted model, ``rerank_k`` set after the fit; ``retrieval_scores`` reads it: the class
     default stays 0 unless re-ranking helps here at the plateau), and zero-shot
     subcategory classification (emoji templates, mean of prompt embeddings; ITC only);
   - Fashion-MNIST: fit on ``train@1000`` with class-name captions (templates in turn, as the default
     benchmark), zero-shot classification on ``test@1000``;
   - shapes (the procedural set, ``align/data/shapes.py``): fit on the first (fullest) caption of
     ``train@1000`` images of one to three shapes; retrieval over all seven captions of ``test@500``;
     zero-shot colour and shape kind of a lone shape on ``shapes.single`` ``test@500`` (one shape, so
     each attribute is a clean class); code usage on those single-shape images, NMI against the kind.

Reported: per dataset, each arm's mean ± sample std over seeds with the 95% bootstrap interval of that mean
over the test items pooled over seeds; per claim, the paired difference with its paired bootstrap interval
over the same draws pooled over seeds, the seeds the first arm wins and the verdict (higher / lower only
when the paired interval excludes zero); code usage of every arm with a codebook on the test tokens
(perplexity, used and dead codes, top code's share, code/class NMI over token occurrences; statistics of the
pooled codes, not resampled); wall time per fit; and a PNG of the test emoji with most tokens on each of
the most used codes (first seed's emoji model of :data:`FIGURE_ARM`, else the first arm with codes).

Each fit's scores are saved as a small JSON under ``--runs`` (atomically), and a study fit's per-item
outputs (each query's rank both ways, plain and re-ranked; each image's zero-shot predictions; each
image's codes; :mod:`align.eval.items`) beside it as ``<run>.items.safetensors``, sealed by its
sha256 in the JSON; a rerun with the same hyper-parameters and data reuses them, so an interrupted
study resumes. Runs saved before per-item outputs were kept are reported without intervals
(``--redo-without-items`` refits them). The study also writes ``study.json`` beside the runs (its settings,
what the report says of each dataset, its times and machine; rewritten as each dataset's fits finish, so the
page shows those datasets while the rest run), so that ``--report`` rebuilds the same page
from the saved files alone (no tokens, fits or datasets; the gallery's PNG reads the emoji images), a page
that can be committed with its runs and checked (``benchmarks/generated.py``).

The fits can be shared between processes, one per core: each runs ``--fits-only`` on its own arms or seeds
(fitting what is missing, keeping the validation checkpoints, writing no manifest or page), and a plain run
afterwards finds every fit saved and writes both. A stream with some of the arms cannot choose the study's
budget (the count is chosen on the mean over all arms), so its study fits need ``--epochs``. Each fit is made
under its lock (``_common.claimed``): a ``--fits-only`` stream skips a fit that another process is making, and a
plain run waits for it and reads what it saved, so streams may overlap without fitting anything twice.

    python benchmarks/codebook_vlp_compare.py --threads 1        # the study (every arm, 3 datasets, 5 seeds)
    python benchmarks/codebook_vlp_compare.py --quick            # smoke run: 120 pairs, 1 seed, grid 1 2
    python benchmarks/codebook_vlp_compare.py --report --runs studies/codebook_vlp/study  # the page from saved runs
    python benchmarks/codebook_vlp_compare.py --progress --runs studies/codebook_vlp/study  # what is saved, what is left
    python benchmarks/codebook_vlp_compare.py --threads 1 --fits-only --arms "joint codebook" --datasets  # a stream
    python benchmarks/codebook_vlp_compare.py --threads 1 --fits-only --epochs 24 --datasets shapes --reverse-arms  # and
        # another stream over the same seeds from the other end (the plain order, without --reverse-arms)
    python benchmarks/codebook_vlp_compare.py --quick --seeds 0 1 --epochs 1 --runs /tmp/cvlp/runs \
        --output /tmp/cvlp/report.md --figure /tmp/cvlp/codes.png  # a short run with pooled intervals
        [--seeds 0 1 2 3 4] [--epoch-grid 2 4 6] [--extend-grid] [--grid-limit 24] [--epochs N (skip validation)]
        [--rerank-k 128] [--arms ...] [--datasets emoji fashion_mnist shapes] [--runs results/codebook_vlp_study]
        [--output results/codebook_vlp_compare.md] [--figure docs/figures/codebook_vlp_codes.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from _codebook_vlp_report import (MANIFEST, MissingRun, code_grid_lines, curves_name,  # --report's reading
                                  draw_code_grid, draw_validation_curves, figure_names, load_run, read_manifest,
                                  write_manifest)
from _codebook_vlp_baseline import SLUGS as HEAD_SLUGS  # the contrastive heads
from _codebook_vlp_baseline import (baseline_hparams, baseline_run, first_layers_embedder, fit_baseline,
                                    shallow_text_side, text_embedder)
from _codebook_vlp_progress import progress_lines, study_epochs  # --progress: what is saved, what is left
from _codebook_vlp_scoring import Eval, grid_data, score  # one fitted model's scores and per-item outputs
from _codebook_vlp_sets import SPLITS, STUDY_SETS, describe, split_facts  # each dataset's splits and paragraph
from _codebook_vlp_grid import (GridSearch, checkpoint_epochs, edge_note,  # the epoch grid
                                grid_validation, validation_table)
from _codebook_vlp_tables import (BASELINE, METRICS, REFERENCE, SHALLOW, arm_table, claim_table,  # the study's tables
                                  claims_of, code_table, figure_arm, in_short, interval_notes,
                                  retrieval_glance, what_held)
from _pilot import yaml_value  # benchmarks/_pilot.py
from _common import RunBusy, cached_run, emit, machine_info, machine_line  # benchmarks/_common.py
from align.bench.execute.features import fit_captions
from align.data.base import DatasetSplit, LabelSet
from align.features.cache import FeatureCache, FeatureKey, weights_fingerprint
from align.methods.codebook_vlp.aligner import CodebookVLPAligner
from align.methods.codebook_vlp.objectives import itm_prior_loss
from align.registry import DATASETS, VISION_ENCODERS

IMAGE_ENCODER = "torchvision:mobilenet_v2.imagenet1k_v1"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codebook_vlp"
VARIANTS = {REFERENCE: "full.yaml", "no codebook/MIM": "no_codebook_mim.yaml", "joint codebook": "joint.yaml",
            "random codes": "random_codes.yaml", "fusion MIM": "fusion_mim.yaml"}
SLUGS = {label: Path(file).stem for label, file in VARIANTS.items()}  # run file names
# the fields in which each arm differs from full.yaml, and no others (load_variants checks the configs)
ARM_FIELDS = {"no codebook/MIM": {"codebook", "mim"},
              "joint codebook": {"code_source", "codebook_update", "reconstruction"},
              "random codes": {"codebook_update"},
              "fusion MIM": {"mim_input"}}
VAL_FRACTION, VAL_SPLIT_SEED = 0.2, 0
# five seeds: with three, every difference between arms on emoji was under 0.01 (0.001-0.005 I→T R@1)
SEEDS = [0, 1, 2, 3, 4]
QUICK = 120  # --quick: the first this many items of every split
PAGE = "docs/studies/codebook_vlp_study.md"  # the study's page, as the README links it (--summary)
ITM_PRIOR_LOSS = itm_prior_loss()  # ITM's loss while it cannot tell pairs apart


def log(message: str) -> None:
    print(message, flush=True)


def study_split(name: str, quick: bool) -> str:
    """Split ``name`` of :data:`SPLITS` as the study loads it: with ``--quick``, its first :data:`QUICK` items."""
    return f"{name.split('@')[0]}@{QUICK}" if quick else name


def parity_problems(hparams: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What breaks equal settings: an arm (other than :data:`REFERENCE`) whose hyper-parameters differ from
    the reference's in other fields than :data:`ARM_FIELDS` declares for it, or an arm with no declaration."""
    reference = hparams[REFERENCE]
    problems = []
    for label, hp in hparams.items():
        if label == REFERENCE:
            continue
        differ = {k for k in reference.keys() | hp.keys() if reference.get(k) != hp.get(k)}
        declared = ARM_FIELDS.get(label)
        if declared is None:
            problems.append(f"{label}: no ARM_FIELDS entry")
        elif differ != declared:
            problems.append(f"{label} ({VARIANTS.get(label)}) must differ from {VARIANTS[REFERENCE]} in "
                            f"{sorted(declared)} only; it differs in {sorted(differ)}")
    return problems


def load_variants(arms: Sequence[str] | None = None, common: Mapping[str, Any] | None = None,
                  ) -> dict[str, dict[str, Any]]:
    """Hyper-parameters of ``arms`` (default: every arm), in :data:`VARIANTS` order, after checking every
    config against ``full.yaml`` (:func:`parity_problems`), with ``common`` set in every arm alike (a field
    an arm ablates cannot be set so)."""
    hparams = {label: yaml.safe_load((CONFIGS / file).read_text())["hparams"] for label, file in VARIANTS.items()}
    problems = parity_problems(hparams)
    if problems:
        raise SystemExit("configs/codebook_vlp/ arms are not comparable:\n" + "\n".join(problems))
    common = dict(common or {})
    unknown = sorted(set(common) - set(hparams[REFERENCE]))
    ablated = sorted(set(common) & set().union(*ARM_FIELDS.values()))
    if unknown or ablated:
        raise SystemExit(f"--set {', '.join(unknown + ablated)}: " + ("not a field of full.yaml" if unknown else
                         "a field an arm ablates; set it in that arm's config"))
    return {label: hp | common for label, hp in hparams.items() if arms is None or label in arms}


def overrides(pairs: Sequence[str], error: Callable[[str], Any]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as a mapping (values read by :func:`_pilot.yaml_value`)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            error(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = yaml_value(value)
    return out


def spatial_tokens(split: DatasetSplit, encoder: Any, cache: FeatureCache) -> torch.Tensor:
    """``[N, 49, 1280]`` MobileNetV2 feature-map tokens, through the feature cache (stored flattened)."""
    weights = weights_fingerprint(VISION_ENCODERS, IMAGE_ENCODER, encoder)
    preprocessing = json.dumps(dataclasses.asdict(encoder.data_config), sort_keys=True)
    key = FeatureKey(IMAGE_ENCODER, weights, preprocessing, split.dataset, split.version, split.split, "image-tokens")

    @torch.inference_mode()
    def embed_batch(start: int, stop: int) -> torch.Tensor:
        pixels = torch.stack([encoder.preprocess(split.load_image(i)) for i in range(start, stop)])
        return encoder.eval().forward_tokens(pixels).float().flatten(1)

    flat = cache.compute(key, split.num_items, embed_batch, batch_size=32, progress=False)
    return flat.view(len(flat), -1, encoder.embed_dim)


def fit(hp: dict[str, Any], tokens: torch.Tensor, captions: list[str]) -> tuple[CodebookVLPAligner, float]:
    started = time.perf_counter()
    aligner = CodebookVLPAligner(**hp).fit_captions(tokens, captions)
    return aligner, time.perf_counter() - started


# ------------------------------------------------------------------------------------------ validation

def validation_run(runs: Path, label: str, hparams: Mapping[str, Any], epochs: int, info: Mapping[str, Any],
                   rerank_k: int) -> tuple[Path, dict[str, Any]]:
    """Where a validation fit is saved, and its key (what ``--report`` looks it up by)."""
    hp = dict(hparams, seed=0, max_epochs=epochs)
    key = {"stage": "validation", "variant": label, "hparams": hp, "data": dict(info), "rerank_k": rerank_k}
    return runs / "val" / f"{SLUGS[label]}_e{epochs}.json", key


def validation(variants: dict, grid: list[int], tokens: torch.Tensor, anchors: DatasetSplit, rerank_k: int,
               runs: Path, extend: bool = False, limit: int = 24, keep_checkpoints: bool = False,
               ) -> tuple[GridSearch, dict[str, dict[int, dict]], dict[str, Any]]:
    """Every arm (seed 0) on 80% of the anchors for each epoch count, scored on the other 20%; the count
    with the best validation I→T R@1 averaged over the arms (:func:`_codebook_vlp_grid.search_grid`). The
    fits' checkpoints are deleted once the count is inside the grid, unless ``keep_checkpoints`` (another
    stream's arms may still be resuming from theirs)."""
    n = anchors.num_items
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    n_val = round(VAL_FRACTION * n)
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    captions, _ = fit_captions(anchors)
    train_captions = [captions[i] for i in train.tolist()]
    sub = anchors.extra_labels["subcategory"]
    data = Eval(tokens[val], [anchors.captions[i] for i in val.tolist()],
                {"subcat_acc1": LabelSet(sub.labels[val.numpy()], sub.class_names, sub.templates)},
                anchors.labels.labels[val.numpy()])
    info = {"fit": describe(anchors), "train_rows": len(train), "val_rows": len(val), "split_seed": VAL_SPLIT_SEED}
    log(f"validation: {len(train)} anchor pairs -> {len(val)} held-out anchor pairs; epochs {grid}"
        + (f", extended while the best is the top (up to {limit})" if extend else ""))
    root = runs / "val" / "checkpoints"

    def run(label: str, epochs: int) -> dict[str, Any]:
        checkpoints = root / SLUGS[label]
        path, key = validation_run(runs, label, variants[label], epochs, info, rerank_k)

        def make() -> dict[str, Any]:
            done = checkpoint_epochs(checkpoints)
            if done is not None and done > epochs:  # a checkpoint past this grid point: start afresh
                shutil.rmtree(checkpoints, ignore_errors=True)
            # resumes the previous grid point's last.ckpt (max_epochs may change on resume)
            aligner, seconds = fit(key["hparams"] | {"checkpoint_dir": str(checkpoints)}, tokens[train], train_captions)
            return score(aligner, data, rerank_k) | {"train_s": seconds, "history": aligner.history}

        result = cached_run(path, key, make, log)
        log(f"  {label}, {epochs} epochs: val I→T R@1 {result['i2t_r1']:.3f}, T→I R@1 {result['t2i_r1']:.3f}, "
            f"re-ranked I→T R@1 {result.get('i2t_r1_rr', float('nan')):.3f} ({result['train_s']:.0f} s)")
        return result

    search, found = grid_validation(list(variants), grid, run, extend, limit)
    if search.at_edge or keep_checkpoints:  # kept (~165 MB per arm) so that a rerun with --extend-grid resumes
        log(f"validation: the best count ({search.chosen}) is the grid's largest; checkpoints kept under {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return search, found, info


# ----------------------------------------------------------------------------------------------- study

def study_run(runs: Path, dataset: str, label: str, hparams: Mapping[str, Any], seed: int, epochs: int,
              info: Mapping[str, Any], rerank_k: int) -> tuple[Path, dict[str, Any]]:
    """Where a study fit is saved, and its key (what ``--report`` looks it up by)."""
    hp = dict(hparams, seed=seed, max_epochs=epochs)
    key = {"stage": "study", "dataset": dataset, "variant": label, "hparams": hp, "data": dict(info),
           "rerank_k": rerank_k}
    return runs / dataset / f"{SLUGS[label]}_seed{seed}.json", key


def study(dataset: str, variants: dict, seeds: list[int], epochs: int, fit_tokens: torch.Tensor,
          captions: list[str], data: Eval, rerank_k: int, info: dict[str, Any], runs: Path,
          keep_grid: bool, redo_without_items: bool = False, skip_busy: bool = False,
          reverse_arms: bool = False) -> dict[str, list[dict]]:
    """``runs[variant] = [result per seed]``: every arm for every seed with ``epochs``, each with its
    per-item outputs under ``PER_ITEM`` (None for a run saved before they were kept); with ``keep_grid``, a
    model with codes keeps the code gallery's data. A fit another process is making is waited for, or with
    ``skip_busy`` (a ``--fits-only`` stream) left to it and missing from the lists. ``reverse_arms`` takes each
    seed's arms last first, so that two streams over the same seeds start at opposite ends and meet once."""
    results: dict[str, list[dict]] = {label: [] for label in variants}
    order = list(variants.items())[::-1] if reverse_arms else list(variants.items())
    for seed in seeds:
        for label, hparams in order:
            path, key = study_run(runs, dataset, label, hparams, seed, epochs, info, rerank_k)

            def make() -> dict[str, Any]:
                aligner, seconds = fit(key["hparams"], fit_tokens, captions)
                out = score(aligner, data, rerank_k) | {"train_s": seconds, "history": aligner.history}
                if keep_grid and aligner.hparams["codebook"]:
                    out["grid"] = grid_data(aligner, data.tokens)
                return out

            try:
                result = cached_run(path, key, make, log, items=True, redo_without_items=redo_without_items,
                                    when_busy="skip" if skip_busy else "wait")
            except RunBusy as busy:
                log(f"  {dataset} {label} seed {seed}: skipped, {busy}")
                continue
            results[label].append(result)
            shown = [k for k in (*METRICS, "perplexity") if k in result]
            log(f"  {dataset} {label} seed {seed}: " + ", ".join(f"{k} {result[k]:.3f}" for k in shown)
                + f" ({result['train_s']:.0f} s fit, {result['eval_s']:.0f} s eval)")
    return results


def baseline_study(dataset: str, hparams: Mapping[str, Any], seeds: list[int], fit_tokens: torch.Tensor,
                   captions: list[str], data: Eval, info: dict[str, Any], runs: Path,
                   pool: Callable[[torch.Tensor], torch.Tensor], embed_texts: Callable[[Sequence[str]], torch.Tensor],
                   label: str = BASELINE, text_side: Mapping[str, Any] | None = None) -> list[dict]:
    """A linear contrastive head (:mod:`_codebook_vlp_baseline`: ``label``, its text side ``embed_texts``) for
    every seed, scored as the arms are, on the same test items (so its per-item outputs pair with theirs)."""
    found = []
    for seed in seeds:
        path, key = baseline_run(runs, dataset, hparams, seed, info, label, text_side)

        def make() -> dict[str, Any]:
            started = time.perf_counter()
            model = fit_baseline(hparams, seed, fit_tokens, captions, pool, embed_texts)
            return score(model, data, 0) | {"train_s": time.perf_counter() - started}

        result = cached_run(path, key, make, log, items=True)
        found.append(result)
        shown = [k for k in METRICS if k in result]
        log(f"  {dataset} {label} seed {seed}: " + ", ".join(f"{k} {result[k]:.3f}" for k in shown))
    return found


def fit_seconds(results: dict[str, list[dict]]) -> float:
    return sum(r["train_s"] + r["eval_s"] for rs in results.values() for r in rs)


# ----------------------------------------------------------------------------------- the study, the report

@dataclasses.dataclass
class Study:
    """What the page is written from: the manifest (settings, dataset facts, times; saved as ``study.json``),
    the validation search and runs (None with ``--epochs``), and every dataset's runs."""

    manifest: dict[str, Any]
    validation: tuple[GridSearch, dict[str, dict[int, dict]]] | None
    results: dict[str, dict[str, list[dict]]]
    load_image: Callable[[], Callable[[int], Any]]  # the emoji test images, for the gallery's PNG


def run_study(args: argparse.Namespace, runs: Path, common: Mapping[str, Any]) -> Study | None:
    """Tokens, validation and every fit (saved runs reused); the manifest written beside the runs (None and no
    manifest with ``--fits-only``: the streams' arms and seeds are parts of the study, not the study)."""
    started = time.perf_counter()
    variants = load_variants(args.arms, common)
    seeds, grid, rerank_k = args.seeds or SEEDS, args.epoch_grid, args.rerank_k
    if args.quick:
        seeds, grid, rerank_k = args.seeds or [0], [1, 2], 4
    study_rerank_k = rerank_k if args.study_rerank_k is None else args.study_rerank_k
    cache, encoder, made, tokens = FeatureCache(), VISION_ENCODERS.create(IMAGE_ENCODER), {}, {}
    text_side = shallow_text_side(reference_hparams(variants))
    # the arms' starting text tower for the shallow head: built once, and only where a dataset needs it
    shallow_text = functools.cache(lambda: first_layers_embedder(reference_hparams(variants)))

    def load(dataset: str, split: str) -> DatasetSplit:
        made.setdefault(dataset, DATASETS.create(dataset))
        return made[dataset].load(study_split(split, args.quick))

    def tokens_of(split: DatasetSplit) -> torch.Tensor:  # emoji's fit split is the anchors: computed once
        if describe(split) not in tokens:
            tokens[describe(split)] = spatial_tokens(split, encoder, cache)
        return tokens[describe(split)]

    anchors = load("emoji", SPLITS["emoji"][0])
    tokens_of(anchors)  # validation needs them in any case
    sets = [STUDY_SETS[name] for name in args.datasets]
    splits = {s.name: {role: load(*where) for role, where in s.roles().items()} for s in sets}
    for by_role in splits.values():
        for split in by_role.values():
            tokens_of(split)
    shape = tokens_of(anchors).shape
    token_seconds = time.perf_counter() - started
    manifest: dict[str, Any] = {
        "variants": variants, "baseline": baseline_hparams(), "baselines": [BASELINE, SHALLOW],
        "common": dict(common), "seeds": seeds,
        "rerank_k": rerank_k, "study_rerank_k": study_rerank_k,
        "tokens": list(shape[1:]), "threads": torch.get_num_threads(), "token_seconds": token_seconds,
        "datasets": {}}
    val = None
    if args.epochs is None:
        search, found, val_info = validation(variants, grid, tokens_of(anchors), anchors, rerank_k, runs,
                                             args.extend_grid, args.grid_limit, keep_checkpoints=args.fits_only)
        manifest["validation"] = {"grid": grid, "extend": args.extend_grid, "limit": args.grid_limit,
                                  "info": val_info, "anchors": anchors.num_items}
        val, epochs = (search, found), search.chosen
    else:
        epochs = args.epochs
    manifest["epochs"] = epochs
    log("\n".join(head_lines(manifest, val)))

    def save_progress() -> None:  # --report rebuilds the page of what has finished while the rest runs
        if sets and not args.fits_only:
            write_manifest(runs, json.loads(json.dumps(
                manifest | {"planned": [s.name for s in sets], "wall_seconds": time.perf_counter() - started,
                            "machine": machine_info()})))

    save_progress()  # the validation that chose the budget
    results = {}
    for s in sets:
        by_role = splits[s.name]
        log(f"{s.name}: {by_role['fit'].num_items} pairs -> {by_role['eval'].num_items} test images")
        captions, how = fit_captions(by_role["fit"])
        info = s.info(by_role, how)
        data = s.make_eval(by_role, {role: tokens_of(split) for role, split in by_role.items()})
        results[s.name] = study(s.name, variants, seeds, epochs, tokens_of(by_role["fit"]), captions, data,
                                study_rerank_k, info, runs, keep_grid=s.keep_grid,
                                redo_without_items=args.redo_without_items, skip_busy=args.fits_only,
                                reverse_arms=args.reverse_arms)
        for label in manifest["baselines"]:
            embed = text_embedder(cache) if label == BASELINE else shallow_text()
            results[s.name][label] = baseline_study(s.name, manifest["baseline"], seeds, tokens_of(by_role["fit"]),
                                                    captions, data, info, runs, lambda t: encoder.pool(t), embed,
                                                    label, text_side)
        facts = {role: split_facts(split) for role, split in by_role.items()} | {"captions": how}
        arm = figure_arm(results[s.name])
        if s.keep_grid and arm is not None:
            facts["figure_names"] = figure_names(results[s.name][arm][0]["grid"], by_role["eval"].captions)
        manifest["datasets"][s.name] = {"info": info, "facts": facts}
        save_progress()  # this dataset's fits, every seed and arm
    if args.fits_only:
        return None
    manifest |= {"wall_seconds": time.perf_counter() - started, "machine": machine_info()}
    manifest = json.loads(json.dumps(manifest))  # as --report reads it back, so both write the same page
    write_manifest(runs, manifest)
    test = splits.get("emoji", {}).get("eval")
    return Study(manifest, val, results, lambda: test.load_image)


def saved_study(runs: Path) -> Study:
    """The study saved under ``runs``, read back without tokens, fits or datasets; a one-line exit naming the
    runs that are missing."""
    manifest = read_manifest(runs)
    variants, seeds, rerank_k, epochs = (manifest[k] for k in ("variants", "seeds", "rerank_k", "epochs"))
    study_rerank_k = manifest.get("study_rerank_k", rerank_k)  # manifests before --study-rerank-k: the same
    val = None
    try:
        if manifest.get("validation"):
            v = manifest["validation"]
            val = grid_validation(list(variants), v["grid"], lambda label, e: load_run(
                *validation_run(runs, label, variants[label], e, v["info"], rerank_k)), v["extend"], v["limit"])
            if val[0].chosen != epochs:
                raise SystemExit(f"--report: the saved validation runs choose {val[0].chosen} epochs, "
                                 f"{MANIFEST} says {epochs}")
    except MissingRun as err:
        raise SystemExit(f"--report: a validation run is missing: {err}") from None
    results, missing, text_side = {}, [], shallow_text_side(reference_hparams(variants))
    for name, saved in manifest["datasets"].items():
        results[name] = {label: [] for label in variants}
        for seed in seeds:
            for label, hp in variants.items():
                try:
                    results[name][label].append(load_run(*study_run(runs, name, label, hp, seed, epochs,
                                                                    saved["info"], study_rerank_k), items=True))
                except MissingRun as err:
                    missing.append(str(err))
        for label in baselines_of(manifest):
            results[name][label] = []
            for seed in seeds:
                try:
                    results[name][label].append(load_run(*baseline_run(
                        runs, name, manifest["baseline"], seed, saved["info"], label, text_side), items=True))
                except MissingRun as err:
                    missing.append(str(err))
    if missing:
        raise SystemExit(f"--report: {len(missing)} run(s) missing: " + "; ".join(missing))

    def emoji_images() -> Callable[[int], Any]:
        split = manifest["datasets"]["emoji"]["facts"]["eval"]["split"]
        return DATASETS.create("emoji").load(split).load_image

    return Study(manifest, val, results, emoji_images)


def baselines_of(manifest: Mapping[str, Any]) -> list[str]:
    """The linear heads a saved study fitted beside its arms (none before the baseline; one before the shallow)."""
    if "baseline" not in manifest:
        return []
    return list(manifest.get("baselines", [BASELINE]))


def reference_hparams(variants: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The settings every arm shares, read from the reference arm (else the first: the arms differ only in the
    fields ARM_FIELDS names)."""
    return variants.get(REFERENCE) or next(iter(variants.values()))


def shallow_layers(variants: Mapping[str, Mapping[str, Any]]) -> int:
    """How many of the text model's layers every arm's text side starts from (the shallow head reads as many)."""
    return int(reference_hparams(variants)["text_layers"])


def rerank_cells(manifest: Mapping[str, Any]) -> str:
    """How many candidates ITM re-ranked: on validation and on test, where ``--study-rerank-k`` set them apart."""
    val, test = manifest["rerank_k"], manifest.get("study_rerank_k", manifest["rerank_k"])
    if val == test:
        return str(val)
    return f"{val} on validation and {test} on the test splits (`--study-rerank-k`; 0: none)"


def head_lines(manifest: Mapping[str, Any], val: tuple[GridSearch, dict] | None) -> list[str]:
    """The report's opening: the arms and settings, the tokens, and how the epochs were chosen."""
    variants, common, epochs = manifest["variants"], manifest["common"], manifest["epochs"]
    hp = reference_hparams(variants)
    shape = manifest["tokens"]
    arms = "; ".join(f"**{label}** (`{VARIANTS[label]}`" + (f": {', '.join(sorted(ARM_FIELDS[label]))}"
                                                            if label in ARM_FIELDS else ": the reference") + ")"
                     for label in variants)
    out = [f"Codebook-VLP arms, each a config of configs/codebook_vlp/ that differs from `full.yaml` only in the "
           f"fields named: {arms}. Image tokens: `{IMAGE_ENCODER}` 7x7 grid "
           f"({shape[0]} x {shape[1]}); text: `{hp['table']}` "
           f"({hp['text_layers']} text + {hp['fusion_layers']} fusion layers); {hp['num_codes']} codes. "
           f"Seeds {manifest['seeds']}; {epochs} epochs, batch {hp['batch_size']}, lr {hp['lr']}; ITM re-ranking "
           f"of each query's top {rerank_cells(manifest)} candidates (same fitted model, `rerank_k` set after the "
           f"fit); torch threads {manifest['threads']}."
           + (f" Set in every arm (`--set`): {', '.join(f'{k}={v}' for k, v in common.items())}." if common else ""),
           "", f"Spatial tokens (cached after the first run): {manifest['token_seconds']:.0f} s.", ""]
    if "baseline" in manifest:
        b = manifest["baseline"]
        out += [f"Beside the arms, the **{BASELINE}** that `align bench` fits by name (`contrastive`, "
                f"`configs/aligners/contrastive.yaml`: heads {b['heads']}, lr {b['lr']}, {b['max_epochs']} epochs, "
                f"batch {b['batch_size']}; its defaults were chosen on validation parts, not here), on the same fit "
                "pairs and seeds: the encoder's own pooled embedding of the same tokens, and frozen "
                f"`{hp['table']}` sentence embeddings. It is scored on the same test items, so the paired "
                f"difference joint codebook − {BASELINE} says whether the paper's model is within reach of a linear "
                "map on the same frozen features.", ""]
        if SHALLOW in baselines_of(manifest):
            out += [f"The **{SHALLOW}** is the same head, fitted and scored alike, on another text side: the mean "
                    f"of `{hp['table']}`'s token states after its first {shallow_layers(variants)} layer(s), "
                    "frozen, which is where every arm's text encoder starts before the arms train it. "
                    f"{BASELINE} − {SHALLOW} is what the deeper pretrained text side alone is worth to a linear map, "
                    f"to hold against joint codebook − {BASELINE}.", ""]
    if val is None:
        return out + [f"Epochs set to {epochs} by `--epochs` (no validation).", ""]
    (search, found), v = val, manifest["validation"]
    chosen = (f"**Epochs chosen on validation, never on test**: {v['info']['val_rows']} of the "
              f"{v['anchors']} emoji anchor pairs (seeded {VAL_FRACTION:.0%}, split seed "
              f"{VAL_SPLIT_SEED}) held out; each arm (seed 0) trained on the other "
              f"{v['info']['train_rows']} for {sorted(search.scores)} epochs (one fit per arm resumed from its "
              f"checkpoint between grid points) and scored on the held-out "
              f"pairs (retrieval over their captions; subcategory zero-shot over the anchors' classes). The "
              f"best validation I→T R@1 averaged over the arms is at **{epochs} epochs**; every arm trains "
              f"{epochs} epochs on every dataset below (equal budget: same pairs, epochs, batch and seeds).")
    return out + [chosen, "", edge_note(search, v["extend"], v["limit"]), "", *validation_table(found, search), ""]


def study_claims(found: Study) -> dict[str, Any]:
    """Each dataset's claim cells (:func:`claims_of`: paired bootstraps), computed once for its claim table and
    the "what held" lines of the page and of the summary."""
    return {name: claims_of(results, found.manifest["seeds"]) for name, results in found.results.items()}


def unfinished(manifest: Mapping[str, Any]) -> list[str]:
    """The datasets a manifest written before the study's end plans (``planned``: written when validation ends
    and again as each dataset's fits finish) whose fits have not all finished."""
    return [name for name in manifest.get("planned", []) if name not in manifest["datasets"]]


def summary(found: Study, page: str = PAGE) -> list[str]:
    """The study in a few plain lines for the README (``--summary``): the budget validation chose, then each
    claim's "what held" line, or that the study's fits are still running; ``page`` is linked from the README."""
    manifest, epochs = found.manifest, found.manifest["epochs"]
    where = ""
    if found.validation is not None:
        search = found.validation[0]
        where = (f", inside its grid {sorted(search.scores)}" if not search.at_edge else
                 f", the top of its grid {sorted(search.scores)}: validation may still have been climbing")
    chosen = f"validation chose {epochs} epochs for every arm{where}" if found.validation else f"{epochs} epochs"
    planned = unfinished(manifest)
    if not found.results:
        return [f"**Codebook-VLP** ([study]({page})): {chosen}. The study's test fits on "
                f"{', '.join(planned) or 'no dataset'} have not all finished, so no claim is tested yet."]
    seeds, claims = manifest["seeds"], study_claims(found)
    rest = ([f"The test fits on {', '.join(planned)} have not all finished: the lines above are "
             f"{', '.join(found.results)} alone."] if planned else [])
    return [f"**Codebook-VLP** ([study]({page})): {chosen}; {len(seeds)} seeds on "
            f"{', '.join(found.results)}.", "", *[line for short in in_short(claims) for line in (short, "")],
            "Each claim (variant − baseline) over every dataset and metric, by its "
            "paired 95% interval over test items pooled over seeds:", "", *what_held(claims),
            *[line for glance in retrieval_glance(found.results) for line in ("", glance)],
            *([""] + rest if rest else [])]


def render(found: Study, runs: Path, output: Path | None, figure: Path) -> list[str]:
    """The page, from what the full run and ``--report`` both have; the gallery's PNG drawn to ``figure``."""
    manifest, seeds = found.manifest, found.manifest["seeds"]
    num_codes = reference_hparams(manifest["variants"])["num_codes"]
    out = head_lines(manifest, found.validation)
    if found.validation is not None:
        curves = curves_name(figure)
        where = os.path.relpath(curves, output.parent) if output is not None else str(curves)
        draw_validation_curves(found.validation[1], curves)
        out += [f"Learning curves of the validation fits (figure: `{where}`): validation I→T R@1 at each epoch "
                "count, and each epoch's MIM accuracy on the training batches' masked tokens beside the marginal "
                "(always naming the batch's most frequent code).", "",
                f"![validation curves]({where})", "",
                f"ITM's training loss is read against {ITM_PRIOR_LOSS:.3f}, its loss when it always predicts the "
                "batch's share of matched pairs (one matched pair to two hard negatives): until it falls below "
                "that, the matching head tells pairs apart no better than the batch's make-up does, and "
                "re-ranking by it is re-ranking by chance.", ""]
    study_at = len(out)  # the notes on intervals go before the study's tables
    claims = study_claims(found)  # each dataset's claim cells, for its table and the "what held" lines
    seconds = 0.0 if found.validation is None else sum(
        r["train_s"] + r["eval_s"] for per in found.validation[1].values() for r in per.values())
    for name, results in found.results.items():
        s, facts = STUDY_SETS[name], manifest["datasets"][name]["facts"]
        seconds += fit_seconds(results)
        out += [s.paragraph(facts), "", *arm_table(results, seeds),
                *claim_table(results, seeds, claims=claims[name]),
                f"Code usage of every arm with a codebook on {s.where(facts, manifest['tokens'][0])} ({num_codes} "
                f"codes; NMI against the {s.what}, over token occurrences):", "", *code_table(results, seeds, s.what)]
        arm = figure_arm(results)
        if s.keep_grid and arm is not None:
            where = os.path.relpath(figure, output.parent) if output is not None else str(figure)
            out += code_grid_lines(results[arm][0]["grid"], facts["figure_names"], where, seeds[0], arm)
            draw_code_grid(results[arm][0]["grid"], found.load_image(), figure, seeds[0], arm)
    held = what_held(claims)
    if held:  # where each claim held, in one line, above the tables it is read from
        held = ["**What held**, claim by claim (variant − baseline; a cell is one dataset and metric, and its verdict "
                "is the paired interval's, over test items pooled over seeds; the tables below give each cell):", "",
                *held, "", *[line for glance in retrieval_glance(found.results) for line in (glance, "")]]
        held = [line for short in in_short(claims) for line in (short, "")] + held
    planned = unfinished(manifest)
    if planned:  # a manifest written when validation or a dataset's fits ended, before the rest
        shown = (f"the tables below are of {', '.join(found.results)}, whose fits have" if found.results else
                 "this page shows the validation that chose their budget")
        held = [f"**The study's fits on {', '.join(planned)} have not all finished**: {shown}; the same command "
                "resumes them.", "", *held]
    out[study_at:study_at] = [*held, *interval_notes(list(found.results.values()))]
    return out + [f"Wall time of the study's invocation (tokens, validation, fits; the one that wrote "
                  f"`{MANIFEST}`): {manifest['wall_seconds']:.0f} s; fits and scoring of every run in the report "
                  f"(saved runs keep the time they took): {seconds:.0f} s.", "",
                  f"Runs: `{runs}/` (one JSON per fit, and a study fit's per-item outputs beside it).", "",
                  machine_line(load=True, info=manifest["machine"])]


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("results/codebook_vlp_compare.md"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/codebook_vlp_codes.png"))
    parser.add_argument("--runs", type=Path, default=Path("results/codebook_vlp_study"),
                        help="one JSON per fit; reused when rerun with the same settings")
    parser.add_argument("--report", action="store_true",
                        help=f"rebuild the report from the runs and RUNS/{MANIFEST} alone (no tokens, fits or "
                             "datasets; the settings are the saved study's: only --runs, --quick, --output and "
                             "--figure apply)")
    parser.add_argument("--progress", action="store_true",
                        help="print which fits of --datasets and --seeds are saved under --runs, and how many are "
                             "left (from the run files alone; at --epochs, else the saved study's budget)")
    parser.add_argument("--summary", action="store_true",
                        help="with --report: write the README's few lines (the chosen budget and what held) to "
                             "--output instead of the page")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"default {' '.join(map(str, SEEDS))} (with --quick: 0)")
    parser.add_argument("--epoch-grid", type=int, nargs="+", default=[2, 4, 6],
                        help="epoch counts scored on the validation part of the emoji anchors")
    parser.add_argument("--extend-grid", action="store_true",
                        help="while the best count is the grid's largest, double it (fits resume) up to --grid-limit")
    parser.add_argument("--grid-limit", type=int, default=24, help="the largest count --extend-grid adds")
    parser.add_argument("--epochs", type=int, default=None, help="use these epochs and skip validation")
    parser.add_argument("--rerank-k", type=int, default=128,
                        help="ITM re-ranking of each query's top k (0: none; ALBEF re-ranks 128)")
    parser.add_argument("--study-rerank-k", type=int, default=None,
                        help="re-ranking of the study's test fits (default: --rerank-k). Validation scores every arm "
                             "at every count with --rerank-k; where the matching head is at its prior there, "
                             "re-ranking the test splits measures chance at the cost of many fusion passes")
    parser.add_argument("--arms", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which arms to fit (default: all; claims need both of their arms)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 120 pairs, 120 eval items, seed 0 (unless --seeds), grid 1 2, re-rank 4, "
                             "runs under RUNS/quick")
    parser.add_argument("--redo-without-items", action="store_true",
                        help="refit study runs saved before per-item outputs were kept "
                             "(else reported without intervals)")
    parser.add_argument("--datasets", nargs="*", choices=list(SPLITS), default=list(SPLITS),
                        help="the study's datasets (none: validation only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="one hyper-parameter of every arm (YAML value; e.g. image_layers=4), repeatable")
    parser.add_argument("--fits-only", action="store_true",
                        help="one stream of several: fit what is missing, keep the validation checkpoints, write no "
                             "manifest or page (a plain run afterwards writes them from the saved fits)")
    parser.add_argument("--reverse-arms", action="store_true",
                        help="with --fits-only: take each seed's arms last first, so that a second stream over the "
                             "same seeds starts where the first ends and neither waits for the other")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice; 1 is faster when other jobs share the cores)")
    args = parser.parse_args(argv)
    args.common = overrides(args.overrides, parser.error)
    if args.summary and not args.report:
        parser.error("--summary goes with --report (it reads the saved study)")
    if args.progress and (args.report or args.fits_only):
        parser.error("--progress only reads what is saved: give it without --report or --fits-only")
    if args.reverse_arms and not args.fits_only:
        parser.error("--reverse-arms goes with --fits-only (a plain run waits for a busy fit instead of skipping it)")
    if args.fits_only and args.report:
        parser.error("--fits-only fits and --report does not: give one of them")
    if args.fits_only and args.datasets and args.epochs is None and set(args.arms) != set(VARIANTS):
        parser.error("--fits-only with some of the arms cannot choose the study's budget (it is chosen on all "
                     "arms' mean): give --epochs, or --datasets with none for validation fits only")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runs = args.runs / "quick" if args.quick else args.runs
    if args.progress:
        epochs = args.epochs if args.epochs is not None else study_epochs(runs, MANIFEST)
        log("\n".join(progress_lines(runs, args.datasets, args.seeds or SEEDS, {a: SLUGS[a] for a in args.arms},
                                     HEAD_SLUGS, epochs)))
        return
    found = saved_study(runs) if args.report else run_study(args, runs, args.common)
    if found is None:
        log(f"--fits-only: the fits are saved under {runs}; a run without it writes the page")
        return
    emit("\n".join(summary(found) if args.summary else render(found, runs, args.output, args.figure)), args.output)


if __name__ == "__main__":
    main()
