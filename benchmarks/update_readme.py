"""Copy the latest benchmark outputs between the markers of README.md and the docs pages (no numbers typed by hand).

    python benchmarks/update_readme.py [--results results]

Reads ``results/default/leaderboard.md`` (from `make bench`) and ``results/all-methods/leaderboard.md``
(from `make bench-all`) into README.md, ``results/shapes/leaderboard.md`` (``align bench --config
configs/bench/shapes.yaml``) into docs/studies/shapes.md (each with a snapshot of the result files behind
it, JSON and per-item outputs, under ``studies/leaderboards/<folder>/``, which git keeps: so
``benchmarks/generated.py --check`` rebuilds the block with ``align report`` and compares), and the figure
tables that `make figures` writes (``FIGURES`` below, in that order) into docs/studies/tables.md: each
marker block lives in one file, named in ``LEADERBOARDS`` and ``FIGURES_PAGE``. A figure whose results file
is missing keeps the text the page has for it now, so one study can be re-run and copied in without
re-running all of them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

from _common import write_atomic  # benchmarks/_common.py

ROOT = Path(__file__).resolve().parents[1]
# (marker, the file that holds it, from the repository root, results folder): leaderboards copied whole
# (make bench, make bench-all, the shapes config)
LEADERBOARDS = (("bench", "README.md", "default"), ("all-methods", "README.md", "all-methods"),
                ("shapes", "docs/studies/shapes.md", "shapes"))
SNAPSHOTS = "studies/leaderboards"  # <folder>/: the committed result files behind each leaderboard block


def is_result_file(path: Path) -> bool:
    """What ``align report`` reads: each result's JSON and its per-item outputs (not curves or reports)."""
    return path.is_file() and (path.suffix == ".json" or path.name.endswith(".items.safetensors"))


def snapshot(results: Path, dest: Path) -> int:
    """Replace ``dest`` by a copy of the result files under ``results`` (a new folder renamed into place, so an
    interrupted copy leaves the old snapshot); the number of files copied."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    files = [p for p in sorted(results.rglob("*")) if is_result_file(p)]
    for path in files:
        target = fresh / path.relative_to(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    old = dest.with_name(f".{dest.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    fresh.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return len(files)


# the page whose <!-- figures:start/end --> block holds every figure table
FIGURES_PAGE = "docs/studies/tables.md"
# (results file, heading, the command that writes it)
FIGURES = (
    ("walltime.md", "Wall time of `make bench` from empty caches, by phase", "python benchmarks/bench_walltime.py"),
    ("precision-bench.md", "Encoder precision on this machine: float32, bfloat16 and `auto` (more: docs/precision.md)",
     "python benchmarks/precision.py --images 64 --repeats 1"),
    ("image_path_speed.md", "The float32 image path against b19147a", "python benchmarks/image_path_speed.py"),
    ("lm_step_speed.md", "Training steps through the frozen LM against b19147a, by component (more: docs/speed.md)",
     "python benchmarks/lm_step_speed.py"),
    ("asif_emoji.md", "ASIF against the baselines on unseen emoji (plot: docs/figures/asif_anchors.png)",
     "python benchmarks/asif_emoji.py"),
    ("asif_scale.md", "ASIF's anchor search at scale", "python benchmarks/asif_scale.py"),
    ("encoders.md", "Frozen encoders, linear probe on digits", "python benchmarks/encoders.py"),
    ("vlap_assignment.md", "VLAP's assignment-only variant, its priors and fixes, against ridge on unseen emoji, "
     "3 seeds (curves: docs/figures/vlap_curves.png)",
     "python benchmarks/vlap_emoji.py --config configs/bench/vlap_assignment.yaml --results results/vlap-assignment "
     "--output results/vlap_assignment.md"),
    ("vlap-lm-select/sweeps.md", "VLAP through the frozen LM: learning rate and lambda chosen on validation",
     "align bench --config configs/bench/vlap_lm_select.yaml --results results/vlap-lm-select"),
    ("vlap_emoji.md", "VLAP through the frozen LM against caption-only training, its ablations and ridge on unseen "
     "emoji, 3 seeds (curves: docs/figures/vlap_lm_curves.png)",
     "python benchmarks/vlap_emoji.py --figure docs/figures/vlap_lm_curves.png"),
    ("vlap_lm_speed.md", "VLAP's training step through the frozen LM: float32 against bfloat16",
     "python benchmarks/vlap_lm_speed.py --steps 1 --batch 16"),
    ("sinkhorn_speed.md", "Sinkhorn: one VLAP-sized solve against POT's log solver",
     "python benchmarks/sinkhorn_speed.py"),
    ("lqae_study.md", "LQAE (Gemma-3's table and LM) against a random table and a VQ-VAE, over seeds "
     "(figure: docs/figures/lqae_tokens.png)", "python benchmarks/lqae_study.py --ablate-rows"),
    ("lqae_collapse.md", "Why LQAE's codebook collapsed: codes in use during training",
     "python benchmarks/lqae_collapse.py"),
    ("quantizer_speed.md", "LQAE's frozen-codebook quantizer against a matmul and faiss",
     "python benchmarks/quantizer_speed.py"),
    ("codebook_vlp_compare.md", "Codebook-VLP with and without its codebook and MIM (figure: "
     "docs/figures/codebook_vlp_codes.png)", "python benchmarks/codebook_vlp_compare.py"),
    ("token_storage.md", "Token grids stored in float16 against float32", "python benchmarks/token_storage.py"),
    ("encoder_matrix.md", "Which encoders to align: alignment metrics before fitting against scores after "
     "(plot: docs/figures/encoder_matrix_metrics.png)",
     "align bench --config configs/bench/encoder_matrix.yaml && python benchmarks/encoder_matrix.py"),
    ("emoji-styles/leaderboard.md", "Fitted on Google-style emoji, scored in the other vendors' styles",
     "align bench --config configs/bench/emoji_styles.yaml"),
)


def marker_pattern(marker: str) -> re.Pattern[str]:
    """``<!-- marker:start -->``, the block's text (group 2) and ``<!-- marker:end -->``."""
    return re.compile(rf"(<!-- {marker}:start -->\n)(.*?)(<!-- {marker}:end -->)", re.S)


