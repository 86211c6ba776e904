"""benchmarks/codebook_vlp_compare.py's bookkeeping (no model is fitted): every committed arm differs from
full.yaml exactly in its declared fields (and a drift is caught), the claim table counts the seeds the
variant wins and gives the paired bootstrap interval and verdict from planted per-item outputs (a real gap
is told apart, noise is not), the epoch grid reports its top edge and ``--extend-grid`` goes past the
optimum of a fake scorer, scoring reads zero-shot and codes from their own tokens (the shapes set), and a
study run's per-item outputs are saved with it and read back (saved runs: ``cached_run`` in
tests/unit/test_bench_common.py)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

import numpy as np
import pytest

from bench_scripts import load_benchmark

script = load_benchmark("codebook_vlp_compare")
report_module = load_benchmark("_codebook_vlp_report")
tables = load_benchmark("_codebook_vlp_tables")
scoring = sys.modules["_codebook_vlp_scoring"]  # what one fitted model scores, as the script imported it
grid = sys.modules["_codebook_vlp_grid"]  # the epoch grid as the script imported it, so a patch reaches the script
N = 300  # test images, one caption each


KMEANS, NONE, JOINT, RANDOM, FUSION = "k-means codes", "no codebook/MIM", "joint codebook", "random codes", "fusion MIM"
BASE = "linear contrastive head"
SHALLOW = "linear head on first-layer text"


def test_every_committed_arm_differs_from_full_yaml_exactly_in_its_declared_fields() -> None:
    arms = script.load_variants()
    assert list(arms) == list(script.VARIANTS) and script.VARIANTS[KMEANS] == "full.yaml"
    assert set(script.ARM_FIELDS) == set(arms) - {KMEANS}
    full = arms[KMEANS]
    for label, fields in script.ARM_FIELDS.items():
        assert {k for k in full.keys() | arms[label].keys() if full.get(k) != arms[label].get(k)} == fields, label
    assert (full["codebook"], full["mim"], arms[NONE]["codebook"], arms[NONE]["mim"]) == (True, True, False, False)
    assert (arms[JOINT]["code_source"], arms[JOINT]["codebook_update"]) == ("states", "loss")
    assert arms[JOINT]["reconstruction"] > 0 and full["code_source"] == "tokens"
    assert arms[RANDOM]["codebook_update"] == "frozen" and arms[FUSION]["mim_input"] == "fusion"
    assert all(hp["rerank_k"] == 0 for hp in arms.values())  # re-ranking is set after the fit
    for hp in arms.values():  # each arm is a valid set of hyper-parameters (e.g. reconstruction needs states)
        assert script.CodebookVLPAligner(**hp).hparams["seed"] == 0
    assert list(script.load_variants([JOINT, NONE])) == [NONE, JOINT]  # a subset, in the study's order
    for variant, baseline in tables.CLAIMS:
        heads = (tables.BASELINE, tables.SHALLOW)  # the linear heads beside the arms
        assert (variant in arms or variant in heads) and (baseline in arms or baseline in heads)


def test_a_config_that_drifts_from_full_yaml_is_refused() -> None:
    arms = script.load_variants()
    assert script.parity_problems(arms) == []
    drifted = dict(arms, **{RANDOM: arms[RANDOM] | {"lr": 0.01}})
    assert script.parity_problems(drifted) == [
        "random codes (random_codes.yaml) must differ from full.yaml in ['codebook_update'] only; it differs in "
        "['codebook_update', 'lr']"]
    missing = dict(arms, **{JOINT: arms[JOINT] | {"reconstruction": arms[KMEANS]["reconstruction"]}})
    assert "differs in ['code_source', 'codebook_update']" in script.parity_problems(missing)[0]
    assert script.parity_problems(dict(arms, extra=arms[KMEANS])) == ["extra: no ARM_FIELDS entry"]


def test_claim_table_counts_the_seeds_the_variant_wins() -> None:
    joint = [{"i2t_r1": 0.3, "train_s": 10.0}, {"i2t_r1": 0.2, "train_s": 12.0}]
    none = [{"i2t_r1": 0.1, "train_s": 8.0}, {"i2t_r1": 0.4, "train_s": 8.0}]
    lines = tables.claim_table({NONE: none, JOINT: joint}, [0, 1])
    cells = cells_of(lines, f"{JOINT} − {NONE}")
    assert cells[0] == "I→T R@1" and cells[-2:] == ["1/2", "–"]
    assert cells[-3] == "no per-item outputs"  # runs saved before items were kept
    assert cells[1].endswith("0.000 ± 0.283")  # paired differences 0.2 and -0.2
    assert len([line for line in lines if line.startswith("| joint")]) == 2  # R@1 and seconds; no other claim ran
    assert tables.claim_table({NONE: none}, [0, 1]) == []


def test_in_short_counts_the_code_claims_and_places_the_model_against_the_head_per_dataset() -> None:
    common = sys.modules["_common"]

    def cell(verdict: str, seeds: str) -> Any:
        return common.ClaimCells("", "", seeds, verdict)

    better, firm, worse, tie = (cell("higher (better)", "3/5"), cell("higher (better)", "5/5"),
                                cell("lower (worse)", "0/5"), cell("cannot be told apart", "2/5"))
    claims = {"emoji": {(JOINT, NONE): [("I→T R@1", tie), ("T→I R@1", worse)], (JOINT, RANDOM): [("I→T R@1", better)],
                        (JOINT, BASE): [("I→T R@1", worse), ("T→I R@1", worse)]},
              "shapes": {(FUSION, KMEANS): [("I→T R@1", firm)], (JOINT, BASE): [("I→T R@1", better), ("T→I R@1", tie)],
                         (JOINT, SHALLOW): [("I→T R@1", firm)]}}  # not a claim about the codes
    code_line, head_line = tables.in_short(claims)
    assert "of the 4 cells of the 3 claims about the codes and MIM (emoji, shapes)" in code_line
    assert "2 say better (1 with every seed agreeing), 1 worse (1 with every seed), and 1 cannot be told apart" in code_line
    assert code_line.endswith(f"with every seed agreeing, better on {FUSION} − {KMEANS} (shapes I→T R@1).")
    assert head_line == (f"Against the {BASE}, the {JOINT} model is above it on shapes (1 of 2 metrics); "
                         "below it on emoji (2 of 2 metrics); tied with it on shapes (1 of 2 metrics).")
    claims["shapes"][(FUSION, KMEANS)] = [("I→T R@1", better)]
    assert tables.in_short(claims)[0].endswith("no claim about the codes holds with every seed agreeing.")
    assert tables.in_short({"emoji": {}}) == []


def cells_of(lines: list[str], first: str, metric: str | None = None) -> list[str]:
    """The cells after the first of the row that starts with ``first`` (and, in a claim table, whose metric
    is ``metric``)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in lines if line.startswith(f"| {first} |")]
    return next(r[1:] for r in rows if metric is None or r[1] == metric)


