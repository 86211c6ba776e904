"""Copy the latest benchmark outputs into README.md between its markers (no numbers typed by hand).

    python benchmarks/update_readme.py [--results results]

Reads ``results/default/leaderboard.md`` (from `make bench`), ``results/all-methods/leaderboard.md``
(from `make bench-all`) and the figure tables that `make figures`
writes (``FIGURES`` below, in that order); a missing file is left out, and with none at all the
section is left untouched.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from _common import write_atomic  # benchmarks/_common.py

README = Path(__file__).resolve().parents[1] / "README.md"
# (results file, heading, the command that writes it)
FIGURES = (
    ("walltime.md", "Wall time of `make bench`", "python benchmarks/bench_walltime.py"),
    ("asif_emoji.md", "ASIF against the baselines on unseen emoji (plot: docs/figures/asif_anchors.png)",
     "python benchmarks/asif_emoji.py"),
    ("asif_scale.md", "ASIF's anchor search at scale", "python benchmarks/asif_scale.py"),
    ("encoders.md", "Frozen encoders, linear probe on digits", "python benchmarks/encoders.py"),
    ("vlap_emoji.md", "VLAP against caption-only, assignment-only and ridge on unseen emoji",
     "python benchmarks/vlap_emoji.py"),
    ("sinkhorn_speed.md", "Sinkhorn: one VLAP-sized solve against POT's log solver",
     "python benchmarks/sinkhorn_speed.py"),
    ("lqae_compare.md", "LQAE against a random table and a VQ-VAE: Fashion-MNIST "
     "(figure: docs/figures/lqae_fashion_mnist.png)", "python benchmarks/lqae_compare.py"),
    ("lqae_compare_emoji.md", "LQAE against a random table and a VQ-VAE: emoji (figure: docs/figures/lqae_emoji.png)",
     "python benchmarks/lqae_compare.py --dataset emoji --epochs 10 --episodes 0"),
    ("quantizer_speed.md", "LQAE's frozen-codebook quantizer against a matmul and faiss",
     "python benchmarks/quantizer_speed.py"),
    ("codebook_vlp_compare.md", "Codebook-VLP with and without its codebook and MIM (figure: "
     "docs/figures/codebook_vlp_codes.png)", "python benchmarks/codebook_vlp_compare.py"),
    ("token_storage.md", "Token grids stored in float16 against float32", "python benchmarks/token_storage.py"),
)


def replace_between(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {marker}:start/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    text = README.read_text()
    leaderboard = args.results / "default" / "leaderboard.md"
    if leaderboard.is_file():
        text = replace_between(text, "bench", leaderboard.read_text())
    all_methods = args.results / "all-methods" / "leaderboard.md"
    if all_methods.is_file():
        text = replace_between(text, "all-methods", all_methods.read_text())
    figures = [f"### {heading}\n\n`{command}`:\n\n{(args.results / name).read_text().rstrip()}"
               for name, heading, command in FIGURES if (args.results / name).is_file()]
    if figures:
        text = replace_between(text, "figures", "\n\n".join(figures))
    write_atomic(README, text)


if __name__ == "__main__":
    main()
