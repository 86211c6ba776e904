"""benchmarks/codebook_vlp_compare.py's study tables: what each arm scored over seeds with intervals, the
paired claims, code usage, and how the intervals were made. Pure functions of saved runs (no model, no data),
so the report and ``--report`` write the same tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from _common import (PER_ITEM, ClaimCells, claim_cells, interval_cell,  # benchmarks/_common.py
                     markdown_table, mean_std, verdict_lines, verdict_side)
from align.eval.bootstrap import Bootstrap

REFERENCE = "k-means codes"  # the config every arm is checked against (full.yaml)
BASELINE = "linear contrastive head"  # not an arm: the contrastive aligner beside them (_codebook_vlp_baseline.py)
SHALLOW = "linear head on first-layer text"  # the same head on the text states every arm starts from
# (variant, baseline): the paired differences the report claims, each where both arms ran; the last two say
# how much of the gap to the linear head its deeper text side accounts for
PAPER_ARM = "joint codebook"  # the paper's mechanism: the arm every claim about the codes starts from
CLAIMS = ((PAPER_ARM, "no codebook/MIM"), (PAPER_ARM, "random codes"), (PAPER_ARM, REFERENCE),
          ("fusion MIM", REFERENCE), (PAPER_ARM, BASELINE), (PAPER_ARM, SHALLOW), (BASELINE, SHALLOW))
FIGURE_ARM = PAPER_ARM  # whose codes the gallery shows (else the first arm with a codebook)
# key -> (header, higher is better, (per-item outputs, their metric)); the ``_rr`` keys are the same model
# re-ranked by its ITM head
METRICS = {
    "i2t_r1": ("I→T R@1", True, ("retrieval", "text_retrieval_recall@1")),
    "t2i_r1": ("T→I R@1", True, ("retrieval", "image_retrieval_recall@1")),
    "i2t_r5": ("I→T R@5", True, ("retrieval", "text_retrieval_recall@5")),
    "i2t_r1_rr": ("I→T R@1, ITM re-rank", True, ("retrieval_rr", "text_retrieval_recall@1")),
    "t2i_r1_rr": ("T→I R@1, ITM re-rank", True, ("retrieval_rr", "image_retrieval_recall@1")),
    "i2t_r5_rr": ("I→T R@5, ITM re-rank", True, ("retrieval_rr", "text_retrieval_recall@5")),
    "subcat_acc1": ("subcategory zero-shot acc1", True, ("zeroshot", "acc1")),
    "acc1": ("zero-shot acc1", True, ("zeroshot", "acc1")),
    "colour_acc1": ("colour zero-shot acc1 (one shape)", True, ("zeroshot_colour", "acc1")),
    "shape_acc1": ("shape zero-shot acc1 (one shape)", True, ("zeroshot_shape", "acc1")),
}
# key -> format. Not resampled (the codes are kept, CodeItems): statistics of the pooled codes, not means over
# images, which a bootstrap draw (images repeated, others left out) shifts: fewer codes seen, lower
# perplexity, higher plug-in NMI, so a percentile interval could miss the value itself.
CODE_METRICS = {"perplexity": ".1f", "used_codes": ".0f", "dead_codes": ".0f", "top_share": ".3f", "code_nmi": ".3f"}
BOOTSTRAP = Bootstrap()  # the intervals' settings (1000 resamples, seed 0, 95%), stated in the report


def items_by_seed(runs: list[dict], seeds: list[int], name: str) -> dict[int, Any] | None:
    """``{seed: items}`` of one per-item output of a variant's runs; None unless every run has it."""
    found = {seed: (r.get(PER_ITEM) or {}).get(name) for seed, r in zip(seeds, runs)}
    return found if all(v is not None for v in found.values()) else None


def arm_table(results: dict[str, list[dict]], seeds: list[int], boot: Bootstrap = BOOTSTRAP) -> list[str]:
    """Per metric, each arm's mean ± sample std over seeds with [its bootstrap interval pooled over seeds]
    ("–" where a model does not have the metric: the baseline has no ITM to re-rank with)."""
    labels = list(results)
    rows = []
    for key, (header, _, (name, metric)) in METRICS.items():
        if not any(key in rs[0] for rs in results.values()):
            continue
        cells = []
        for rs in results.values():
            if key not in rs[0]:
                cells.append("–")
                continue
            items = items_by_seed(rs, seeds, name)
            cells.append(interval_cell([r[key] for r in rs], None if items is None else list(items.values()),
                                       metric, boot))
        rows.append((header, *cells))
    rows.append(("seconds per fit", *(mean_std([r["train_s"] for r in rs]).format(".1f") for rs in results.values())))
    return [*markdown_table(("metric", *labels), rows, align="l" + "r" * len(labels)), ""]