def planted(hits: np.ndarray, seed: int, codes: bool) -> dict[str, Any]:
    """A study run whose image and text queries find their match first exactly where ``hits``, whose
    zero-shot predictions are right there too, and (full model) whose codes follow the labels."""
    from align.eval.items import ClassificationItems, CodeItems, RetrievalItems

    labels = np.arange(N) % 10
    ranks = np.where(hits, 0, 7).astype(np.int64)
    items: dict[str, Any] = {
        "retrieval": RetrievalItems(ranks, ranks.copy(), np.arange(N, dtype=np.int64), (1, 5)),
        "zeroshot": ClassificationItems(np.stack([np.where(hits, labels, (labels + 1) % 10)] +
                                                 [(labels + j) % 10 for j in range(2, 6)], 1).astype(np.int64),
                                        labels.astype(np.int64), 10)}
    if codes:
        items["codes"] = CodeItems(np.stack([labels, labels + 10], 1).astype(np.int64), labels.astype(np.int64), seed)
    out = {key: items[name].value(metric) for key, (_, _, (name, metric)) in script.METRICS.items()
           if name in items and key != "subcat_acc1"}
    if codes:
        usage = items["codes"].metrics()
        out |= {"perplexity": usage["code_perplexity"], "used_codes": usage["codes_used"], "top_share": 0.05,
                "dead_codes": 64 - usage["codes_used"], "code_nmi": usage["code_class_nmi"]}
    return out | {"train_s": 1.0, "eval_s": 0.1, scoring.PER_ITEM: items}


def test_paired_table_tells_a_planted_gap_apart_and_calls_planted_noise_a_tie() -> None:
    from align.eval.bootstrap import Bootstrap

    rng = np.random.default_rng(0)
    boot = Bootstrap(resamples=200)
    full, gap, noise = [], [], []
    for seed in (0, 1):
        hits = rng.random(N) < 0.7
        worse = hits & (rng.random(N) < 0.5)  # about 35% right: a real gap of about 0.35
        near = hits.copy()
        near[rng.choice(np.flatnonzero(hits), 2, replace=False)] = False
        near[rng.choice(np.flatnonzero(~hits), 2, replace=False)] = True
        full.append(planted(hits, seed, codes=True))
        gap.append(planted(worse, seed, codes=False))
        noise.append(planted(near, seed, codes=False))
    runs = {JOINT: full, NONE: gap, RANDOM: noise}
    told = tables.claim_table(runs, [0, 1], boot)
    assert told[0].split("|")[3:7] == [" paired diff, mean ± std over seeds ", " paired 95% interval (pooled) ",
                                       " seeds better ", " verdict "]
    for metric in ("I→T R@1", "T→I R@1", "zero-shot acc1"):
        cells = cells_of(told, f"{JOINT} − {NONE}", metric)
        assert cells[-2:] == ["2/2", "higher (better)"], metric
        low, high = (float(x) for x in cells[2].split("[")[1].rstrip("]").split(","))
        assert 0 < low < high, metric
        assert cells_of(told, f"{JOINT} − {RANDOM}", metric)[-1] == "cannot be told apart", metric
    assert cells_of(told, f"{JOINT} − {NONE}", "seconds per fit")[2] == "not resampled"
    arms = tables.arm_table(runs, [0, 1], boot)
    assert arms[0] == f"| metric | {JOINT} | {NONE} | {RANDOM} |"
    assert all(cell.count("[") == 1 for cell in cells_of(arms, "I→T R@1"))  # each arm's own interval
    codes = tables.code_table(runs, [0, 1], "class")
    assert [line.split("|")[1].strip() for line in codes[2:-1]] == [JOINT]  # only the arm with codes
    assert not any("[" in line for line in codes)  # statistics of the pooled codes: not resampled
    held = tables.what_held({"emoji": tables.claims_of(runs, [0, 1], boot),
                             "shapes": tables.claims_of({JOINT: full, NONE: noise}, [0, 1], boot)})
    assert held[0].startswith(f"- **{JOINT} − {NONE}** (")  # claims in CLAIMS' order, each over both datasets
    assert "better on emoji I→T R@1 (2/2 seeds)" in held[0] and "shapes I→T R@1" not in held[0].split(";")[0]
    assert held[1].startswith(f"- **{JOINT} − {RANDOM}** (") and "better on none" in held[1]
    notes = tables.interval_notes([{JOINT: full, NONE: noise[:1] + [noise[1] | {scoring.PER_ITEM: None}]}], boot)
    assert "200 resamples" in notes[0] and "1 run(s) were saved before per-item outputs" in notes[2]