def block_between(text: str, marker: str) -> str | None:
    """The text between ``marker``'s start and end lines (trailing whitespace dropped), or None without them."""
    found = marker_pattern(marker).search(text)
    return found.group(2).rstrip() if found else None


def replace_between(text: str, marker: str, body: str, name: str) -> str:
    pattern = marker_pattern(marker)
    if not pattern.search(text):
        raise SystemExit(f"{name} has no <!-- {marker}:start/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(3), text)


def current_figures(text: str) -> dict[str, str]:
    """The page's figure blocks now, by the command line that opens each (headings may be renamed)."""
    section = block_between(text, "figures")
    blocks = re.split(r"\n(?=### )", section.strip()) if section else []
    found = {}
    for block in blocks:
        command = re.search(r"^`([^`]+)`:$", block, re.M)
        if command:
            found[command.group(1)] = block.rstrip()
    return found


def updated_files(results: Path) -> dict[str, str]:
    """The new text of every file that holds a marker with a results file behind it, by its name from ROOT."""
    texts: dict[str, str] = {}

    def text_of(name: str) -> str:
        return texts[name] if name in texts else (ROOT / name).read_text()

    for marker, name, folder in LEADERBOARDS:
        board = results / folder / "leaderboard.md"
        if board.is_file():
            texts[name] = replace_between(text_of(name), marker, board.read_text(), name)
    if any((results / name).is_file() for name, _, _ in FIGURES):
        current = current_figures(text_of(FIGURES_PAGE))
        figures = [f"### {heading}\n\n`{command}`:\n\n{(results / name).read_text().rstrip()}"
                   if (results / name).is_file() else current.get(command, "")
                   for name, heading, command in FIGURES]
        texts[FIGURES_PAGE] = replace_between(text_of(FIGURES_PAGE), "figures", "\n\n".join(f for f in figures if f),
                                              FIGURES_PAGE)
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    for name, text in updated_files(args.results).items():
        if text != (ROOT / name).read_text():  # a file with nothing new is left as it is, bytes and mtime
            write_atomic(ROOT / name, text)
    for _, _, folder in LEADERBOARDS:
        if (args.results / folder / "leaderboard.md").is_file():
            count = snapshot(args.results / folder, ROOT / SNAPSHOTS / folder)
            print(f"{SNAPSHOTS}/{folder}: {count} result files (commit them with the page)")


if __name__ == "__main__":
    main()