def claim_metrics(variant: list[dict], baseline: list[dict], seeds: list[int], boot: Bootstrap = BOOTSTRAP,
                  ) -> Iterator[tuple[str, ClaimCells]]:
    """``(metric header, cells)`` of ``variant − baseline`` for each metric both arms' runs have: the paired
    per-seed difference, its paired interval over the same draws of test items pooled over seeds, the seeds the
    variant wins and the verdict."""
    for key, (header, higher, (name, metric)) in METRICS.items():
        if key in variant[0] and key in baseline[0]:
            yield header, claim_cells(dict(zip(seeds, [r[key] for r in variant])),
                                      dict(zip(seeds, [r[key] for r in baseline])), items_by_seed(variant, seeds, name),
                                      items_by_seed(baseline, seeds, name), metric, boot, higher)


Claims = dict[tuple[str, str], list[tuple[str, ClaimCells]]]  # (variant, baseline) -> (metric header, cells)


def claims_of(results: dict[str, list[dict]], seeds: list[int], boot: Bootstrap = BOOTSTRAP) -> Claims:
    """:func:`claim_metrics` of each claim of :data:`CLAIMS` whose two arms both ran, computed once for the
    claim table and the "what held" lines (each cell is a paired bootstrap)."""
    return {(variant, baseline): list(claim_metrics(results[variant], results[baseline], seeds, boot))
            for variant, baseline in CLAIMS if variant in results and baseline in results}


def claim_table(results: dict[str, list[dict]], seeds: list[int], boot: Bootstrap = BOOTSTRAP,
                claims: Claims | None = None) -> list[str]:
    """Per claim whose two arms ran, and per metric, its cells (``claims``, else :func:`claims_of`); then the
    difference in seconds per fit (not resampled)."""
    rows = []
    for (variant, baseline), cells in (claims_of(results, seeds, boot) if claims is None else claims).items():
        a, b, claim = results[variant], results[baseline], f"{variant} − {baseline}"
        rows += [(claim, header, c.mean_std, c.interval, c.seeds_better, c.verdict) for header, c in cells]
        seconds = mean_std([r["train_s"] - s["train_s"] for r, s in zip(a, b)]).format(".1f")
        rows.append((claim, "seconds per fit", seconds, "not resampled", "", ""))
    header = ("difference", "metric", "paired diff, mean ± std over seeds", "paired 95% interval (pooled)",
              "seeds better", "verdict")
    return [*markdown_table(header, rows, align="llrrrl"), ""] if rows else []


def what_held(claims: dict[str, Claims]) -> list[str]:
    """Each claim in one plain line over every dataset and metric (:func:`verdict_lines`), from each dataset's
    :func:`claims_of`, the cells its claim table shows."""
    return verdict_lines((f"{variant} − {baseline}", f"{dataset} {header}", c)
                         for dataset, by_claim in claims.items()
                         for (variant, baseline), cells in by_claim.items() for header, c in cells)


CODE_CLAIMS = CLAIMS[:4]  # the claims about the codes and MIM; the rest hold the model against the linear heads


def _unanimous(cells: ClaimCells) -> bool:
    """Every seed on the side the pooled interval took ("5/5" better, "0/5" worse)."""
    agreeing, total = cells.seeds_better.split("/")
    return agreeing == (total if verdict_side(cells) == "better" else "0")