# ---------------------------------------------------------------------- the epoch grid


def peaked(best: int, log: list[int]) -> Any:
    """A fake validation scorer that rises to ``best`` epochs and falls after, recording what it was asked."""
    def evaluate(epochs: int) -> float:
        log.append(epochs)
        return -abs(epochs - best) / 100
    return evaluate


def test_a_grid_whose_best_is_its_largest_count_says_so_and_is_not_extended_unasked() -> None:
    asked: list[int] = []
    search = grid.search_grid([4, 2, 6], peaked(20, asked))
    assert asked == [2, 4, 6] and search.chosen == 6 and search.at_edge and search.added == []
    note = grid.edge_note(search, extend=False, limit=24)
    assert note.startswith("**At the grid's top edge**") and "--extend-grid" in note


def test_extend_grid_doubles_the_top_until_the_best_is_inside() -> None:
    asked: list[int] = []
    search = grid.search_grid([2, 4, 6], peaked(10, asked), extend=True, limit=48)
    assert asked == [2, 4, 6, 12, 24] and search.added == [12, 24]
    assert search.chosen == 12 and not search.at_edge  # 24 scored lower: past the optimum
    assert "inside the grid [2, 4, 6, 12, 24]" in grid.edge_note(search, extend=True, limit=48)
    inside: list[int] = []
    search = grid.search_grid([2, 4, 6], peaked(4, inside), extend=True)
    assert inside == [2, 4, 6] and search.chosen == 4 and search.added == []  # already inside: nothing added


def test_extend_grid_stops_at_the_limit_and_still_reports_the_edge() -> None:
    asked: list[int] = []
    search = grid.search_grid([2, 4, 6], peaked(100, asked), extend=True, limit=20)
    assert asked == [2, 4, 6, 12, 20] and search.chosen == 20 and search.at_edge
    assert "stopped at `--grid-limit` 20" in grid.edge_note(search, extend=True, limit=20)
    ties: list[int] = []
    assert grid.search_grid([1, 2, 3], lambda e: ties.append(e) or 0.5, extend=True).chosen == 1  # ties: fewer


def test_validation_resumes_each_arm_across_the_grid_and_keeps_checkpoints_at_the_edge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every arm is fitted at every count with its own checkpoint folder; the mean over arms chooses."""
    from align.data.base import LabelSet

    fits: list[tuple[str, int, str]] = []
    # arm a peaks at 4 epochs, arm b at 8; their mean (0.15, 0.4, 0.55, 0.2) at 8
    planted = {"a": {1: 0.1, 2: 0.2, 4: 0.6, 8: 0.5, 16: 0.1}, "b": {1: 0.1, 2: 0.1, 4: 0.2, 8: 0.6, 16: 0.3}}

    def fake_fit(hp: dict, tokens: Any, captions: list[str]) -> tuple[Any, float]:
        fits.append((hp["arm"], hp["max_epochs"], Path(hp["checkpoint_dir"]).name))
        Path(hp["checkpoint_dir"]).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(hparams=hp, history={}), 1.0

    def fake_score(aligner: Any, data: Any, rerank_k: int) -> dict[str, Any]:
        hp = aligner.hparams
        return {"i2t_r1": planted[hp["arm"]][hp["max_epochs"]], "t2i_r1": 0.0, "eval_s": 0.0}

    monkeypatch.setattr(script, "fit", fake_fit)
    monkeypatch.setattr(script, "score", fake_score)
    monkeypatch.setattr(script, "SLUGS", {"a": "a", "b": "b"})
    n = 20
    anchors = SimpleNamespace(num_items=n, captions=[[f"c{i}"] for i in range(n)], dataset="emoji", split="anchors",
                              version="v", extra_labels={"subcategory": LabelSet(np.zeros(n, dtype=np.int64), ["x"])},
                              labels=LabelSet(np.zeros(n, dtype=np.int64), ["x"]))
    monkeypatch.setattr(script, "fit_captions", lambda split: ([f"c{i}" for i in range(n)], "first caption"))
    variants = {"a": {"arm": "a"}, "b": {"arm": "b"}}
    tokens = torch.zeros(n, 2, 3)
    search, found, _ = script.validation(variants, [2, 4, 8, 16], tokens, anchors, 0, tmp_path)
    assert fits == [(arm, e, arm) for e in (2, 4, 8, 16) for arm in ("a", "b")]
    assert search.chosen == 8 and not search.at_edge and set(found["a"]) == {2, 4, 8, 16}
    assert not (tmp_path / "val" / "checkpoints").exists()  # inside the grid: removed
    fits.clear()
    search, _, _ = script.validation(variants, [1, 2], tokens, anchors, 0, tmp_path)
    assert search.chosen == 2 and search.at_edge and (tmp_path / "val" / "checkpoints" / "a").is_dir()
    table = grid.validation_table(found, search)
    assert any(line.startswith("| mean over arms | 2 (chosen) |") for line in table)


def test_a_study_run_saves_its_items_and_a_rerun_reads_them_back(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)

    def fake_score(aligner: Any, data: Any, rerank_k: int) -> dict[str, Any]:
        return planted(rng.random(N) < 0.5, 0, codes=aligner.hparams["codebook"])

    monkeypatch.setattr(script, "fit", lambda hp, tokens, captions: (SimpleNamespace(hparams=hp, history={}), 1.0))
    monkeypatch.setattr(script, "score", fake_score)
    variants = {KMEANS: {"codebook": True}, NONE: {"codebook": False}}
    first = script.study("emoji", variants, [0], 1, None, [], None, 0, {"fit": "x"}, tmp_path, keep_grid=False)
    assert sorted(p.name for p in (tmp_path / "emoji").iterdir() if p.is_file()) == [
        "full_seed0.items.safetensors", "full_seed0.json", "no_codebook_mim_seed0.items.safetensors",
        "no_codebook_mim_seed0.json"]
    monkeypatch.setattr(script, "fit", lambda *a: pytest.fail("a saved run was refitted"))
    again = script.study("emoji", variants, [0], 1, None, [], None, 0, {"fit": "x"}, tmp_path, keep_grid=False)
    for label in variants:
        saved, back = first[label][0][scoring.PER_ITEM], again[label][0][scoring.PER_ITEM]
        assert list(saved) == list(back)
        for name in saved:
            assert all(np.array_equal(saved[name].arrays()[k], back[name].arrays()[k]) for k in saved[name].arrays())
        assert again[label][0]["i2t_r1"] == first[label][0]["i2t_r1"]


def test_a_stream_skips_the_fit_another_process_is_making_and_a_plain_run_waits_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = sys.modules["_common"]
    fitted = []

    def fake_fit(hp: dict, tokens: Any, captions: Any) -> tuple[SimpleNamespace, float]:
        fitted.append(hp["codebook"])
        return SimpleNamespace(hparams=hp, history={}), 1.0

    monkeypatch.setattr(script, "fit", fake_fit)
    monkeypatch.setattr(script, "score", lambda aligner, data, k: planted(np.ones(N, bool), 0,
                                                                          codes=aligner.hparams["codebook"]))
    variants = {KMEANS: {"codebook": True}, NONE: {"codebook": False}}
    busy, _ = script.study_run(tmp_path, "emoji", KMEANS, variants[KMEANS], 0, 1, {"fit": "x"}, 0)
    with common.claimed(busy):  # as another stream making the k-means fit would hold it
        stream = script.study("emoji", variants, [0], 1, None, [], None, 0, {"fit": "x"}, tmp_path,
                              keep_grid=False, skip_busy=True)
    assert fitted == [False] and stream[KMEANS] == [] and len(stream[NONE]) == 1 and not busy.exists()

    def hold_then_release() -> None:
        with common.claimed(busy):
            ready.set()
            time.sleep(0.3)

    ready = threading.Event()
    holder = threading.Thread(target=hold_then_release)
    holder.start()
    ready.wait()
    monkeypatch.setattr(common, "BUSY_POLL_SECONDS", 0.05)
    plain = script.study("emoji", variants, [0], 1, None, [], None, 0, {"fit": "x"}, tmp_path, keep_grid=False)
    holder.join()
    assert fitted == [False, True]  # made once the holder let go without saving it; the other fit was reused
    assert len(plain[KMEANS]) == len(plain[NONE]) == 1 and busy.is_file()


def test_two_streams_from_opposite_ends_meet_once_and_fit_each_arm_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reversed stream starts with each seed's last arm; while the forward stream holds the arm they meet
    on, the reversed one skips it and goes on to the next seed."""
    common = sys.modules["_common"]
    fitted: list[tuple[str, int]] = []
    variants = {KMEANS: {"codebook": True, "name": KMEANS}, NONE: {"codebook": False, "name": NONE},
                JOINT: {"codebook": True, "name": JOINT}}

    def fake_fit(hp: dict, tokens: Any, captions: Any) -> tuple[SimpleNamespace, float]:
        fitted.append((hp["name"], hp["seed"]))
        return SimpleNamespace(hparams=hp, history={}), 1.0

    monkeypatch.setattr(script, "fit", fake_fit)
    monkeypatch.setattr(script, "score", lambda aligner, data, k: planted(np.ones(N, bool), 0,
                                                                          codes=aligner.hparams["codebook"]))
    meeting, _ = script.study_run(tmp_path, "emoji", NONE, variants[NONE], 0, 1, {"fit": "x"}, 0)
    with common.claimed(meeting):  # the forward stream is making seed 0's middle arm
        script.study("emoji", variants, [0, 1], 1, None, [], None, 0, {"fit": "x"}, tmp_path,
                     keep_grid=False, skip_busy=True, reverse_arms=True)
    assert fitted == [(JOINT, 0), (KMEANS, 0), (JOINT, 1), (NONE, 1), (KMEANS, 1)]
    fitted.clear()
    found = script.study("emoji", variants, [0, 1], 1, None, [], None, 0, {"fit": "x"}, tmp_path, keep_grid=False)
    assert fitted == [(NONE, 0)] and all(len(runs) == 2 for runs in found.values())  # listed in seed order
    assert [r["key"]["hparams"]["seed"] for r in found[KMEANS]] == [0, 1]