def in_short(claims: dict[str, Claims]) -> list[str]:
    """The study's answer in two plain sentences, counted from the same cells as the claim lines: how the claims
    about the codes came out (better, worse, tied; and whether every seed agreed where an interval excludes
    zero), then where the paper's model stands against the linear contrastive head, dataset by dataset."""
    code = [(dataset, variant, baseline, header, c) for dataset, by_claim in claims.items()
            for (variant, baseline), cells in by_claim.items() if (variant, baseline) in CODE_CLAIMS
            for header, c in cells if verdict_side(c) != "none"]
    out = []
    if code:
        count = {side: [x for x in code if verdict_side(x[4]) == side] for side in ("better", "worse", "tie")}
        firm = [x for x in count["better"] if _unanimous(x[4])]
        told = (f"{len(count['better'])} say better ({len(firm)} with every seed agreeing), "
                f"{len(count['worse'])} worse ({sum(_unanimous(x[4]) for x in count['worse'])} with every seed), "
                f"and {len(count['tie'])} cannot be told apart")
        held = ("no claim about the codes holds with every seed agreeing" if not firm else
                "with every seed agreeing, better on " + ", ".join(f"{v} − {b} ({d} {h})" for d, v, b, h, _ in firm))
        out.append(f"**In short**: of the {len(code)} cells of the {len({x[1:3] for x in code})} claims about the "
                   f"codes and MIM ({', '.join(claims)}), {told}: {held}.")
    against = {dataset: [c for header, c in by_claim.get((PAPER_ARM, BASELINE), []) if verdict_side(c) != "none"]
               for dataset, by_claim in claims.items()}
    parts = []
    for side, word in (("better", "above"), ("worse", "below"), ("tie", "tied with")):
        where = [f"{dataset} ({sum(verdict_side(c) == side for c in cells)} of {len(cells)} "
                 f"metric{'s' * (len(cells) > 1)})"
                 for dataset, cells in against.items() if any(verdict_side(c) == side for c in cells)]
        if where:
            parts.append(f"{word} it on {', '.join(where)}")
    if parts:
        out.append(f"Against the {BASELINE}, the {PAPER_ARM} model is " + "; ".join(parts) + ".")
    return out


def retrieval_glance(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    """One line: I→T R@1, mean over seeds, of the paper's model (:data:`PAPER_ARM`) beside both linear heads on
    each dataset with retrieval, then what sets them apart by design; none until two of them have run there."""
    parts = []
    for dataset, by_label in results.items():
        cells = [f"{label} {sum(r['i2t_r1'] for r in by_label[label]) / len(by_label[label]):.3f}"
                 for label in (PAPER_ARM, BASELINE, SHALLOW)
                 if by_label.get(label) and all("i2t_r1" in r for r in by_label[label])]
        if len(cells) > 1:
            parts.append(f"{dataset}: " + ", ".join(cells))
    if not parts:
        return []
    return [f"I→T R@1, mean over seeds: {'; '.join(parts)}. Both heads map one pooled vector per image onto "
            "frozen text features; the arms read the 7x7 token grid and train a text tower that starts where the "
            "first-layer head's text side is, so the difference between the two heads is what the deeper "
            "pretrained text side alone is worth to a linear map."]


def code_table(results: dict[str, list[dict]], seeds: list[int], what: str) -> list[str]:
    """Code usage of every arm with a codebook, mean ± std over seeds (not resampled: see CODE_METRICS)."""
    header = ("arm", "code perplexity", "used codes", "dead codes", "top code's share", f"code/{what} NMI")
    rows = [(label, *(mean_std([r[k] for r in rs]) for k in CODE_METRICS))
            for label, rs in results.items() if all(k in rs[0] for k in CODE_METRICS)]
    return [*markdown_table(header, rows, formats=["", *CODE_METRICS.values()], align="lrrrrr"), ""]


def figure_arm(results: dict[str, list[dict]]) -> str | None:
    """The arm whose codes the gallery shows: :data:`FIGURE_ARM` if it ran, else the first arm with codes."""
    with_grid = [label for label, rs in results.items() if rs and "grid" in rs[0]]
    return FIGURE_ARM if FIGURE_ARM in with_grid else next(iter(with_grid), None)


def interval_notes(results: list[dict[str, list[dict]]], boot: Bootstrap = BOOTSTRAP) -> list[str]:
    """How the intervals are made, and which runs have none."""
    lines = [f"Intervals: {boot.describe()} (`[low, high]`), pooled over seeds: each draw of test items (images; "
             "a caption is drawn with its image) is applied to every seed's per-item outputs and the seeds "
             "averaged, so the interval is for the mean shown. A claim's paired interval gives both arms the same "
             "draws; the verdict is higher / lower only when it excludes zero, else the two cannot be told apart. "
             "Not resampled: seconds per fit, and the code usage table (perplexity, used and dead codes, top share, "
             "code NMI): statistics of the pooled codes, not means over images, which a bootstrap draw (images "
             "repeated, others left out) shifts (fewer codes, lower perplexity, higher plug-in NMI), so a "
             "percentile interval would not cover them. The codes are kept with each run.", ""]
    old = sum(r.get(PER_ITEM) is None for by_variant in results for rs in by_variant.values() for r in rs)
    if old:
        lines += [f"{old} run(s) were saved before per-item outputs were kept: their cells have no interval "
                  "(rerun with `--redo-without-items` to refit them).", ""]
    return lines