def test_score_reads_zero_shot_and_codes_from_their_own_tokens() -> None:
    """The shapes set: retrieval on multi-shape images, zero-shot and codes on single-shape ones. A fake
    model whose image embedding is the first token and whose prompt embedding names the class gets every
    zero-shot answer right only when it is given the single-shape tokens."""
    from align.data.base import LabelSet

    names = ["alpha", "beta", "gamma"]
    labels = np.array([0, 1, 2, 0, 1, 2])
    single = torch.nn.functional.one_hot(torch.as_tensor(labels), 3).float()[:, None].repeat(1, 2, 1)
    multi = single.roll(1, dims=2)  # every image looks like the next class

    def text(prompts: list[str]) -> torch.Tensor:
        return torch.stack([torch.eye(3)[next(j for j, c in enumerate(names) if c in p)] for p in prompts])

    model = SimpleNamespace(
        hparams={"codebook": True, "seed": 0}, encode_image=lambda x: x[:, 0], encode_text_strings=text,
        code_indices=lambda x: x.argmax(-1),
        code_usage=lambda x: {"perplexity": 3.0, "used_codes": 3, "dead_codes": 0, "top_share": 1 / 3})
    zeroshot = {"colour_acc1": LabelSet(labels, names, ("{c}",)), "shape_acc1": LabelSet(labels, names, ("a {c}",))}
    out = scoring.score(model, scoring.Eval(multi, None, zeroshot, labels, zeroshot_tokens=single, code_tokens=single),
                       rerank_k=0)
    assert out["colour_acc1"] == out["shape_acc1"] == 1.0 and "acc1" not in out and "i2t_r1" not in out
    assert np.array_equal(out[scoring.PER_ITEM]["codes"].codes, single.argmax(-1).numpy())
    assert out["code_nmi"] == pytest.approx(1.0)
    wrong = scoring.score(model, scoring.Eval(multi, None, zeroshot, labels), rerank_k=0)
    assert wrong["colour_acc1"] == 0.0  # the multi-shape tokens, when no zero-shot tokens are given


def test_set_changes_every_arm_alike_and_refuses_what_an_arm_ablates() -> None:
    """``--set image_layers=4`` (a capacity grid point) keeps the arms comparable: every arm gets it, and
    no field can be set that way where it would erase what an arm ablates, or where full.yaml has no such field."""
    deeper = script.load_variants(None, script.overrides(["image_layers=4", "lr=3e-4"], pytest.fail))
    assert {hp["image_layers"] for hp in deeper.values()} == {4}
    assert {hp["lr"] for hp in deeper.values()} == {3e-4}
    assert not script.parity_problems(deeper)
    for refused in (["mim=false"], ["image_layer=4"]):
        with pytest.raises(SystemExit, match=refused[0].split("=")[0]):
            script.load_variants(None, script.overrides(refused, pytest.fail))
    errors: list[str] = []
    script.overrides(["image_layers"], errors.append)
    assert errors and "KEY=VALUE" in errors[0]


def test_the_validation_table_puts_the_last_epochs_mim_accuracy_beside_its_marginal() -> None:
    run = {"i2t_r1": 0.1, "t2i_r1": 0.1, "subcat_acc1": 0.2, "perplexity": 40.0, "train_s": 5.0,
           "history": {"mim_acc": [0.20, 0.35], "mim_marginal": [0.15, 0.14], "itm": [0.64, 0.61]}}
    no_mim = {k: v for k, v in run.items() if k != "history"}
    search = grid.GridSearch(2, {2: 0.1}, True, [])
    lines = grid.validation_table({"joint codebook": {2: run}, "no codebook/MIM": {2: no_mim}}, search)
    def cells(first: str) -> list[str]:
        return [c.strip() for c in next(line for line in lines if line.startswith(first)).strip("|").split("|")]

    header, joint, ablation = cells("| model"), cells("| joint"), cells("| no codebook")
    acc, marginal = header.index("MIM acc (train, last epoch)"), header.index("MIM marginal")
    assert (joint[acc], joint[marginal]) == ("0.350", "0.140")
    assert (ablation[acc], ablation[marginal]) == ("", "")
    assert joint[header.index("ITM loss (train, last epoch)")] == "0.610"
    assert len(cells("| mean over arms")) == len(header)


def test_itms_reference_loss_is_that_of_predicting_the_batchs_share_of_matches() -> None:
    """One matched pair to two hard negatives: a head that always says 1/3 has this cross-entropy."""
    logits = torch.log(torch.tensor([[2 / 3, 1 / 3]])).expand(3, 2)
    labels = torch.tensor([1, 0, 0])
    assert script.ITM_PRIOR_LOSS == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))


# ---------------------------------------------------------------------- --report from the saved runs


def fake_split(dataset: str, split: str, n: int = 24) -> Any:
    """A small split of ``dataset`` with what the study reads of it (captions where the real one has them)."""
    from PIL import Image

    from align.data.base import LabelSet

    labels = np.arange(n) % 3
    extra = {"emoji": {"subcategory": LabelSet(labels % 2, ["s0", "s1"])},
             "shapes.single": {"colour": LabelSet(labels, ["red", "green", "blue"]),
                               "shape": LabelSet(labels % 2, ["circle", "square"])}}.get(dataset, {})
    captions = None if dataset == "fashion_mnist" else [[f"{dataset} {i}", f"item {i}"] for i in range(n)]
    return SimpleNamespace(dataset=dataset, split=split, version="v1", num_items=n, captions=captions,
                           labels=LabelSet(labels, ["a", "b", "c"]), extra_labels=extra,
                           load_image=lambda i: Image.new("RGB", (4, 4), (i, 0, 0)))


@pytest.fixture()
def stub_study(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No encoder, dataset or fit: stub tokens and splits, planted scores (the study's bookkeeping is real);
    returns the log of the datasets loaded."""
    loaded: list[str] = []
    rng = np.random.default_rng(5)

    def fake_score(aligner: Any, data: Any, rerank_k: int) -> dict[str, Any]:
        return planted(rng.random(N) < 0.5, aligner.hparams["seed"], codes=aligner.hparams["codebook"])

    def create(name: str) -> Any:
        return SimpleNamespace(load=lambda split: loaded.append(f"{name}/{split}") or fake_split(name, split))

    monkeypatch.setattr(script, "DATASETS", SimpleNamespace(create=create))
    monkeypatch.setattr(script, "VISION_ENCODERS", SimpleNamespace(create=lambda name: None))
    monkeypatch.setattr(script, "FeatureCache", lambda: None)
    monkeypatch.setattr(script, "spatial_tokens", lambda split, encoder, cache: torch.zeros(split.num_items, 49, 8))
    monkeypatch.setattr(script, "fit", lambda hp, tokens, captions: (SimpleNamespace(hparams=hp, history={}), 1.0))
    monkeypatch.setattr(script, "score", fake_score)
    monkeypatch.setattr(script, "text_embedder", lambda cache: None)
    monkeypatch.setattr(script, "first_layers_embedder", lambda hparams: None)
    monkeypatch.setattr(script, "fit_baseline", lambda hp, seed, *rest: SimpleNamespace(hparams={"codebook": False,
                                                                                               "seed": seed}))
    monkeypatch.setattr(script, "grid_data", lambda aligner, tokens: {
        "tokens_per_image": 49, "codes": [{"code": 7, "tokens": 30, "images": [2, 0], "counts": [20, 10]}]})
    return loaded


def study_argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["--quick", "--arms", KMEANS, JOINT, "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
            "--output", str(tmp_path / "page.md"), "--figure", str(tmp_path / "codes.png"), *extra]


def test_report_rebuilds_the_page_of_the_run_that_wrote_the_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stub_study: list[str]) -> None:
    script.main(study_argv(tmp_path))
    page = (tmp_path / "page.md").read_text()
    assert (tmp_path / "runs" / "quick" / "study.json").is_file()
    assert "**Emoji, concept-disjoint**: pretrained on 24 anchor" in page and "**Shapes** (procedural)" in page
    assert "- code 7 (30 tokens): emoji 2, emoji 0" in page and "(figure: `codes.png`)" in page
    assert page.count("| mean over arms | ") == 2  # the validation table (grid 1 2), from the validation runs
    assert "![validation curves](codes_validation.png)" in page and (tmp_path / "codes_validation.png").is_file()
    (tmp_path / "page.md").unlink()
    (tmp_path / "codes.png").unlink()
    (tmp_path / "codes_validation.png").unlink()
    stub_study.clear()
    for name in ("fit", "score", "spatial_tokens", "grid_data", "fit_baseline"):
        monkeypatch.setattr(script, name, lambda *a, _name=name: pytest.fail(f"--report called {_name}"))
    script.main(study_argv(tmp_path, "--report"))
    assert (tmp_path / "page.md").read_text() == page
    assert (tmp_path / "codes.png").is_file() and stub_study == ["emoji/test@120"]  # the gallery's images only
    assert (tmp_path / "codes_validation.png").is_file()


def test_the_validation_curves_plot_each_count_and_the_longest_fits_mim_history(
        monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Any] = []
    monkeypatch.setattr(report_module, "save_figure", lambda fig, path, dpi=None: drawn.append(fig))
    short = {"i2t_r1": 0.1, "history": {"mim_acc": [0.2], "mim_marginal": [0.1]}}
    long = {"i2t_r1": 0.3, "history": {"mim_acc": [0.2, 0.4, 0.5], "mim_marginal": [0.1, 0.12, 0.11]}}
    report_module.draw_validation_curves({JOINT: {3: long, 1: short}, NONE: {1: {"i2t_r1": 0.2}, 3: {"i2t_r1": 0.25}}},
                                         Path("unused.png"))
    left, right = drawn[0].axes
    lines = {line.get_label(): line for ax in (left, right) for line in ax.lines}
    assert list(lines[JOINT].get_xdata()) == [1, 3] and list(lines[JOINT].get_ydata()) == [0.1, 0.3]
    assert list(lines[f"{JOINT}: MIM acc"].get_ydata()) == [0.2, 0.4, 0.5]  # the 3-epoch fit's whole history
    assert list(lines[f"{JOINT}: marginal"].get_ydata()) == [0.1, 0.12, 0.11]
    assert f"{NONE}: MIM acc" not in lines  # no MIM, no curve


def test_report_names_the_run_that_is_missing_and_fails(tmp_path: Path, stub_study: list[str]) -> None:
    script.main(study_argv(tmp_path))
    gone = tmp_path / "runs" / "quick" / "shapes" / "joint_seed1.json"
    gone.unlink()
    with pytest.raises(SystemExit, match=r"1 run\(s\) missing: .*shapes/joint_seed1\.json \(missing\)$"):
        script.main(study_argv(tmp_path, "--report"))
    (tmp_path / "runs" / "quick" / "val" / "full_e2.json").unlink()
    with pytest.raises(SystemExit, match=r"validation run is missing: .*val/full_e2\.json"):
        script.main(study_argv(tmp_path, "--report"))
    items = tmp_path / "runs" / "quick" / "emoji" / "full_seed0.items.safetensors"
    assert items.is_file()


def test_report_refuses_a_run_whose_items_file_is_gone(tmp_path: Path, stub_study: list[str]) -> None:
    """The full run would refit such a run (cached_run), so its page could not be the report's."""
    script.main(study_argv(tmp_path))
    (tmp_path / "runs" / "quick" / "emoji" / "full_seed0.items.safetensors").unlink()
    with pytest.raises(SystemExit, match=r"emoji/full_seed0\.items\.safetensors: per-item outputs are missing"):
        script.main(study_argv(tmp_path, "--report"))


# ---------------------------------------------------------------------- --fits-only streams


def test_streams_fit_their_parts_and_a_plain_run_writes_the_page_from_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stub_study: list[str]) -> None:
    fitted: list[tuple[str, int]] = []

    def counted_fit(hp: dict, tokens: Any, captions: Any) -> tuple[Any, float]:
        fitted.append((hp["code_source"] if hp["codebook"] else "none", hp["seed"]))
        return SimpleNamespace(hparams=hp, history={}), 1.0

    monkeypatch.setattr(script, "fit", counted_fit)
    script.main(study_argv(tmp_path, "--fits-only", "--arms", KMEANS, "--epochs", "2"))
    script.main(study_argv(tmp_path, "--fits-only", "--arms", JOINT, "--epochs", "2"))
    assert len(fitted) == 2 * 2 * 3  # two streams of one arm, 2 seeds, 3 datasets
    assert not (tmp_path / "runs" / "quick" / "study.json").exists() and not (tmp_path / "page.md").exists()
    monkeypatch.setattr(script, "fit", lambda *a: pytest.fail("the plain run refitted a stream's fit"))
    script.main(study_argv(tmp_path, "--epochs", "2"))
    assert (tmp_path / "runs" / "quick" / "study.json").is_file() and (tmp_path / "page.md").is_file()


def test_a_stream_keeps_the_validation_checkpoints_that_a_plain_run_deletes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stub_study: list[str]) -> None:
    monkeypatch.setattr(grid, "choose_epochs", lambda scores: min(scores))  # inside the grid: done with them
    checkpoint = tmp_path / "runs" / "quick" / "val" / "checkpoints" / "joint" / "epoch=1.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"x")
    script.main(study_argv(tmp_path, "--fits-only", "--arms", JOINT, "--datasets"))
    assert checkpoint.is_file()  # another stream's arm may still resume from its own
    script.main(study_argv(tmp_path, "--datasets"))
    assert not checkpoint.exists()


def test_a_stream_of_some_arms_cannot_choose_the_study_budget(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        script.parse_args(["--fits-only", "--arms", JOINT])
    assert "give --epochs" in capsys.readouterr().err
    assert script.parse_args(["--fits-only", "--arms", JOINT, "--datasets"]).fits_only  # validation only
    assert script.parse_args(["--fits-only", "--arms", JOINT, "--epochs", "24"]).epochs == 24
    with pytest.raises(SystemExit):
        script.parse_args(["--fits-only", "--report"])


def test_the_study_can_rerank_its_test_fits_with_another_k_and_report_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stub_study: list[str]) -> None:
    import json

    ks: list[int] = []
    real_score = script.score
    monkeypatch.setattr(script, "score", lambda aligner, data, rerank_k: ks.append(rerank_k) or real_score(
        aligner, data, rerank_k))
    script.main(study_argv(tmp_path, "--study-rerank-k", "0"))
    assert set(ks) == {4, 0}  # validation at --quick's 4, the test fits at 0
    run = json.loads((tmp_path / "runs" / "quick" / "emoji" / "joint_seed1.json").read_text())
    assert run["key"]["rerank_k"] == 0
    page = (tmp_path / "page.md").read_text()
    assert "top 4 on validation and 0 on the test splits" in page
    script.main(study_argv(tmp_path, "--report", "--output", str(tmp_path / "again.md")))
    assert (tmp_path / "again.md").read_text() == page


def test_a_study_stopped_after_validation_can_report_its_validation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stub_study: list[str]) -> None:
    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the session ended during the study's first fit

    study = script.study
    monkeypatch.setattr(script, "study", stopped)
    with pytest.raises(KeyboardInterrupt):
        script.main(study_argv(tmp_path))
    script.main(study_argv(tmp_path, "--report"))
    page = (tmp_path / "page.md").read_text()
    assert "The study's fits on emoji, fashion_mnist, shapes have not all finished" in page
    assert page.count("| mean over arms | ") == 2  # the validation table, from the saved validation runs
    monkeypatch.setattr(script, "study", study)  # the next session finishes it
    script.main(study_argv(tmp_path))
    assert "have not all finished" not in (tmp_path / "page.md").read_text()


# ---------------------------------------------------------------------- the linear contrastive head beside the arms

def test_the_contrastive_head_is_fitted_per_seed_and_paired_with_the_joint_arm(
        tmp_path: Path, stub_study: list[str]) -> None:
    script.main(study_argv(tmp_path))
    runs = tmp_path / "runs" / "quick"
    for dataset in ("emoji", "fashion_mnist", "shapes"):
        for seed in (0, 1):
            assert (runs / dataset / f"contrastive_seed{seed}.json").is_file()
            assert (runs / dataset / f"contrastive_seed{seed}.items.safetensors").is_file()
    page = (tmp_path / "page.md").read_text()
    for dataset in ("emoji", "fashion_mnist", "shapes"):
        for seed in (0, 1):
            assert (runs / dataset / f"contrastive_first_layers_seed{seed}.json").is_file()  # the shallow head
    header = next(line for line in page.splitlines() if line.startswith("| metric | "))
    assert header.rstrip(" |").endswith(f"{BASE} | {SHALLOW}")  # columns beside the arms
    assert f"| {JOINT} − {BASE} | I→T R@1 |" in page  # a paired claim
    assert f"| {BASE} − {SHALLOW} | I→T R@1 |" in page  # what the deeper text side is worth to the head
    (runs / "shapes" / "contrastive_seed1.json").unlink()
    with pytest.raises(SystemExit, match=r"shapes/contrastive_seed1\.json \(missing\)"):
        script.main(study_argv(tmp_path, "--report"))


def test_the_contrastive_head_sees_the_encoders_pooled_tokens_and_frozen_text_features() -> None:
    baseline = load_benchmark("_codebook_vlp_baseline")
    hp = baseline.baseline_hparams() | {"max_epochs": 2, "batch_size": 8}
    assert not set(baseline.RUNTIME_FIELDS) & set(baseline.baseline_hparams())
    torch.manual_seed(0)
    tokens, table = torch.randn(16, 4, 6), {f"t{i}": torch.randn(5) for i in range(16)}
    embedded: list[list[str]] = []

    def embed(texts: Any) -> torch.Tensor:
        embedded.append(list(texts))
        return torch.stack([table[t] for t in texts])

    model = baseline.fit_baseline(hp, 3, tokens, list(table), lambda t: t.mean(1), embed)
    assert embedded == [list(table)] and model.hparams == {"codebook": False, "seed": 3}
    assert torch.allclose(model.encode_image(tokens), model.aligner.encode_image(tokens.mean(1)))
    assert torch.allclose(model.encode_text_strings(["t2", "t5"]),
                          model.aligner.encode_text(torch.stack([table["t2"], table["t5"]])))
    assert not torch.allclose(model.encode_image(tokens), model.aligner.encode_image(tokens[:, 0]))


def test_the_shallow_heads_key_follows_the_arms_text_side_and_the_contrastive_heads_does_not(
        tmp_path: Path) -> None:
    baseline = load_benchmark("_codebook_vlp_baseline")
    arm = {"table": "hf:minilm", "text_layers": 1, "max_text_tokens": 32, "num_codes": 64}
    hp, info = baseline.baseline_hparams(), {"fit": "train@10"}

    def key(label: str, **changed: Any) -> dict:
        side = baseline.shallow_text_side(arm | changed)
        return baseline.baseline_run(tmp_path, "emoji", hp, 0, info, label, side)[1]

    for field, value in (("table", "hf:other"), ("text_layers", 2), ("max_text_tokens", 16)):
        assert key(SHALLOW, **{field: value}) != key(SHALLOW), field  # another text side: another fit
        assert key(BASE, **{field: value}) == key(BASE), field  # the sentence-embedding head reads none of it
    assert key(SHALLOW, num_codes=8) == key(SHALLOW)  # an image-side setting is not the head's
    with pytest.raises(ValueError, match="text side"):
        baseline.baseline_run(tmp_path, "emoji", hp, 0, info, SHALLOW)


def test_the_summary_says_what_held_and_until_then_that_the_fits_are_running(
        tmp_path: Path, stub_study: list[str]) -> None:
    summary = tmp_path / "summary.md"
    script.main(study_argv(tmp_path))
    script.main(study_argv(tmp_path, "--report", "--summary", "--output", str(summary)))
    lines = summary.read_text().splitlines()
    assert lines[0].startswith(f"**Codebook-VLP** ([study]({script.PAGE})): validation chose 1 epochs for every arm")
    held = [line for line in lines if line.startswith("- **")]
    assert [line.split("**")[1] for line in held] == [f"{JOINT} − {KMEANS}", f"{JOINT} − {BASE}",
                                                       f"{JOINT} − {SHALLOW}", f"{BASE} − {SHALLOW}"]
    page = (tmp_path / "page.md").read_text()
    assert all(line in page for line in held)  # the page's own "what held" lines, word for word
    short = [line for line in lines if line.startswith(("**In short**", f"Against the {BASE}, "))]
    assert len(short) == 2 and all(line in page for line in short)  # the plain answer, above the claim lines
    assert lines.index(short[0]) < lines.index(held[0])
    glance = next(line for line in lines if line.startswith("I→T R@1, mean over seeds: "))
    emoji = tmp_path / "runs" / "quick" / "emoji"
    for label, slug in ((JOINT, "joint"), (BASE, "contrastive"), (SHALLOW, "contrastive_first_layers")):
        mean = sum(json.loads((emoji / f"{slug}_seed{seed}.json").read_text())["i2t_r1"] for seed in (0, 1)) / 2
        assert f"{label} {mean:.3f}" in glance.split("; ")[0], (label, mean, glance)  # emoji's part
    assert glance in page

    manifest = tmp_path / "runs" / "quick" / "study.json"
    saved = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(saved | {"datasets": {}, "planned": ["emoji", "shapes"]}))
    script.main(study_argv(tmp_path, "--report", "--summary", "--output", str(summary)))
    assert "test fits on emoji, shapes have not all finished, so no claim is tested yet" in summary.read_text()

    emoji_only = saved | {"datasets": {"emoji": saved["datasets"]["emoji"]}, "planned": ["emoji", "shapes"]}
    manifest.write_text(json.dumps(emoji_only))  # as the study writes it once emoji's fits have all finished
    script.main(study_argv(tmp_path, "--report", "--summary", "--output", str(summary)))
    partial = summary.read_text()
    assert "; 2 seeds on emoji.\n" in partial and f"- **{JOINT} − {KMEANS}**" in partial
    assert partial.rstrip().endswith("The test fits on shapes have not all finished: the lines above are emoji alone.")
    script.main(study_argv(tmp_path, "--report", "--output", str(tmp_path / "partial.md")))
    page = (tmp_path / "partial.md").read_text()
    assert "fits on shapes have not all finished**: the tables below are of emoji, whose fits have" in page
    assert "**Emoji, concept-disjoint**" in page and "**Shapes** (procedural)" not in page
    with pytest.raises(SystemExit):
        script.parse_args(["--summary"])  # it reads a saved study


def test_a_dataset_whose_fits_finish_is_in_the_manifest_before_the_next_one_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stub_study: list[str]) -> None:
    real = script.baseline_study

    def stopped_on_shapes(dataset: str, *args: Any) -> list[dict]:
        if dataset == "shapes":
            raise KeyboardInterrupt  # the study stopped while shapes' fits run
        return real(dataset, *args)

    monkeypatch.setattr(script, "baseline_study", stopped_on_shapes)
    with pytest.raises(KeyboardInterrupt):
        script.main(study_argv(tmp_path, "--datasets", "emoji", "shapes"))
    saved = json.loads((tmp_path / "runs" / "quick" / "study.json").read_text())
    assert list(saved["datasets"]) == ["emoji"] and saved["planned"] == ["emoji", "shapes"]
